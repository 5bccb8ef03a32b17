"""Qt-free core of napari-distill: numpy, torch, scikit-image and tifffile only.

The stages a slice goes through, each a subpackage: ``io`` (files in and out), ``samples``
(synthetic data), ``models`` (networks, checkpoints), ``inference`` (prediction), ``training``
(the loop, the teacher), ``quality`` (the quality classifier, the selection), ``strategies``
(one module per student strategy), ``evaluation`` (metrics, labels and instances); at the top,
what ties them together: ``config``, ``device``, ``preprocess``, ``progress``, ``allocator``,
``pipeline`` and ``report``. The layering is an import-linter contract in ``pyproject.toml``.

This module is the scriptable surface: the names below are what a script, the CLI, the
widgets and the benchmarks need. They load on first use (PEP 562), so ``import
napari_distill.core`` stays cheap and reading a file does not import torch:

>>> from napari_distill import core
>>> image = core.read_image("stack.tif").data
>>> painted = core.read_labels("painted.tif").data
>>> run = core.train_teacher(image, painted, train_config=core.TrainConfig(steps=300))
>>> teacher = core.run_to_completion(run.steps())
>>> prediction = core.run_to_completion(core.predict_bundle(teacher, image))

Nothing under this package may import napari, qtpy, magicgui or superqt: the command line,
the benchmarks and the tests use it without a display.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module (under napari_distill.core) that provides it
_PUBLIC = {
    # reading and writing
    "ImageData": "io",
    "ReadError": "io",
    "read_image": "io",
    "read_labels": "io",
    "write_image": "io",
    "write_labels": "io",
    "write_probabilities": "io",
    # synthetic samples
    "make_medaka": "samples",
    "make_pap_smear": "samples",
    # simulated imperfect annotations: noisy masks, scribbles, clicks
    "corrupt_labels": "samples",
    "noise_share": "samples",
    "simulate_points": "samples",
    "simulate_scribbles": "samples",
    # weak labels from files: points (slice, y, x, class), slice tags (slice, classes)
    "read_points_csv": "io",
    "read_tags_csv": "io",
    "weak_csv_kind": "io",
    # settings
    "InstanceConfig": "config",
    "KDConfig": "config",
    "ModelConfig": "config",
    "PredictConfig": "config",
    "PropagationConfig": "config",
    "QualityConfig": "config",
    "TrainConfig": "config",
    "PipelineConfig": "pipeline",
    "select_device": "device",
    # models and checkpoints
    "CheckpointError": "models",
    "ModelBundle": "models",
    "load_checkpoint": "models",
    "save_checkpoint": "models",
    # training a teacher
    "TrainStep": "training",
    "TrainingRun": "training",
    "resume_training": "training",
    "train_teacher": "training",
    # prediction
    "Prediction": "inference",
    "predict_bundle": "inference",
    "predict_stack": "inference",
    # labels propagated from the painted slices, without learning
    "propagate": "inference",
    "propagation_leave_one_out": "inference",
    # the teacher against propagation on the painted slices it held out, and their combination
    "compare_with_propagation": "inference",
    "combine_probabilities": "evaluation",
    # the quality classifier and the selection of slices
    "Selection": "quality",
    "fit_quality": "quality",
    "load_quality": "quality",
    "save_quality": "quality",
    "score_slices": "quality",
    # students
    "STRATEGIES": "strategies",
    "get_strategy": "strategies",
    "MixedConfig": "strategies",
    "MutualConfig": "strategies",
    "WeakPipelineConfig": "pipeline_weak",
    "run_weak_pipeline": "pipeline_weak",
    # labels, instances and metrics
    "apply_instance_config": "evaluation",
    "clean_semantic": "evaluation",
    "evaluate_semantic": "evaluation",
    "iou_per_class": "evaluation",
    "mean_dice": "evaluation",
    "mean_iou": "evaluation",
    # the whole pipeline, and driving any generator to its result
    "run_pipeline": "pipeline",
    "run_to_completion": "progress",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what static tools see; at run time the names load on first use
    from .config import (
        InstanceConfig,
        KDConfig,
        ModelConfig,
        PredictConfig,
        PropagationConfig,
        QualityConfig,
        TrainConfig,
    )
    from .device import select_device
    from .evaluation import (
        apply_instance_config,
        clean_semantic,
        combine_probabilities,
        evaluate_semantic,
        iou_per_class,
        mean_dice,
        mean_iou,
    )
    from .inference import (
        Prediction,
        compare_with_propagation,
        predict_bundle,
        predict_stack,
        propagate,
        propagation_leave_one_out,
    )
    from .io import (
        ImageData,
        ReadError,
        read_image,
        read_labels,
        read_points_csv,
        read_tags_csv,
        weak_csv_kind,
        write_image,
        write_labels,
        write_probabilities,
    )
    from .models import CheckpointError, ModelBundle, load_checkpoint, save_checkpoint
    from .pipeline import PipelineConfig, run_pipeline
    from .pipeline_weak import WeakPipelineConfig, run_weak_pipeline
    from .progress import run_to_completion
    from .quality import Selection, fit_quality, load_quality, save_quality, score_slices
    from .samples import (
        corrupt_labels,
        make_medaka,
        make_pap_smear,
        noise_share,
        simulate_points,
        simulate_scribbles,
    )
    from .strategies import STRATEGIES, MixedConfig, MutualConfig, get_strategy
    from .training import TrainingRun, TrainStep, resume_training, train_teacher
