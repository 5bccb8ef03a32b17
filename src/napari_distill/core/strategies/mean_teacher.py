"""Strategy ``mean-teacher``: the mask-guided mean teacher with perturbation-sensitive sample
mining (MMT-PSM; Zhou et al., MICCAI 2020; METHODS.md, method 2) for the cell model.

The teacher is the exponential moving average of the student. On the unannotated fields it
sees K perturbed views (grey-level or colour jitters x horizontal flip); its logits, mapped
back to the original frame and averaged, give a sharpened soft target. Perturbation-sensitive
sample mining keeps every foreground pixel of that target and the background pixels whose
prediction changes most across the views (at most half as many, weighted more); the student
learns them by soft cross-entropy. Mask-guided distillation pulls the student's features (through
a 1x1 adaptor per level) towards the teacher's inside the teacher's foreground. Both heads that
learn from pixels take part: the nucleus net on patches, the cell net on windows around the
nuclei the teacher finds. ``L = L_sup + lambda(t) * (w_psm * L_psm + w_mgd * L_mgd)``.

The pure pieces (EMA, ramp-up, views, mining, the two losses) are functions, tested alone; the
objective wires them into :class:`~napari_distill.core.training.cells.CellTrainingRun`.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..inference.cells import nuclei_from_probabilities, nucleus_centres, nucleus_logits
from ..models.cells import CellModel, SmallUNet, crop_windows
from ..training.cells import SupervisedCellObjective
from ..training.cells_data import jitter_intensity, nucleus_patches
from .cell_configs import MeanTeacherConfig


def ema_decay(step: int, maximum: float = 0.99, warmup: int = 0) -> float:
    """``a = min(1 - 1 / (k + 1), maximum)`` with ``k`` the steps since the warm-up ended: the
    teacher follows closely at first. During the warm-up ``a = 0``: the teacher is the student,
    so the average starts from the warmed-up student (as METHODS.md and the paper's code do),
    not from an average of the warm-up's students."""
    if step < warmup:
        return 0.0
    return min(1.0 - 1.0 / (step - warmup + 1), maximum)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """``theta_t <- a * theta_t + (1 - a) * theta_s`` for every parameter and buffer."""
    for t, s in zip(teacher.state_dict().values(), student.state_dict().values(), strict=True):
        if t.dtype.is_floating_point:
            t.mul_(decay).add_(s.detach(), alpha=1 - decay)
        else:
            t.copy_(s)


def ramp_up(step: int, warmup: int, length: int) -> float:
    """0 during the supervised warm-up, then ``exp(-5 (1 - t)^2)`` with ``t`` going 0 -> 1 over
    ``length`` steps, then 1."""
    if step < warmup:
        return 0.0
    if length <= 0:
        return 1.0
    t = min((step - warmup) / length, 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def make_views(
    x: torch.Tensor, n_image: int, jitters: int, flip: bool, amount: float, rng
) -> list[tuple[torch.Tensor, bool]]:
    """K perturbed views of ``x`` ``(B, C, H, W)``: ``jitters`` intensity jitters of the first
    ``n_image`` channels, each also flipped horizontally when ``flip``; with the flip flag."""
    views = []
    for _ in range(max(jitters, 1)):
        jittered = torch.cat([jitter_intensity(x[:, :n_image], rng, amount), x[:, n_image:]], 1)
        views.append((jittered, False))
        if flip:
            views.append((torch.flip(jittered, dims=(-1,)), True))
    return views


@torch.no_grad()
def teacher_target(
    net: SmallUNet, views: list[tuple[torch.Tensor, bool]], temperature: float
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The teacher's sharpened target, its per-view probabilities and its averaged features,
    all in the original frame: ``(B, K, H, W)``, ``(V, B, K, H, W)``, one map per level."""
    logits, probs, features = [], [], None
    for view, flipped in views:
        out, feats = net(view)
        if flipped:
            out = torch.flip(out, dims=(-1,))
            feats = [torch.flip(f, dims=(-1,)) for f in feats]
        logits.append(out)
        probs.append(torch.softmax(out, 1))
        features = (
            feats if features is None else [a + b for a, b in zip(features, feats, strict=True)]
        )
    mean_logits = torch.stack(logits).mean(0)
    target = torch.softmax(mean_logits / temperature, 1)
    return target, torch.stack(probs), [f / len(views) for f in features]


def sensitivity(view_probs: torch.Tensor) -> torch.Tensor:
    """Standard deviation of the probabilities across the views, summed over classes."""
    return view_probs.std(dim=0, unbiased=False).sum(dim=1)


def mine_samples(
    target: torch.Tensor, sensitive: torch.Tensor, ratio: float, mined_weight: float
) -> torch.Tensor:
    """Per-pixel weights ``(B, H, W)``: 1 on every foreground pixel of ``target`` (argmax not
    background), ``mined_weight`` on the most sensitive background pixels, at most ``ratio``
    times as many as foreground ones, 0 elsewhere."""
    foreground = target.argmax(1) != 0
    weights = foreground.float()
    n_mined = int(ratio * int(foreground.sum()))
    background = sensitive.masked_fill(foreground, -1.0).flatten()
    n_mined = min(n_mined, int((~foreground).sum()))
    if n_mined > 0:
        chosen = torch.topk(background, n_mined).indices
        weights.view(-1)[chosen] = mined_weight
    return weights


def psm_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy to the target, weighted, averaged over the weights."""
    ce = -(target * F.log_softmax(logits, 1)).sum(1)
    return (ce * weights).sum() / weights.sum().clamp_min(1e-6)


def mgd_loss(
    student: list[torch.Tensor],
    teacher: list[torch.Tensor],
    adaptors: nn.ModuleList,
    foreground: torch.Tensor,
) -> torch.Tensor:
    """MSE between adapted student features and (detached) teacher features inside the
    teacher's foreground ``(B, H, W)`` probability pooled to each level and binarised at 0.5,
    normalised per level by mask area x channels, summed over levels."""
    total = foreground.new_zeros(())
    for s, t, adaptor in zip(student, teacher, adaptors, strict=True):
        mask = F.adaptive_avg_pool2d(foreground[:, None], s.shape[-2:]) > 0.5
        area = mask.sum()
        if area == 0:
            continue
        diff = (adaptor(s) - t.detach()) ** 2
        total = total + (diff * mask).sum() / (area * s.shape[1])
    return total


def identity_adaptor(channels: int) -> nn.Conv2d:
    """A 1x1 adaptor that starts as the identity. The student starts equal to its teacher, so
    the feature term starts at 0; a randomly initialised adaptor made it start near 12 and,
    at lambda = 5, its gradients wrecked the cell net within 100 steps (measured: cells AJI
    0.55 -> 0.04 on the Pap smear benchmark)."""
    conv = nn.Conv2d(channels, channels, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels)[:, :, None, None])
        conv.bias.zero_()
    return conv


class MeanTeacherObjective:
    """The supervised objective plus MMT-PSM's consistency terms on unannotated fields."""

    def __init__(
        self,
        supervised: SupervisedCellObjective,
        student: CellModel,
        unlabeled: list[torch.Tensor],
        config: MeanTeacherConfig,
    ):
        if not unlabeled:
            raise ValueError("mean-teacher needs unannotated fields (none were given)")
        self.supervised = supervised
        self.config = config
        self.unlabeled = unlabeled
        self.teacher = copy.deepcopy(student).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.adaptors = nn.ModuleDict(
            {
                name: nn.ModuleList(identity_adaptor(c) for c in net.feature_channels)
                for name, net in (("nuclei", student.nuclei), ("cells", student.cells))
            }
        )
        self.weight = 0.0
        self.phase = "supervised"
        self._pseudo: list[tuple[torch.Tensor, np.ndarray, np.ndarray]] = []
        self._student = student

    def parameters(self):
        """The adaptors learn with the student."""
        return self.adaptors.parameters()

    def before_step(self, step: int, total_steps: int) -> None:
        cfg = self.config
        length = min(cfg.rampup_steps, max(total_steps - cfg.warmup_steps, 1))
        self.weight = cfg.consistency * ramp_up(step, cfg.warmup_steps, length)
        self.phase = "supervised" if self.weight == 0 else "mean-teacher"
        if self.weight > 0 and (not self._pseudo or step % cfg.refresh_every == 0):
            self._refresh_nuclei()

    def after_step(self, step: int, total_steps: int) -> None:
        cfg = self.config
        ema_update(self.teacher, self._student, ema_decay(step, cfg.ema_decay, cfg.warmup_steps))

    def state_dict(self) -> dict:
        """What a resumed run needs besides the student: the EMA teacher, the adaptors and the
        nuclei the teacher last found on the unannotated fields (found by an earlier teacher,
        so they cannot be found again from this one)."""
        return {
            "teacher": self.teacher.state_dict(),
            "adaptors": self.adaptors.state_dict(),
            "pseudo": [
                {
                    "nuclei": nuclei.to(torch.int32),
                    "ids": torch.from_numpy(ids.astype(np.int64)),
                    "centres": torch.from_numpy(centres.astype(np.int64)),
                }
                for nuclei, ids, centres in self._pseudo
            ],  # fmt: skip
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`."""
        self.teacher.load_state_dict(state["teacher"])
        self.adaptors.load_state_dict(state["adaptors"])
        self._pseudo = [
            (entry["nuclei"].to(torch.int64), entry["ids"].numpy(), entry["centres"].numpy())
            for entry in state["pseudo"]
        ]

    @torch.no_grad()
    def _refresh_nuclei(self) -> None:
        """The teacher's nuclei on every unannotated field: where the cell windows go."""
        self._pseudo = []
        for field in self.unlabeled:
            logits, _ = nucleus_logits(self.teacher, field)
            probs = torch.softmax(logits, 0).numpy()
            nuclei = nuclei_from_probabilities(probs, self.teacher.config.min_nucleus_area)
            ids, centres = nucleus_centres(nuclei)
            self._pseudo.append((torch.from_numpy(nuclei.astype(np.int64)), ids, centres))

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        out = self.supervised.batch(rng)
        if self.weight == 0:
            return out
        cfg, mc = self.config, self.supervised.model_config
        out["u_nucleus_x"], _ = nucleus_patches(
            self.unlabeled, rng, self.supervised.config.patch_size, cfg.unlabeled_patches
        )
        windows = []
        usable = [k for k, (_, ids, _) in enumerate(self._pseudo) if ids.size]
        for _ in range(cfg.unlabeled_windows if usable else 0):
            k = usable[int(rng.integers(len(usable)))]
            nuclei, ids, centres = self._pseudo[k]
            j = int(rng.integers(ids.size))
            windows.append(
                crop_windows(
                    self.unlabeled[k],
                    nuclei,
                    centres[j : j + 1],
                    ids[j : j + 1],
                    mc.window,
                    mc.crop_size,
                )[0]  # fmt: skip
            )
        if windows:
            out["u_cell_x"] = torch.stack(windows)
        return out

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        loss, logs = self.supervised.loss(model, batch)
        if self.weight == 0:
            return loss, logs
        cfg = self.config
        n_image = self.supervised.model_config.in_channels
        rng = np.random.default_rng(int(torch.randint(0, 2**31, ())))
        psm_total = mgd_total = loss.new_zeros(())
        for name, key in (("nuclei", "u_nucleus_x"), ("cells", "u_cell_x")):
            if key not in batch:
                continue
            x = batch[key]
            views = make_views(x, n_image, cfg.jitters, cfg.flip, cfg.jitter, rng)
            target, view_probs, t_feats = teacher_target(
                getattr(self.teacher, name), views, cfg.temperature
            )
            student_x = make_views(x, n_image, 1, False, cfg.jitter, rng)[0][0]
            s_logits, s_feats = getattr(model, name)(student_x)
            if cfg.mining:
                sensitive = sensitivity(view_probs)
                weights = mine_samples(target, sensitive, cfg.background_ratio, cfg.mined_weight)
            else:
                weights = torch.ones_like(target[:, 0])
            psm = psm_loss(s_logits, target, weights)
            guide = 1 - target[:, 0] if cfg.mask_guided else torch.ones_like(target[:, 0])
            mgd = mgd_loss(s_feats, t_feats, self.adaptors[name], guide)
            psm_total, mgd_total = psm_total + psm, mgd_total + mgd
        extra = self.weight * (cfg.psm_weight * psm_total + cfg.mgd_weight * mgd_total)
        logs.update(psm=float(psm_total.detach()), mgd=float(mgd_total.detach()))
        logs["lambda"] = self.weight
        return loss + extra, logs
