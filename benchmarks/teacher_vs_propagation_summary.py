"""The summary of ``teacher_vs_propagation.py``'s grid: per setting each method's mean and
spread over the seeds, the leave-out estimates beside the truth, and issue 25's targets.

The leave-out estimate of each source is recomputed from a run's stored per-class held-out
IoUs under three rules, so that runs made before a rule changed are scored alike:

- ``all_classes``: the mean over every class either the source predicts or the paint holds on
  the held-out slices (the product's rule before 2026-12-07, late: each source averaged over
  its own set of classes);
- ``painted_classes``: the mean over the classes painted on the held-out slices, the same set
  for both sources (:attr:`~napari_distill.core.evaluation.Comparison.scored_class_ids`; the
  product's rule since);
- ``own_kind``: as ``painted_classes``, on the held-out sets that a network slicing along the
  painted slices' own axis predicted (for a views teacher: not a views network alone); the
  other sets where there is none. Needs ``held_out_scores`` (runs since the rule was added).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

METHODS = ("nearest", "flow", "teacher-default", "teacher-plan", "combined")
# What the targets count as far apart: the largest spacing run; the combination must lead
# propagation there by this much (issue 25).
LEAD_FAR_APART = 0.05
RULES = ("all_classes", "painted_classes", "own_kind")


def _stats(values: list[float]) -> dict[str, Any]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return {"mean": float("nan"), "spread": float("nan"), "n": 0}
    spread = statistics.stdev(values) if len(values) > 1 else float("nan")
    return {"mean": statistics.mean(values), "spread": spread, "n": len(values)}


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.mean(values) if values else float("nan")


def estimates(comparison: dict[str, Any]) -> dict[str, tuple[float, float] | None]:
    """``{rule: (teacher, propagation)}`` leave-out mIoU of one run's comparison (None where
    the rule cannot be computed from what the run stored)."""
    if not comparison.get("fair"):
        return dict.fromkeys(RULES)
    rows = comparison["classes"]
    out: dict[str, tuple[float, float] | None] = {
        "all_classes": (
            _mean([r["teacher_iou"] for r in rows]),
            _mean([r["propagation_iou"] for r in rows]),
        ),
        "painted_classes": None,
        "own_kind": None,
    }
    scored = comparison.get("scored_class_ids")
    if scored is not None:
        chosen = [r for r in rows if r["class_id"] in set(scored)]
        out["painted_classes"] = (
            _mean([r["teacher_iou"] for r in chosen]),
            _mean([r["propagation_iou"] for r in chosen]),
        )
    sets = comparison.get("held_out_scores")
    if sets:
        own = [s for s in sets if 0 in s["axes"]] or sets
        out["own_kind"] = (
            _mean([s["teacher_miou"] for s in own]),
            _mean([s["propagation_miou"] for s in own]),
        )
    return out


def _ranked_right(pair: tuple[float, float] | None, teacher: float, flow: float) -> bool | None:
    if pair is None or any(math.isnan(v) for v in pair):
        return None
    return (pair[0] >= pair[1]) == (teacher >= flow)


def _estimates(
    rows: list[dict[str, Any]], seeds: list[int], teacher: str
) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """Per seed, ``teacher``'s comparison under each rule beside the true scores; and per rule
    ``[right, scored]`` over the seeds."""
    entries = []
    votes = {rule: [0, 0] for rule in RULES}
    for seed in seeds:
        by = {r["method"]: r for r in rows if r["seed"] == seed}
        taught, flow = by.get(teacher), by.get("flow")
        if taught is None or flow is None or "comparison" not in taught:
            continue
        comparison = taught["comparison"]
        rules = estimates(comparison)
        right = {rule: _ranked_right(rules[rule], taught["miou"], flow["miou"]) for rule in RULES}
        for rule in RULES:
            if right[rule] is not None:
                votes[rule][0] += right[rule]
                votes[rule][1] += 1
        entries.append(
            {
                "seed": seed, "teacher_true": taught["miou"], "flow_true": flow["miou"],
                "teacher_loo": comparison["loo_teacher"], "flow_loo": comparison["loo_flow"],
                "by_rule": {rule: list(v) if v else None for rule, v in rules.items()},
                "ranked_right_by_rule": right,
                "flow_own_loo": flow.get("loo_miou"), "held_out": comparison["held_out"],
                "ranked_right": right["painted_classes"],
            }
        )  # fmt: skip
    return entries, votes


def grid_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting (resolution, spacing, k): each method's mean mIoU and spread (standard
    deviation over the seeds), the leave-out estimates beside the truth, and the targets:

    - ``combined_at_least_best``: the combination's mean is below the best single method's
      (nearest, flow, either teacher) by no more than the larger of the two's spreads; with
      one seed there is no spread and it must be at least as good;
    - ``lead_over_propagation`` (and, at the largest spacing run, ``lead_target_met``): the
      combination minus the better propagation, target 0.05;
    - ``rankings``: per estimate rule (:data:`RULES`), in how many runs and in how many
      settings (by majority over the seeds scored; a tie is not right) the leave-out
      estimate ranks the planned teacher against flow propagation as their true scores do;
      ``rankings_default_teacher`` the same for today's default teacher (one network: the
      network scored on its held-out slice is the teacher itself).
    """
    settings = sorted({(r["resolution"], r["spacing"], r["k"]) for r in runs})
    largest = max((s for _, s, _ in settings), default=None)
    out_settings = []
    rankings = {
        teacher: {rule: {"runs_right": 0, "runs": 0, "settings_right": 0, "settings": 0}
                  for rule in RULES}
        for teacher in ("teacher-plan", "teacher-default")
    }  # fmt: skip
    for resolution, spacing, k in settings:
        rows = [
            r for r in runs if (r["resolution"], r["spacing"], r["k"]) == (resolution, spacing, k)
        ]
        methods = {m: _stats([r["miou"] for r in rows if r["method"] == m]) for m in METHODS}
        entry: dict[str, Any] = {
            "resolution": resolution, "spacing": spacing, "k": k,
            "seeds": sorted({r["seed"] for r in rows}), "miou": methods, "estimates": [],
        }  # fmt: skip
        for teacher, tally in rankings.items():
            estimates_, votes = _estimates(rows, entry["seeds"], teacher)
            key = "" if teacher == "teacher-plan" else "_default_teacher"
            entry["estimates" + key] = estimates_
            entry["ranking_votes" + key] = {
                r: {"right": v[0], "scored": v[1]} for r, v in votes.items()
            }
            for rule, (right, scored) in votes.items():
                tally[rule]["runs_right"] += right
                tally[rule]["runs"] += scored
                if scored:
                    tally[rule]["settings"] += 1
                    tally[rule]["settings_right"] += right * 2 > scored
        singles = [m for m in METHODS[:4] if methods[m]["n"]]
        if methods["combined"]["n"] and singles:
            best = max(singles, key=lambda m: methods[m]["mean"])
            spreads = [methods[m]["spread"] for m in (best, "combined")]
            spread = max((s for s in spreads if not math.isnan(s)), default=0.0)
            combined = methods["combined"]["mean"]
            entry["best_single"] = best
            entry["combined_minus_best"] = combined - methods[best]["mean"]
            entry["combined_at_least_best"] = combined >= methods[best]["mean"] - spread
            propagated = [methods[m]["mean"] for m in ("nearest", "flow") if methods[m]["n"]]
            if propagated:
                entry["lead_over_propagation"] = combined - max(propagated)
                if spacing == largest:
                    entry["lead_target_met"] = entry["lead_over_propagation"] >= LEAD_FAR_APART
        out_settings.append(entry)
    return {
        "settings": out_settings,
        "rankings": rankings["teacher-plan"],
        "rankings_default_teacher": rankings["teacher-default"],
        "ranked_right": rankings["teacher-plan"]["painted_classes"]["runs_right"],
        "ranked": rankings["teacher-plan"]["painted_classes"]["runs"],
        "combined_at_least_best_everywhere": all(
            e.get("combined_at_least_best", False) for e in out_settings
        ),
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as text: one line per setting and method, then the targets."""
    lines = []
    for e in summary["settings"]:
        cells = []
        for m in METHODS:
            s = e["miou"][m]
            if s["n"]:
                spread = "" if math.isnan(s["spread"]) else f" ± {s['spread']:.3f}"
                cells.append(f"{m} {s['mean']:.3f}{spread}")
        lines.append(f"r {e['resolution']} spacing {e['spacing']} k {e['k']}: " + ", ".join(cells))
        for x in e["estimates"]:
            rules = "; ".join(
                f"{rule} {v[0]:.3f} / {v[1]:.3f} ({x['ranked_right_by_rule'][rule]})"
                for rule, v in x["by_rule"].items()
                if v is not None
            )
            lines.append(
                f"  seed {x['seed']}: true teacher {x['teacher_true']:.3f} / flow "
                f"{x['flow_true']:.3f}; leave-out teacher / flow (ranked right): {rules}"
            )
        if "combined_at_least_best" in e:
            lead = e.get("lead_over_propagation", float("nan"))
            lines.append(
                f"  combined - best single ({e['best_single']}): {e['combined_minus_best']:+.3f}"
                f" (target met: {e['combined_at_least_best']}); over propagation {lead:+.3f}"
                + (f" (far apart, target 0.05 met: {e['lead_target_met']})"
                   if "lead_target_met" in e else "")
            )  # fmt: skip
    for teacher in ("rankings", "rankings_default_teacher"):
        for rule, r in summary[teacher].items():
            lines.append(
                f"{teacher}, leave-out ({rule}): right in {r['runs_right']} of {r['runs']} "
                f"runs, {r['settings_right']} of {r['settings']} settings"
            )
    return lines
