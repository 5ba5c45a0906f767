"""The project's labelled-pattern dataset: one HDF5 file per dataset.

Layout (format ``ebsd-fewshot-dataset``, version 1)::

    /patterns         (N, rows, cols) uint8 | uint16 | float32, chunked, gzip
    /labels           (N,) int16, index into the class list (-1 = unlabelled)
    /material         (N,) utf-8 material key
    /split            (N,) utf-8 "train" or "holdout" (held-out materials)
    /quaternions      (N, 4) float32 crystal orientation, NaN when unknown
    /pc               (N, 3) float32 Bruker projection centre, NaN when unknown
    /detector_tilt    (N,) float32, degrees
    /sample_tilt      (N,) float32, degrees
    /static_background (rows, cols), optional
    attrs: format, version, classes (JSON: [{"space_group": 225, "symbol": "Fm-3m"}, ...]),
           provenance (JSON), nav_shape (rows, cols) for maps, optional
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ebsd_core.atomic import atomic_path, check_free_space
from ebsd_core.errors import EMPTY_FILE, NOT_A_FILE, InputError
from ebsd_core.io.hdf5 import H5PY_ERRORS, HDF5_EXTENSIONS, check_variable_length, hdf5_error_words, missing_part_words
from ebsd_core.phases import space_group_symbol
from ebsd_core.wording import counted

FORMAT_NAME = "ebsd-fewshot-dataset"
FORMAT_VERSION = 1
_STR = h5py.string_dtype("utf-8")


def take(patterns, index: np.ndarray) -> np.ndarray:
    """``patterns[index]`` for numpy arrays and h5py datasets alike (h5py needs sorted indices)."""
    index = np.asarray(index)
    if isinstance(patterns, np.ndarray):
        return patterns[index]
    order = np.argsort(index)
    out = np.empty((len(index), *patterns.shape[1:]), dtype=patterns.dtype)
    if len(index):
        out[order] = patterns[index[order]]
    return out


@dataclass
class Dataset:
    """Labelled EBSD patterns with their metadata (in memory)."""

    patterns: np.ndarray
    labels: np.ndarray
    classes: list[int]  # space-group numbers, index = label
    material: np.ndarray
    split: np.ndarray | None = None
    quaternions: np.ndarray | None = None
    pc: np.ndarray | None = None
    detector_tilt: np.ndarray | None = None
    sample_tilt: np.ndarray | None = None
    static_background: np.ndarray | None = None
    nav_shape: tuple[int, int] | None = None
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.patterns)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.material = np.asarray(self.material, dtype=object)
        if self.split is None:
            self.split = np.full(n, "train", dtype=object)
        self.split = np.asarray(self.split, dtype=object)
        for name in ("labels", "material", "split"):
            if len(getattr(self, name)) != n:
                raise InputError(f"{name} has {len(getattr(self, name))} entries for {n} patterns")

    def __len__(self) -> int:
        return len(self.patterns)

    @property
    def class_symbols(self) -> list[str]:
        return [space_group_symbol(sg) for sg in self.classes]

    def class_counts(self) -> dict[str, int]:
        return label_summary(self.labels, self.classes)["class_counts"]

    def subset(self, index: np.ndarray) -> Dataset:
        """A new dataset holding the patterns at ``index``."""
        index = np.asarray(index)

        def pick(a):
            return None if a is None else np.asarray(a)[index]

        return Dataset(
            patterns=take(self.patterns, index),
            labels=self.labels[index],
            classes=list(self.classes),
            material=self.material[index],
            split=self.split[index],
            quaternions=pick(self.quaternions),
            pc=pick(self.pc),
            detector_tilt=pick(self.detector_tilt),
            sample_tilt=pick(self.sample_tilt),
            static_background=self.static_background,
            provenance=dict(self.provenance),
        )

    def summary(self) -> dict:
        return {
            "patterns": len(self),
            "pattern_shape": list(self.patterns.shape[1:]),
            "classes": self.class_symbols,
            **label_summary(self.labels, self.classes, self.material, self.split),
        }


def label_summary(labels: np.ndarray, classes: Sequence[int], material=None, split=None) -> dict:
    """Patterns per class (by symbol), and when known the materials and the held-out ones."""
    labels = np.asarray(labels)
    summary: dict = {"class_counts": {space_group_symbol(g): int((labels == i).sum()) for i, g in enumerate(classes)}}
    if material is not None:
        summary["materials"] = sorted({str(m) for m in material})
        if split is not None:
            summary["holdout_materials"] = sorted({str(m) for m, s in zip(material, split) if s == "holdout"})
    return summary


def materials_by_class(labels: np.ndarray, classes: Sequence[int], material, split=None) -> list[dict]:
    """One row per class and material: ``{"class": "Fm-3m", "material": "ni", "patterns": 40, "held out": False}``,
    in class order; ``held out`` when every pattern of the material is in the held-out split (the test of materials a
    model never saw)."""
    labels, material = np.asarray(labels), np.asarray(material).astype(str)
    held = np.asarray(split).astype(str) == "holdout" if split is not None else np.zeros(len(labels), bool)
    rows = []
    for index, group in enumerate(classes):
        in_class = labels == index
        for name in sorted(set(material[in_class])):
            mine = in_class & (material == name)
            rows.append(
                {
                    "class": space_group_symbol(group),
                    "material": str(name),
                    "patterns": int(mine.sum()),
                    "held out": bool(held[mine].all()),
                }
            )
    return rows


def check_two_classes(labels: np.ndarray, classes: Sequence[int], path: str | Path | None = None) -> None:
    """Refuse labels of fewer than two classes (``path`` names the file in the message)."""
    present = sorted({int(label) for label in labels if label >= 0})
    if len(present) < 2:
        only = ", ".join(space_group_symbol(classes[i]) for i in present) or "nothing"
        raise InputError(f"every pattern is labelled {only}: classification needs two classes or more", path)


def write_dataset(dataset: Dataset, path: str | Path) -> Path:
    """Write atomically: an interrupted write leaves nothing under ``path``.

    Raises
    ------
    InputError
        Before writing, when the disk has less room than the patterns take uncompressed (HDF5 leaves a
        file it could not finish in a state that fails again when it is closed).
    """
    path = Path(path)
    check_free_space(path, int(np.prod(dataset.patterns.shape)) * np.dtype(dataset.patterns.dtype).itemsize)
    n = len(dataset)
    rows, cols = dataset.patterns.shape[1:]
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["version"] = FORMAT_VERSION
        f.attrs["classes"] = json.dumps(
            [{"space_group": int(sg), "symbol": space_group_symbol(sg)} for sg in dataset.classes]
        )
        f.attrs["provenance"] = json.dumps(dataset.provenance, default=str)
        if dataset.nav_shape is not None:
            f.attrs["nav_shape"] = np.asarray(dataset.nav_shape, dtype=np.int64)
        f.create_dataset(
            "patterns",
            data=dataset.patterns,
            chunks=(min(n, 256), rows, cols) if n else None,
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        f.create_dataset("labels", data=dataset.labels.astype(np.int16))
        f.create_dataset("material", data=dataset.material.astype(str).astype(object), dtype=_STR)
        f.create_dataset("split", data=dataset.split.astype(str).astype(object), dtype=_STR)
        nan4, nan3, nan1 = np.full((n, 4), np.nan), np.full((n, 3), np.nan), np.full(n, np.nan)
        for name, value, default in (
            ("quaternions", dataset.quaternions, nan4),
            ("pc", dataset.pc, nan3),
            ("detector_tilt", dataset.detector_tilt, nan1),
            ("sample_tilt", dataset.sample_tilt, nan1),
        ):
            f.create_dataset(name, data=np.asarray(default if value is None else value, dtype=np.float32))
        if dataset.static_background is not None:
            f.create_dataset("static_background", data=dataset.static_background)
    return path


def made_by_simulator(generator: object) -> bool:
    """Whether a provenance ``generator`` is the simulator (``simulate``, ``simulate-map``, priors)."""
    return "simulate" in str(generator or "")


def is_dataset_file(path: str | Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT_NAME
    except H5PY_ERRORS:
        return False


def _refuse_other_formats(path: Path) -> None:
    """Refuse an empty file, and a pattern file of another format (an image, an EDAX scan) by what it is: found on
    review, a PNG given as a dataset was told that it is not an HDF5 file, "another format under this name, or
    damaged". One named as HDF5 is left to the HDF5 checks, which say what is wrong with it."""
    if path.stat().st_size == 0:
        raise InputError(EMPTY_FILE, path)
    if path.suffix.lower() not in HDF5_EXTENSIONS and not h5py.is_hdf5(path):
        raise InputError(
            f"{f'is a {path.suffix} file, not' if path.suffix else 'is not'} a dataset (the HDF5 file that 'simulate' "
            "and 'dataset' write): make one of a scan or images of one known phase with 'python -m ebsd_core dataset "
            "--scan FILE=SPACEGROUP --out data.h5', of class folders with 'dataset --labelled FOLDER' (or on the "
            "Data page)",
            path,
        )


def _texts(file, name: str, path: Path) -> np.ndarray:
    """A dataset's strings ``name`` (material, split); a missing or damaged one named in words (found by fuzzing:
    "TypeError: 'NoneType' object is not iterable", "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff")."""
    if name not in file:
        raise InputError(missing_part_words(name), path)
    try:
        return np.asarray([v.decode() if isinstance(v, bytes) else v for v in np.asarray(file[name])], dtype=object)
    except UnicodeDecodeError:
        raise InputError(f"its '{name}' names are damaged: not UTF-8 text", path) from None


def _json_attribute(file, name: str, path: Path, convert, what: str, default: str | None = None):
    """A dataset's JSON attribute ``name``, made what the dataset holds; a damaged one is named in words (found by
    fuzzing: "JSONDecodeError: Expecting ',' delimiter", "TypeError: 'NoneType' object is not iterable")."""
    try:
        text = file.attrs[name] if default is None else file.attrs.get(name, default)
        return convert(json.loads(text))
    except (KeyError, TypeError, ValueError) as exc:  # JSON's and UTF-8's errors are ValueErrors
        words = hdf5_error_words(exc) or f"its {what} is damaged: not the JSON this tool writes"
        raise InputError(words, path) from None


def read_dataset(path: str | Path, lazy: bool = False) -> Dataset:
    """Read a dataset; with ``lazy=True`` the patterns stay an open h5py dataset."""
    path = Path(path)
    if path.is_dir():
        raise InputError(
            "is a folder, not a dataset file: make one from class folders with 'python -m ebsd_core dataset "
            "--labelled FOLDER --out data.h5' (or on the Data page)",
            path,
        )
    if not path.is_file():
        raise InputError(NOT_A_FILE if path.exists() else "no such file", path)
    _refuse_other_formats(path)
    check_variable_length(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(hdf5_error_words(exc) or f"not a readable HDF5 file ({exc})", path) from None
    try:
        if f.attrs.get("format") != FORMAT_NAME:
            raise InputError(
                f"not an {FORMAT_NAME} file with labelled patterns; make one from an EBSD scan of a known "
                "phase with 'python -m ebsd_core dataset --scan FILE=SPACEGROUP --out data.h5' (or on the Data page)",
                path,
            )
        version = int(f.attrs.get("version", 0))
        if version > FORMAT_VERSION:
            raise InputError(f"dataset version {version} is newer than this tool ({FORMAT_VERSION})", path)
        classes = _json_attribute(f, "classes", path, lambda v: [int(c["space_group"]) for c in v], "list of classes")
        for sg in classes:
            space_group_symbol(sg)
        patterns = f["patterns"] if lazy else np.asarray(f["patterns"])
        if patterns.ndim != 3:
            raise InputError(f"patterns have shape {patterns.shape}, expected (N, rows, cols)", path)
        labels = np.asarray(f["labels"])
        if len(labels) != len(patterns):
            raise InputError(f"{counted(len(labels), 'label')} for {counted(len(patterns), 'pattern')}", path)
        if labels.size and (labels.max() >= len(classes) or labels.min() < -1):
            raise InputError(f"labels outside 0..{len(classes) - 1}", path)

        def opt(name):
            return np.asarray(f[name]) if name in f else None

        dataset = Dataset(
            patterns=patterns,
            labels=labels,
            classes=classes,
            material=_texts(f, "material", path),
            split=_texts(f, "split", path),
            quaternions=opt("quaternions"),
            pc=opt("pc"),
            detector_tilt=opt("detector_tilt"),
            sample_tilt=opt("sample_tilt"),
            static_background=opt("static_background"),
            nav_shape=tuple(int(v) for v in f.attrs["nav_shape"]) if "nav_shape" in f.attrs else None,
            provenance=_json_attribute(f, "provenance", path, dict, "record of how it was made", "{}"),
        )
    except InputError:
        f.close()
        raise
    except (KeyError, ValueError, TypeError, OSError, RuntimeError, json.JSONDecodeError) as exc:
        f.close()
        words = hdf5_error_words(exc) or f"a damaged dataset ({exc.__class__.__name__}: {exc})"
        raise InputError(words, path) from None
    if not lazy:
        f.close()
    return dataset
