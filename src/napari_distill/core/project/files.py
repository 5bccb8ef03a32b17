"""A project: many images of one kind, a few of them partly painted, the rest unlabelled.

Method 1's student is meant to learn from the pseudo-labels of *many* unannotated volumes (a
facility's fish), not from the unpainted slices of the one stack the teacher saw. A
:class:`Project` names those volumes: each :class:`ProjectImage` has a name (its file's stem;
the outputs are named after it), its image and optional labels. An image without labels, or
with labels painted nowhere, is unlabelled: its slices are the pool the teacher pseudo-labels.

Labels are matched to images by file name (:func:`match_labels`: ``<stem>`` or
``<stem>_labels`` in a labels folder) so that a folder of scans and a folder of the few painted
ones are enough; a labels file whose shape differs from its image's is refused with both names
(:meth:`Project.check`), before any work. A project file (TOML or JSON, :func:`load_project`)
lists the images, labels and the run's settings so that a run can be repeated exactly; a run
writes its own as ``project.json`` (:meth:`Project.save`).

Images are given as paths (read lazily, one at a time: a project of many volumes never holds
them all in memory) or, from napari's layers, as arrays.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..batch.volumes import LABELS_SUFFIX, list_volumes, volume_stem
from ..io import ImageData, read_image, read_labels
from ..preprocess import is_rgb

try:  # Python >= 3.11; on 3.10 TOML project files need tomli (JSON ones need nothing)
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ImportError:
        tomllib = None  # type: ignore[assignment]

PROJECT_SUFFIXES = (".toml", ".json")


class ProjectError(ValueError):
    """A project cannot be built or read; the message names the file at fault."""


@dataclass(frozen=True)
class ProjectImage:
    """One image of a project: its name, the image and (optionally) its painted labels.

    ``image`` and ``labels`` are file paths or arrays (napari layers' data); ``scale`` and
    ``rgb`` are used for arrays (a file carries its own); a ``scale`` shorter than the array
    gives the last axes' pixel sizes, the others 1.
    """

    name: str
    image: Any
    labels: Any = None
    scale: tuple[float, ...] | None = None
    rgb: bool | None = None

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def read(self) -> tuple[ImageData, np.ndarray | None]:
        """The image (lazily when large) and its labels (in memory, or None), checked.

        Raises
        ------
        ProjectError
            The labels' shape differs from the image's spatial shape (both files named).
        """
        if isinstance(self.image, str | os.PathLike):
            data = read_image(self.image)
        else:
            rgb = is_rgb(self.image, self.rgb)
            ndim = np.ndim(self.image) - (1 if rgb else 0)
            given = tuple(float(v) for v in self.scale or ())[-ndim:]
            # a scale shorter than the array (a 2D pixel size for a stack of fields) sizes the
            # last axes; the others keep 1, as napari would show them
            scale = (1.0,) * (ndim - len(given)) + given
            data = ImageData(self.image, scale, rgb, Path(self.name))
        labels = None
        if self.labels is not None:
            if isinstance(self.labels, str | os.PathLike):
                labels = read_labels(self.labels).data
            else:
                labels = np.asarray(self.labels)
            spatial = tuple(data.data.shape[: data.data.ndim - (1 if data.rgb else 0)])
            if tuple(labels.shape) != spatial:
                raise ProjectError(
                    f"labels {_describe(self.labels)} have shape {tuple(labels.shape)}, but the "
                    f"image {_describe(self.image)} has {spatial}: a labels file must have its "
                    "image's shape"
                )
        return data, labels


@dataclass(frozen=True)
class Project:
    """The images of a run (in order) and the settings it was run with.

    ``settings`` holds the command line's settings by their option names (``steps``,
    ``tau``, ``seed``, ...), so that :meth:`save` and :func:`load_project` repeat a run.
    """

    images: tuple[ProjectImage, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.images:
            raise ProjectError("a project needs at least one image")
        names = [i.name for i in self.images]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ProjectError(
                f"images named {twice} appear twice: outputs are named after the image, so "
                "names must be distinct (rename the files)"
            )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.images)

    @property
    def labelled(self) -> tuple[ProjectImage, ...]:
        return tuple(i for i in self.images if i.has_labels)

    def check(self) -> None:
        """Read every labels file against its image's shape; raise naming the first mismatch.

        Images are opened lazily (a large TIFF is memory-mapped), so this costs little.
        """
        if not self.labelled:
            raise ProjectError(
                "no image of the project has labels: paint a few slices of one image and give "
                "them with --labels-dir (or in the project file)"
            )
        for item in self.labelled:
            item.read()

    def to_dict(self, relative_to: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Plain values: the images' paths (relative to ``relative_to`` where possible)."""
        base = None if relative_to is None else Path(relative_to).resolve()

        def where(path: Any) -> str | None:
            if path is None:
                return None
            if not isinstance(path, str | os.PathLike):
                raise ProjectError("a project of in-memory arrays cannot be saved to a file")
            resolved = Path(path).resolve()
            if base is not None and resolved.is_relative_to(base):
                return resolved.relative_to(base).as_posix()
            return str(resolved)

        images = [
            {"name": i.name, "image": where(i.image)}
            | ({} if i.labels is None else {"labels": where(i.labels)})
            for i in self.images
        ]
        return {"images": images, "settings": dict(self.settings)}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the project as JSON (paths relative to the file's folder where they can be)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(path.parent), indent=2) + "\n")
        return path


def _describe(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return str(source)
    return f"(an array of shape {np.shape(source)})"


def _image_name(path: Path) -> str:
    return volume_stem(path)


def match_labels(images: Sequence[Path], labels_dir: str | os.PathLike[str]) -> dict[Path, Path]:
    """``{image: labels file}`` for the images with a labels file in ``labels_dir``.

    An image ``<stem>.tif`` takes ``<stem>.<any image suffix>`` or ``<stem>_labels.<suffix>``
    from the folder; images without one are unlabelled.

    Raises
    ------
    ProjectError
        The folder does not exist, or two files claim one image (both named).
    """
    folder = Path(labels_dir)
    if not folder.is_dir():
        raise ProjectError(f"the labels folder {folder} does not exist")
    try:
        candidates = list_volumes(str(folder))
    except ValueError:
        candidates = []
    by_stem: dict[str, list[Path]] = {}
    for path in candidates:
        stem = volume_stem(path)
        stem = stem[: -len(LABELS_SUFFIX)] if stem.endswith(LABELS_SUFFIX) else stem
        by_stem.setdefault(stem, []).append(path)
    matched: dict[Path, Path] = {}
    for image in images:
        found = by_stem.get(_image_name(image), [])
        found = [p for p in found if p.resolve() != image.resolve()]
        if len(found) > 1:
            raise ProjectError(
                f"{', '.join(str(p) for p in found)} all match the image {image}: keep one"
            )
        if found:
            matched[image] = found[0]
    return matched


def project_from_paths(
    images: str | Sequence[str | os.PathLike[str]],
    labels_dir: str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Project:
    """A project of the images named by a glob, folder or list file (or a list of paths),
    with labels matched by name from ``labels_dir``."""
    if isinstance(images, str):
        try:
            paths = list_volumes(images)
        except ValueError as error:
            raise ProjectError(str(error)) from error
    else:
        paths = [Path(p) for p in images]
    if labels_dir is not None:
        # A labels folder inside the images' folder is not a source of images.
        labels_root = Path(labels_dir).resolve()
        paths = [p for p in paths if not p.resolve().is_relative_to(labels_root)]
    matched = {} if labels_dir is None else match_labels(paths, labels_dir)
    return Project(
        tuple(ProjectImage(_image_name(p), p, matched.get(p)) for p in paths),
        dict(settings or {}),
    )


def load_project(path: str | os.PathLike[str]) -> Project:
    """Read a project file (TOML or JSON; relative paths are relative to the file).

    The file holds ``images`` (a glob, folder or list of paths, or a list of tables /
    objects with ``image`` and optionally ``labels`` and ``name``), optionally
    ``labels_dir`` (labels matched by name) and a ``settings`` table.

    Raises
    ------
    ProjectError
        The file cannot be parsed or lacks ``images`` (the file named).
    """
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"project file {path} does not exist")
    toml = path.suffix.lower() == ".toml"
    if toml and tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        raise ProjectError(f"{path}: TOML needs Python 3.11 or tomli; write the project as JSON")
    try:
        text = path.read_text()
        payload = tomllib.loads(text) if toml else json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:  # TOMLDecodeError, JSONDecodeError
        raise ProjectError(f"{path} is not a valid project file: {error}") from error
    if not isinstance(payload, dict) or "images" not in payload:
        raise ProjectError(f"{path} lacks 'images' (a glob, a folder or a list of images)")
    base = path.parent

    def local(value: Any) -> Path:
        candidate = Path(str(value)).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    settings = payload.get("settings") or {}
    labels_dir = payload.get("labels_dir")
    images = payload["images"]
    if isinstance(images, str):
        pattern = images if Path(images).is_absolute() else str(base / images)
        return project_from_paths(
            pattern, None if labels_dir is None else local(labels_dir), settings
        )
    if not isinstance(images, list):
        raise ProjectError(f"{path}: 'images' must be a string or a list")
    entries = []
    for number, entry in enumerate(images, start=1):
        if isinstance(entry, str):
            entry = {"image": entry}
        if not isinstance(entry, dict) or "image" not in entry:
            raise ProjectError(f"{path}: image {number} lacks 'image'")
        image = local(entry["image"])
        entries.append((image, entry.get("labels"), entry.get("name")))
    matched = {} if labels_dir is None else match_labels([e[0] for e in entries], local(labels_dir))
    return Project(
        tuple(
            ProjectImage(
                name or _image_name(image),
                image,
                local(labels) if labels is not None else matched.get(image),
            )
            for image, labels, name in entries
        ),
        dict(settings),
    )
