"""Which annotated slices train a model and which validate it, and when validation is
trusted to stop a run early.

Used by the teacher and by the students (which keep their teacher's split, so their scores
compare). With a few painted slices every held-out slice takes what is painted on it away from
training, so the split never holds out the only slice a class is painted on. The members of a
teacher ensemble each get a split of their own (:func:`member_splits`), holding out different
slices where they can, as the folds of a cross-validation do.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from ..config import TrainConfig
from ..models import ModelBundle

logger = logging.getLogger(__name__)

Split = tuple[list[int], list[int]]
"""Training and validation slices."""


def painted_classes(labels_stack: np.ndarray, slices: Sequence[int]) -> dict[int, set[int]]:
    """The foreground class ids painted on each of ``slices``."""
    return {int(i): set(np.unique(np.asarray(labels_stack[i])).tolist()) - {0} for i in slices}


def split_slices(
    annotated: Sequence[int],
    validation_fraction: float,
    seed: int,
    slice_classes: Mapping[int, set[int]] | None = None,
    times_held_out: Mapping[int, int] | None = None,
) -> Split:
    """Split annotated slices into training and validation (seeded).

    With at least 3 annotated slices, at least one is held out; with fewer the model is
    validated on its training slices, which is logged as a warning because the score then
    flatters the model. A fraction of 0 does the same by the user's choice (logged as such).

    With ``slice_classes`` (:func:`painted_classes`), a slice is never held out when that
    would leave a class painted on no training slice: a class painted on one slice only must
    be learnt from it (held out, the network never sees that class and misses it everywhere).
    Such slices are skipped in the seeded order; when too few slices can be spared the split
    holds out fewer, and with none to spare the model validates on its training slices.

    ``times_held_out`` (how often other splits held each slice out) puts the slices held out
    least often first, keeping the seeded order among equals: :func:`member_splits`.
    """
    annotated = [int(i) for i in annotated]
    n_validation = 0
    if len(annotated) >= 3 and validation_fraction > 0:
        n_validation = min(len(annotated) - 1, max(1, round(validation_fraction * len(annotated))))
    order = [annotated[i] for i in np.random.default_rng(seed).permutation(len(annotated))]
    if times_held_out:
        order.sort(key=lambda i: times_held_out.get(i, 0))  # stable: seeded among equals
    validation = _spare_slices(order, n_validation, slice_classes)
    if not validation:
        if validation_fraction <= 0:
            logger.info(
                "validation fraction 0: validating on the %d training slices", len(annotated)
            )
        elif n_validation == 0:
            logger.warning(
                "only %d annotated slice(s): validating on the training slices (annotate at "
                "least 3 slices for an honest validation score)",
                len(annotated),
            )
        else:
            logger.warning(
                "every annotated slice holds the only painting of some class, so none can be "
                "held out: validating on the training slices (paint each class on two slices "
                "or more for an honest validation score)"
            )
        return annotated, list(annotated)
    training = sorted(set(annotated) - set(validation))
    return training, sorted(validation)


def split_painted_slices(
    labels_stack: np.ndarray, annotated: Sequence[int], train_config: TrainConfig
) -> Split:
    """:func:`split_slices` of the annotated slices of ``labels_stack`` with ``train_config``'s
    fraction and seed, never holding out the only slice a class is painted on."""
    return split_slices(
        annotated,
        train_config.validation_fraction,
        train_config.seed,
        painted_classes(labels_stack, annotated),
    )


def member_splits(
    labels_stack: np.ndarray, annotated: Sequence[int], train_config: TrainConfig, members: int
) -> list[Split]:
    """One split per member of a teacher ensemble, the first :func:`split_painted_slices`'s.

    Each next member holds out the slices held out least often so far (the same number of
    slices, under the same only-painting rule), so with enough annotated slices the members
    validate on different slices and each trains on slices another one never saw: members
    that differ in their data disagree more, and their mean gains more, than members that
    differ only in their random start (docs/benchmarks.md, "Teacher ensembles"). Every
    annotated slice then trains most of the ensemble. When the first split cannot hold out
    any slice, all members train and validate on every annotated slice.
    """
    slice_classes = painted_classes(labels_stack, annotated)
    first = split_slices(
        annotated, train_config.validation_fraction, train_config.seed, slice_classes
    )
    if set(first[1]) <= set(first[0]):
        return [first] * members
    splits = [first]
    times_held_out = Counter(first[1])
    for _ in range(members - 1):
        split = split_slices(
            annotated,
            train_config.validation_fraction,
            train_config.seed,
            slice_classes,
            times_held_out,
        )
        splits.append(split)
        times_held_out.update(split[1])
    return splits


def _spare_slices(
    order: list[int], wanted: int, slice_classes: Mapping[int, set[int]] | None
) -> list[int]:
    """Up to ``wanted`` slices of ``order``, taken in order, whose removal leaves every class
    painted on a remaining slice (any ``wanted`` first slices without ``slice_classes``)."""
    if slice_classes is None or wanted == 0:
        return order[:wanted]
    # How many slices not held out paint each class: a slice can go while each of its
    # classes is painted on another one too.
    painted_on = Counter(c for i in order for c in slice_classes.get(i, set()))
    held: list[int] = []
    kept_back: list[int] = []
    for candidate in order:
        if len(held) == wanted:
            break
        classes = slice_classes.get(candidate, set())
        if all(painted_on[c] >= 2 for c in classes):
            held.append(candidate)
            painted_on.subtract(classes)
        else:
            kept_back.append(candidate)
    if kept_back:
        logger.info(
            "slice(s) %s kept for training: a class painted there is painted on no other "
            "training slice",
            ", ".join(str(i) for i in sorted(kept_back)),
        )
    return held


# Early stopping acts on the validation score. On one or two slices that score swings by more
# than the model improves late in a run (docs/benchmarks.md: one validation slice scored 0.76
# at step 900 and 0.66 at the end while the unseen slices went from 0.73 to 0.78), so a
# teacher validated on fewer slices runs to the end of its schedule.
MIN_SLICES_FOR_EARLY_STOPPING = 3


def early_stopping_allowed(*splits: Split) -> bool:
    """Whether the validation slices of each split are enough to stop a run early on (an
    ensemble's score is its members' mean, each on its own split)."""
    return all(_enough_validation(training, validation) for training, validation in splits)


def _enough_validation(training: Sequence[int], validation: Sequence[int]) -> bool:
    honest = not set(training) & set(validation)
    allowed = honest and len(validation) >= MIN_SLICES_FOR_EARLY_STOPPING
    if not allowed:
        logger.info(
            "early stopping off: %d %svalidation slice(s) are too few to act on (at least %d "
            "are needed); training runs to the end of its schedule",
            len(validation),
            "" if honest else "training-and-",
            MIN_SLICES_FOR_EARLY_STOPPING,
        )
    return allowed


def splits_extra(splits: Sequence[Split]) -> dict[str, list]:
    """What a checkpoint's ``extra`` stores of the members' splits."""
    extra: dict[str, list] = {"train_slices": splits[0][0], "validation_slices": splits[0][1]}
    if len(splits) > 1:
        extra["member_splits"] = [[training, validation] for training, validation in splits]
    return extra


def stored_splits(bundle: ModelBundle) -> list[Split]:
    """The split of each member of ``bundle`` as saved with it (one for a single network;
    slices may be missing in checkpoints that stored none)."""
    members = bundle.model_config.members
    # An ensemble saved before members had splits of their own shared the teacher's.
    stored = (
        bundle.extra.get("member_splits")
        or [[bundle.extra.get("train_slices"), bundle.extra.get("validation_slices")]] * members
    )
    return [([int(i) for i in t or ()], [int(i) for i in v or ()]) for t, v in stored]


def members_held_out_apart(teacher: ModelBundle) -> bool:
    """Whether the teacher's ensemble members validated on different slices (then every
    member but the first trained on some of the first's validation slices, which the
    students keep)."""
    return len({tuple(validation) for _, validation in stored_splits(teacher)}) > 1


def saved_splits(
    bundle: ModelBundle, labels_stack: np.ndarray, annotated: np.ndarray, train_config: TrainConfig
) -> list[Split]:
    """The members' splits stored with ``bundle`` if their slices are still annotated, else
    new ones."""
    members = bundle.model_config.members
    stored = stored_splits(bundle)
    painted = set(annotated.tolist())
    if len(stored) == members and all(
        training and validation and set(training) | set(validation) <= painted
        for training, validation in stored
    ):
        return stored
    logger.warning("the annotated slices changed since the checkpoint was saved: new split")
    splits = member_splits(labels_stack, annotated, train_config, members)
    bundle.extra.update(splits_extra(splits))
    return splits
