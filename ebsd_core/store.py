"""The model store: ``models/<name>/weights.safetensors`` + ``model.json``.

Models are saved atomically (a temporary folder renamed into place), never
overwritten without ``force``, guarded by a lock so two saves of one name
cannot interleave, and loaded without unpickling anything: the JSON is
validated and the weights file's SHA-256 must match the one recorded in it.
A model trained elsewhere joins the store through :func:`import_model`, which
checks it as :func:`load_model` does before it appears, and leaves as the zip
of :func:`export_model`; :func:`delete_model` moves a model out of sight into
``.deleted/``, from where it can be moved back.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import fcntl
import hashlib
import io
import itertools
import json
import os
import re
import secrets
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load, save_file
from torch import nn

from ebsd_core import __version__
from ebsd_core.atomic import account_name, atomic_dir, atomic_path, check_writable_folder, may_write_in, owner_note
from ebsd_core.backbones import CHANNEL_MODES, create_model
from ebsd_core.errors import InputError, ModelError, PhaseError, StoreError
from ebsd_core.io.dataset import made_by_simulator
from ebsd_core.io.images import ZIP_ERRORS, first_names
from ebsd_core.paths import (
    MODEL_STORE_VARIABLE,
    NOT_UTF8,
    broken_link,
    default_store,
    fewshot_home,
    is_hidden,
    printable_path,
)
from ebsd_core.phases import CATALOGUE, material_label, space_group_symbol
from ebsd_core.preprocess import PreprocessConfig
from ebsd_core.wording import counted

FORMAT_NAME = "ebsd-fewshot-model"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
META = "model.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
DEFAULT_UNKNOWN_THRESHOLD = 0.5
MAX_VIEWS = 64  # test-time views per pattern
MAX_WEIGHTS_BYTES = 4 * 1024**3  # a model to import (ConvNeXt-Base: 0.35 GB)
MAX_META_BYTES = 64 * 1024**2  # its model.json (the history of a long training is a few MB)
_EXISTS = "{target} already exists; choose another name or pass --force to replace it"
#: A model saved by another account whose files only it may read (a umask of 077).
UNREADABLE_MODEL = (
    "this account may not read it (permission denied): whoever saved it can let others read it "
    "(chmod -R a+rX on its folder)"
)
DELETED = ".deleted"  # where delete_model puts models; hidden from list_models
#: A file put in the store (:func:`default_store`) at its first save. With the working folder's record of the stores
#: saved to (:data:`STORES_SAVED_TO`), it tells a store on a share that is not mounted (an empty folder, or none,
#: where a model saved would be hidden once the share is back) from a new store.
STORE_MARK = ".ebsd-model-store"
STORES_SAVED_TO = "stores.json"


def _augmentation_words(augment: dict | None) -> list[str]:
    """``["noise up to 0.3 x the pattern's std", "crystal rotation up to 30 deg", ...]``; the settings off left out."""
    augment, words = augment or {}, []
    if augment.get("noise_std"):
        words.append(f"noise up to {augment['noise_std']:g} x the pattern's std")
    if augment.get("crystal_rotation"):
        words.append(f"crystal rotation up to {augment['crystal_rotation']:g} deg")
    if augment.get("rotation"):
        words.append(f"in-plane rotation up to {augment['rotation']:g} deg")
    if (augment.get("resolution") or 1) > 1:
        words.append(f"camera binning up to {augment['resolution']:g}x")
    if augment and not words:
        words.append("contrast, gamma, blur and projection-centre jitter only")
    elif words:
        words.append("contrast, gamma, blur, projection-centre jitter")
    return words


#: The validation accuracy whose first epoch tells how fast a model learnt (Kaufmann et al.: transfer vs scratch).
VALIDATION_TARGET = 0.95


def epochs_to_reach(history: list[dict], target: float = VALIDATION_TARGET) -> int | None:
    """First epoch whose validation accuracy reaches ``target`` (None if never)."""
    return next((h["epoch"] for h in history if h.get("val_accuracy", 0) >= target), None)


#: A training split's words in :meth:`ModelCard.how_trained`.
SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test", "holdout": "held-out"}


def _rehearsal_words(config: dict) -> str:
    if "rehearsal_per_class" not in config:
        return ""
    per_class = config["rehearsal_per_class"]
    return f"{per_class} simulated patterns per class ({config.get('rehearsal_source')})" if per_class else "off"


@dataclass
class ModelCard:
    """Everything needed to rebuild and use a model, stored as ``model.json``."""

    backbone: str
    classes: list[int]
    preprocess: PreprocessConfig
    channel_mode: str = "adapt"
    pretrained: bool = True
    unknown_threshold: float = DEFAULT_UNKNOWN_THRESHOLD
    views: int = 1  # test-time views averaged per pattern (see inference.model_probabilities)
    # only patterns whose first view's top probability is below this get the other views (None: all do)
    views_below: float | None = None
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    name: str = ""
    created: str = ""
    version: str = __version__

    @property
    def class_symbols(self) -> list[str]:
        return [space_group_symbol(sg) for sg in self.classes]

    @property
    def is_prior(self) -> bool:
        """Whether this model is an EBSD prior (:mod:`ebsd_core.prior`), made to start few-shot training from."""
        return "prior" in self.training

    @property
    def simulated_materials(self) -> list[str]:
        """The catalogue materials an EBSD prior, or a model trained on simulated patterns alone, learnt from: what
        training that starts from it can rehearse (:mod:`ebsd_core.rehearsal`); empty for other models."""
        if self.is_prior:
            return [str(m) for m in self.training["prior"].get("materials", [])]
        if not made_by_simulator(self.training.get("dataset")):
            return []
        return [str(m) for m in self.training.get("materials", []) if str(m) in CATALOGUE]

    @property
    def weights_file(self) -> str | None:
        """The saved model (an EBSD prior) or weights file training started from (``TrainConfig.weights_file``)."""
        return (self.training.get("config") or {}).get("weights_file")

    @property
    def initialisation(self) -> tuple[str, str]:
        """Where training started, as (kind, name): ("ImageNet", ""), ("scratch", ""), ("EBSD prior", NAME),
        ("saved model", NAME) or ("weights file", NAME), from :attr:`weights_file` (a prior is named so while its
        folder is still here)."""
        weights = self.weights_file
        if not weights:
            return ("ImageNet" if self.pretrained else "scratch"), ""
        path = Path(str(weights))
        if path.suffix:
            return "weights file", path.name
        try:
            return ("EBSD prior" if read_card(path).is_prior else "saved model"), path.name
        except ModelError:
            return "saved model", path.name

    @property
    def kind(self) -> str:
        """Where this model's training started, in a word or three for the store's listing: "prior" (an EBSD prior
        itself), "transfer" (from ImageNet), "scratch", or "from saved model NAME" (or EBSD prior, weights file)."""
        if self.is_prior:
            return "prior"
        start, name = self.initialisation
        return {"ImageNet": "transfer", "scratch": "scratch"}.get(start) or f"from {start} {name}"

    @property
    def input_size(self) -> int:
        return self.preprocess.size

    def how_trained(self) -> dict[str, str]:
        """The training of this model in plain words, as its card records it: ``{"Shots per class": "20", ...}``;
        what a card (an older one, or one added from elsewhere) does not record is left out."""
        training, config = self.training, self.training.get("config") or {}
        split = training.get("split") or {}
        grey = {"adapt": "grey input to its adapted stem", "replicate": "grey copied to 3 channels"}
        dataset = Path(str(training.get("dataset_path") or "")).name
        rows = {
            "Backbone": lambda: f"{self.backbone}, {grey.get(self.channel_mode, self.channel_mode)}",
            "Started from": lambda: " ".join(self.initialisation).strip(),
            "Dataset": lambda: ", ".join(
                filter(None, [dataset, training.get("dataset") and f"made by {training['dataset']}"])
            ),
            "Materials": lambda: ", ".join(material_label(m) for m in training.get("materials") or []),
            "Left out of this prior": lambda: ", ".join(
                material_label(m) for m in (training.get("prior") or {}).get("excluded") or []
            ),
            "Shots per class": lambda: str(config.get("shots", "")),
            "Patterns": lambda: ", ".join(f"{split[k]:,} {word}" for k, word in SPLIT_WORDS.items() if split.get(k)),
            "Input": lambda: (
                f"{self.input_size} px"
                + (f" (patterns of {training['pattern_size']} px)" if training.get("pattern_size") else "")
            ),
            "Epochs": lambda: self._epochs_words(config.get("epochs"), training.get("best_epoch")),
            f"{VALIDATION_TARGET:.0%} validation accuracy": self._target_words,
            "Optimiser": lambda: (
                f"AdamW, learning rate {config['learning_rate']:g}, batch {config.get('batch_size')}, "
                f"frozen epochs {config.get('frozen_warmup_epochs', 0)}, patience {config.get('patience')}"
                if "learning_rate" in config
                else ""
            ),
            "Augmentation": lambda: ", ".join(
                _augmentation_words(training.get("augment") or config.get("augment_config"))
            ),
            "Rehearsal": lambda: _rehearsal_words(config),
            "Test-time views": lambda: (
                str(self.views)
                + (f" (where the first is below {self.views_below:.0%})" if self.views > 1 and self.views_below else "")
            ),
            "Unknown below": lambda: f"{self.unknown_threshold:g}",
            "Seed": lambda: str(config.get("seed", "")),
            "Trained on": lambda: training.get("device", ""),
        }
        told = {}
        for label, words in rows.items():
            # a value of another kind than this tool writes (a card from elsewhere) leaves its line out
            with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                if text := words():
                    told[label] = str(text)
        return told

    def _target_words(self) -> str:
        """``"at epoch 3"``, ``"not reached in 15 epochs"``: how fast it learnt (empty without a history)."""
        if not any("val_accuracy" in row for row in self.history):
            return ""
        reached = epochs_to_reach(self.history)
        return f"at epoch {reached}" if reached else f"not reached in {counted(len(self.history), 'epoch')}"

    def _epochs_words(self, most: int | None, best: int | None) -> str:
        """``"12 of at most 30 (the best: 9), 41 s"``, from the history."""
        if not self.history:
            return ""
        ran = max(int(row.get("epoch") or 0) for row in self.history)
        seconds = max(float(row.get("seconds") or 0) for row in self.history)  # since training began
        return (
            f"{ran}"
            + (f" of at most {most}" if most else "")
            + (f" (the best: {best})" if best else "")
            + (f", {seconds:.0f} s" if seconds else "")
        )

    def to_json(self, weights_sha256: str, tensors: dict[str, list[int]]) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "backbone": self.backbone,
            "channel_mode": self.channel_mode,
            "pretrained": self.pretrained,
            "classes": [{"space_group": sg, "symbol": space_group_symbol(sg)} for sg in self.classes],
            "preprocess": self.preprocess.to_dict(),
            "input_size": self.input_size,
            "unknown_threshold": self.unknown_threshold,
            "views": self.views,
            "views_below": self.views_below,
            "training": self.training,
            "metrics": self.metrics,
            "history": self.history,
            "created": self.created,
            "ebsd_core_version": self.version,
            "weights_sha256": weights_sha256,
            "tensors": tensors,
        }

    @classmethod
    def from_json(cls, data: dict, source: Path) -> ModelCard:
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ModelError(f"not an {FORMAT_NAME} description", source)
        version = data.get("format_version", 0)
        if not isinstance(version, int) or version < 1:
            raise ModelError(f"format_version {version!r} is not a version number", source)
        if version > FORMAT_VERSION:
            raise ModelError(f"model format {version} is newer than this tool", source)
        try:
            classes = _field(data, "classes", _space_group_numbers, "a list of classes, each with its space_group")
            threshold = _field(data, "unknown_threshold", float, "a number", DEFAULT_UNKNOWN_THRESHOLD)
            card = cls(
                backbone=_field(data, "backbone", str, "a name"),
                classes=classes,
                preprocess=_field(data, "preprocess", PreprocessConfig.from_dict, RECORD),
                channel_mode=_field(data, "channel_mode", str, "a name", "adapt"),
                pretrained=_field(data, "pretrained", bool, "true or false", True),
                unknown_threshold=threshold,
                views=_field(data, "views", int, "a whole number", 1),
                views_below=_field(data, "views_below", _number_or_none, "a number", None),
                training=_field(data, "training", dict, RECORD, {}),
                metrics=_field(data, "metrics", dict, RECORD, {}),
                history=_field(data, "history", list, "a list of epochs' records", []),
                name=str(data.get("name", "")),
                created=str(data.get("created", "")),
                version=str(data.get("ebsd_core_version", "")),
            )
        except _FieldProblem as problem:
            raise ModelError(f"invalid model description: {problem}", source) from None
        if len(set(classes)) != len(classes) or len(classes) < 2:
            raise ModelError("the class list must hold at least two distinct space groups", source)
        if card.channel_mode not in CHANNEL_MODES:
            raise ModelError(f"unknown channel_mode {card.channel_mode!r}", source)
        if not 0.0 <= threshold <= 1.0:
            raise ModelError(f"unknown_threshold {threshold} is outside [0, 1]", source)
        if not 1 <= card.views <= MAX_VIEWS:
            raise ModelError(f"views {card.views} is outside 1..{MAX_VIEWS}", source)
        if card.views_below is not None and not 0.0 < card.views_below <= 1.0:
            raise ModelError(f"views_below {card.views_below} is outside (0, 1]", source)
        if not 16 <= card.preprocess.size <= 1024:
            raise ModelError(f"input size {card.preprocess.size} is outside 16..1024", source)
        if problem := _records_problem(card):
            raise ModelError(f"invalid model description: {problem}", source)
        return card


#: A history record's numbers, each a number where it is given (the Results page draws them).
HISTORY_NUMBERS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _FieldProblem(Exception):
    """A field of model.json missing or of the wrong kind, in the words the error shows."""


_REQUIRED = object()
RECORD = "a record of names and values"


def _field(data: dict, key: str, convert: Callable, kind: str, default: object = _REQUIRED) -> object:
    """``data[key]`` made what the card holds, or ``default`` where it is absent; a model.json edited by hand or
    written by another program is told which field is missing or holds what (found by fuzzing: "invalid model
    description (TypeError: 'NoneType' object is not iterable)")."""
    if key not in data:
        if default is _REQUIRED:
            raise _FieldProblem(f"'{key}' is missing")
        return default
    try:
        return convert(data[key])
    except (KeyError, TypeError, ValueError):
        shown = json.dumps(data[key])
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise _FieldProblem(f"'{key}' holds {shown}, not {kind}") from None


def _space_group_numbers(classes: list) -> list[int]:
    if not isinstance(classes, list):
        raise TypeError("not a list")
    numbers = [int(c["space_group"]) for c in classes]
    for number in numbers:
        try:
            space_group_symbol(number)
        except PhaseError as exc:
            raise _FieldProblem(f"'classes': {exc.reason}") from None
    return numbers


def _number_or_none(value: object) -> float | None:
    return None if value is None else float(value)


def _records_problem(card: ModelCard) -> str | None:
    """What is wrong with the shape of a card's training record, metrics or history (a model.json edited by hand or
    written by another program), which the dashboard and ``models`` read; None when nothing is."""
    for number, row in enumerate(card.history, 1):
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            return f"history record {number} is not an epoch's record with its epoch number"
        if not all(_is_number(row[key]) for key in HISTORY_NUMBERS if row.get(key) is not None):
            return f"history record {number}: {', '.join(HISTORY_NUMBERS)} must be numbers"
    for key in ("config", "augment", "split", "prior"):
        if not isinstance(card.training.get(key) or {}, dict):
            return f"training {key} must be a record of names and values"
    if not isinstance(card.training.get("materials") or [], list):
        return "training materials must be a list"
    for key in ("test", "holdout"):
        scores = card.metrics.get(key) or {}
        if not isinstance(scores, dict):
            return f"metrics {key} must be a record of names and values"
        if problem := _scores_problem(scores):
            return f"metrics {key}: {problem}"
    return None


def _scores_problem(scores: dict) -> str | None:
    """What in a split's scores the Results page could not draw (:func:`ebsd_core.evaluate.evaluate_predictions`)."""
    if not all(_is_number(scores[key]) for key in ("accuracy", "ece", "patterns") if scores.get(key) is not None):
        return "accuracy, ece and patterns must be numbers"
    matrix, classes = scores.get("confusion_matrix"), scores.get("classes")
    if matrix is not None and not (
        isinstance(matrix, list) and all(isinstance(row, list) and all(map(_is_number, row)) for row in matrix)
    ):
        return "confusion_matrix must be rows of numbers"
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        return "classes must be a list of space-group symbols"
    for table in ("per_class", "per_material", "same_lattice_confusion"):
        if not isinstance(scores.get(table) or {}, dict):
            return f"{table} must be a record of names and values"
    return None


def validate_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise StoreError(
            f"model name {name!r} is not allowed: use letters, digits, '_', '-', '.' (up to 80, not starting with '.')"
        )
    return name


def resolve_model_dir(path_or_name: str | Path, store: Path | None = None) -> Path:
    """``models/NAME`` or a bare ``NAME``: a model folder of that name where the command runs, else the store's (a
    folder of that name that holds no model, say of patterns, does not hide the store's model), else that folder."""
    path = Path(path_or_name)
    if len(path.parts) > 1:  # not looked at: a link there that cannot be reached is said so by whoever reads it
        return path
    name, store = str(path_or_name), store or default_store()
    stored = store / name if NAME_PATTERN.match(name) else None  # else no store's name
    with contextlib.suppress(OSError):
        if path.is_dir() and (stored is None or (path / META).is_file() or not (stored / META).is_file()):
            return path
    return store / validate_name(name)


def resolve_save_dir(path_or_name: str | Path, store: Path | None = None) -> Path:
    """Where ``--out`` saves a model: a path (``models/NAME``, ``/abs/NAME``, ``./NAME``) as given, a bare ``NAME`` in
    the store, never a folder of that name where the command runs, as :func:`resolve_model_dir` takes one to read
    (``train --out data`` beside a folder ``data`` of patterns put the model in it)."""
    text = str(path_or_name)
    if "/" in text or os.sep in text:
        return Path(text)
    return (store or default_store()) / validate_name(text)


def check_can_save(path_or_name: str | Path, force: bool = False) -> Path:
    """The folder a model will be saved in (:func:`resolve_save_dir`), checked before it is trained: a job that
    trained for an hour must not fail at its save.

    Raises
    ------
    InputError
        Where the folder cannot be written in (a store mounted read-only, or owned by another account).
    StoreError
        Where a model of that name exists and ``force`` is not given.
    """
    target = resolve_save_dir(path_or_name)
    _check_store_here(target.parent, target)
    check_writable_folder(target.parent, target)
    _check_can_replace(target, force)
    return target


def _check_can_replace(target: Path, force: bool) -> None:
    """Refuse to replace ``target`` without ``force``, or where this account could not remove it (another account's
    model: renamed aside, it stayed there hidden, and the next replacement failed with "Directory not empty")."""
    if not target.exists():
        return
    if not target.is_dir():  # found on review: --force renamed a file aside and left it, and a pipe hung the save
        raise InputError("is a file, not a saved model: save under another name, or move that file away", target)
    if problem := _not_only_a_model(target):  # found on review: --force replaced a folder of patterns, and erased it
        raise InputError(problem, target)
    if not force:
        raise StoreError(_EXISTS.format(target=target))
    if not may_write_in(target):
        raise InputError(
            f"this account may not replace it{owner_note(target)}: the account that saved it can, or save under "
            "another name",
            target,
        )


def _not_only_a_model(folder: Path) -> str | None:
    """Why replacing ``folder`` would erase more than a saved model (a folder without its model.json, or with other
    files beside its own), in words; None where it holds a model's files alone, or cannot be listed (the save then
    says why)."""
    try:  # hidden files (a Mac's .DS_Store, NFS's .nfs... of a file still open) are no one's work
        names = sorted(entry.name for entry in os.scandir(folder) if not entry.name.startswith("."))
    except OSError:
        return None
    if names and META not in names:  # an empty folder loses nothing
        return (
            "is a folder that holds no saved model (no model.json), and replacing it would erase what it holds: "
            "save under another name"
        )
    others = [name for name in names if name not in {META, WEIGHTS}]
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        return (
            f"holds files of its own beside the saved model ({shown}), which replacing it would erase: move them "
            "away, or save under another name"
        )
    return None


def store_write_problem(store: Path | None = None) -> str | None:
    """Why no model can be trained, added or deleted on this server, in a sentence; None where they can.

    A lab may serve a store that the server cannot write to (a read-only checkout, a mount of vetted models): its
    models are used as any store's, and the pages that would save or move one say this instead of failing after the
    work."""
    store = store or default_store()
    if problem := lost_store_problem(store):
        return problem
    try:
        check_writable_folder(store)
    except InputError as exc:
        return (
            f"Models can be used here but not trained, added or deleted: this server {exc.reason}, where its models "
            f"are kept. Whoever runs it can give it write access there, or set {MODEL_STORE_VARIABLE} to a folder it "
            "can write to."
        )
    return None


def _stores_saved_to() -> dict[str, dict]:
    """The working folder's record of the stores this server saved to: ``{folder: {"date": ..., "models": n}}``."""
    try:
        record = json.loads((fewshot_home() / STORES_SAVED_TO).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _visible_entries(store: Path) -> list[Path]:
    return [entry for entry in store.iterdir() if not is_hidden(entry.name)]


def _remember_store(store: Path) -> None:
    """Mark ``store`` and record it in the working folder, after a save there, where it is the server's store
    (:func:`default_store`): a folder a script trains into (``--out runs/NAME``) may well be removed and made again.
    Neither is needed for the save, so neither can fail it."""
    if os.path.abspath(store) != os.path.abspath(default_store()):
        return
    with contextlib.suppress(OSError):
        (store / STORE_MARK).touch()
        record = _stores_saved_to()
        record[os.path.abspath(store)] = {
            "date": _dt.date.today().isoformat(),
            "models": sum(entry.is_dir() for entry in _visible_entries(store)),
        }
        with atomic_path(fewshot_home() / STORES_SAVED_TO) as tmp:
            tmp.write_text(json.dumps(record, indent=1))


def lost_store_problem(store: Path | None = None) -> str | None:
    """Why ``store`` seems not to be the store this server saved to, in a sentence; None where it is, or is new.

    A lab keeps its models on a share: after a restart with the share not mounted, the store was an empty folder
    (or none), every model seemed gone, and the next model saved went to the local disk, to be hidden under the
    share once it is back. Such a store has no :data:`STORE_MARK` and no models, where the working folder records
    models saved there."""
    store = store or default_store()
    seen = _stores_saved_to().get(os.path.abspath(store))
    if not isinstance(seen, dict):
        return None
    try:
        if (store / STORE_MARK).exists() or (store.is_dir() and _visible_entries(store)):
            return None
    except OSError:  # what keeps it from being read is said where it is read
        return None
    now = "is empty" if store.is_dir() else "does not exist"
    models = seen.get("models")
    models = models if isinstance(models, int) else 0  # the record is ours, but one edited by hand must not end pages
    return (
        f"The model store {store} {now}, where a model was last saved on {seen.get('date', '?')} "
        f"({counted(models, 'model')} there then). If it is on a share, the share may not be "
        "mounted: mount it, as a model saved meanwhile would be hidden under it. To start a new store there, create "
        f"the empty file {store / STORE_MARK}."
    )


def _check_store_here(store: Path, target: Path) -> None:
    """Refuse to save in a store that :func:`lost_store_problem` finds lost."""
    if problem := lost_store_problem(store):
        raise InputError(problem[0].lower() + problem[1:], target)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _name_lock(target: Path) -> Iterator[None]:
    _check_store_here(target.parent, target)
    check_writable_folder(target.parent, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    try:
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)  # to write: NFS locks a file only so
    except PermissionError:  # in a store shared by a lab's accounts, another's: a local lock needs only reading
        handle = _open_to_read(lock, target)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # which lets go of the lock


def _open_to_read(lock: Path, target: Path) -> int:
    try:
        return os.open(lock, os.O_RDONLY)
    except PermissionError:
        raise InputError(
            f"this account may not open {lock}{owner_note(lock)}, which keeps two saves of one name apart: its owner "
            "can remove it, or let others read it",
            target,
        ) from None


def save_model(model: nn.Module, card: ModelCard, path: str | Path, force: bool = False) -> Path:
    """Save atomically; refuse to replace an existing model unless ``force``."""
    target = Path(path)
    validate_name(target.name)
    card.name = target.name
    card.created = card.created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}

    def write(folder: Path) -> None:
        save_file(state, str(folder / WEIGHTS))
        meta = card.to_json(file_sha256(folder / WEIGHTS), {k: list(v.shape) for k, v in state.items()})
        (folder / META).write_text(json.dumps(meta, indent=2))

    return _install(target, force, write)


def _install(target: Path, force: bool, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a staging folder, then rename it onto ``target``: the model appears complete or not at
    all, and an existing one is replaced only with ``force``."""
    with _name_lock(target):
        _check_can_replace(target, force)
        # names of this save's own: a leftover that this account could not remove (another's) never stands in the
        # way of the next save. The new model's ends as a killed save's leftovers, which the housekeeping removes;
        # the replaced one's does not: the housekeeping never erases a model
        token = secrets.token_hex(4)
        staging = target.parent / f".{target.name}.{token}.new.part"
        with atomic_dir(staging) as tmp:
            write(tmp)
        old = target.parent / f".{target.name}.{token}.old"
        try:
            if target.exists():
                os.rename(target, old)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # there only where a rename failed
        shutil.rmtree(old, ignore_errors=True)
        _remember_store(target.parent)
    return target


def _model_members(archive: zipfile.ZipFile, source: Path) -> dict[str, zipfile.ZipInfo]:
    """The zip's model.json and weights.safetensors, at its top or in its one folder (as Results downloads them)."""
    found: dict[str, list[zipfile.ZipInfo]] = {META: [], WEIGHTS: []}
    for member in archive.infolist():
        parts = member.filename.replace("\\", "/").strip("/").split("/")
        if parts[-1] in found and len(parts) <= 2:
            found[parts[-1]].append(member)
    for file, members in found.items():
        if len(members) != 1:
            problem = "no" if not members else f"{len(members)} copies of"
            raise ModelError(f"{problem} {file} in the zip: a model zip holds {META} and {WEIGHTS}", source)
    if found[WEIGHTS][0].file_size > MAX_WEIGHTS_BYTES or found[META][0].file_size > MAX_META_BYTES:
        raise ModelError(f"the model in the zip is larger than allowed ({MAX_WEIGHTS_BYTES / 1e9:.0f} GB)", source)
    return {file: members[0] for file, members in found.items()}


def _copy_model_files(source: Path, folder: Path) -> None:
    """The two files of a model from a zip or a model folder at ``source`` into ``folder``."""
    if source.is_dir():
        for file in (META, WEIGHTS):
            if not (source / file).is_file():
                raise ModelError(f"{file} is missing: not a saved model", source)
            shutil.copyfile(source / file, folder / file)
        return
    if not zipfile.is_zipfile(source):
        raise ModelError(
            f"not a model: give a zip of {META} and {WEIGHTS} (as Results downloads it) or a model folder", source
        )
    try:
        with zipfile.ZipFile(source) as archive:
            for file, member in _model_members(archive, source).items():
                with archive.open(member) as src, open(folder / file, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (*ZIP_ERRORS, RuntimeError) as exc:  # RuntimeError: an encrypted member
        raise ModelError(f"not a readable zip file ({exc.__class__.__name__}: {exc})", source) from None


def import_model(source: str | Path, name: str | None = None, store: Path | None = None, force: bool = False) -> Path:
    """Add a model trained elsewhere to the store, checked first as :func:`load_model` checks it.

    Its training dataset's path is kept as ``training.dataset_path_where_trained``: it names a file of the
    machine it was trained on, which here could be any other file (or another session's dataset).

    Parameters
    ----------
    source
        A zip of ``weights.safetensors`` and ``model.json`` (the Results page's model download) or a model folder.
    name
        Its name in the store; by default the name it was saved under.
    store
        The model store (default: :func:`default_store`).
    force
        Replace a model of that name; without it, an existing model is never replaced.

    Raises
    ------
    ModelError
        Naming ``source`` and the problem: not a model, tampered with, or weights that do not fit its backbone.
    StoreError
        When a model of that name exists and ``force`` is not given.
    """
    source = Path(source)
    if not source.exists():
        raise ModelError("no such file or folder", source)
    if name is not None:
        validate_name(name)
    store = store or default_store()
    _check_store_here(store, store)
    check_writable_folder(store)
    store.mkdir(parents=True, exist_ok=True)
    # named like the partial saves that housekeeping clears when a killed process leaves one behind
    with tempfile.TemporaryDirectory(prefix=".import-", suffix=".part", dir=store) as staged:
        staged = Path(staged)
        _copy_model_files(source, staged)
        try:
            card = load_model(staged)[1]
        except ModelError as exc:
            raise ModelError(exc.reason, source) from None
        meta = json.loads((staged / META).read_text())
        meta["name"] = validate_name(name or card.name or source.stem)
        training = meta.get("training") or {}
        if "dataset_path" in training:  # a path of the machine it was trained on: here it would read another file
            training["dataset_path_where_trained"] = training.pop("dataset_path")

        def write(folder: Path) -> None:
            os.rename(staged / WEIGHTS, folder / WEIGHTS)
            (folder / META).write_text(json.dumps(meta, indent=2))

        return _install(store / meta["name"], force, write)


def delete_problem(name: str, store: Path | None = None) -> str | None:
    """Why this account may not delete model ``name`` (:func:`delete_model`), in a sentence; None where it may.

    Found as a lab's server account in a store it was given without its ``.deleted/`` folder (root's, from before):
    deleting even a model of its own was said to need "the account that saved it"."""
    store = store or default_store()
    deleted = store / DELETED
    if deleted.is_dir() and not may_write_in(deleted):
        return (
            f"this account may not write in {deleted}{owner_note(deleted)}, where deleted models go: whoever runs the "
            f"server can give it that folder (chown -R {account_name()} {deleted})"
        )
    target = store / validate_name(name)
    # the system moves a folder to another only for its writers; a link, for anyone who may write beside it
    if not target.is_symlink() and target.is_dir() and not may_write_in(target):
        return (
            f"this account may not move it{owner_note(target)}: the account that saved it can, or whoever runs the "
            "server"
        )
    return None


def delete_model(name: str, store: Path | None = None) -> Path:
    """Move model ``name`` out of the store's listing, to ``.deleted/NAME-TIME`` in the store (never erased here:
    whoever runs the server can move it back). Returns where it went."""
    store = store or default_store()
    target = store / validate_name(name)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    with _name_lock(target):
        try:
            if not target.is_symlink() and not target.exists():
                raise StoreError(f"{target}: {_no_such_model_words(target)}")
            if not target.is_symlink() and not (target / META).is_file():  # a link: moved aside, reached or not
                raise StoreError(f"{target} is not a saved model")
            if problem := delete_problem(name, store):
                raise InputError(problem, target)
            (store / DELETED).mkdir(exist_ok=True)
            moved = store / DELETED / f"{name}-{stamp}"
            os.rename(target, moved)
        except PermissionError:  # a folder of another account's (the system renames a folder only for its writers)
            raise InputError(
                "this account may not move it (permission denied): the account that saved it can, or whoever runs "
                "the server",
                target,
            ) from None
    return moved


def model_as_seen(name: str, weights_modified: float, store: Path | None = None) -> Path:
    """The folder of model ``name`` whose weights were written at ``weights_modified`` (as a page showed it): in the
    store, or, deleted or replaced since, its copy in the store's ``.deleted/``. So a download clicked on a page drawn
    before still gives the model the page showed, not an error, nor another model saved under its name since."""
    store = store or default_store()
    moved = re.compile(re.escape(validate_name(name)) + r"-\d{8}T\d{12}")  # delete_model's NAME-TIME
    deleted = sorted((f for f in _folders(store / DELETED) if moved.fullmatch(f.name)), reverse=True)
    for folder in (store / name, *deleted):
        with contextlib.suppress(OSError):
            if (folder / WEIGHTS).stat().st_mtime == weights_modified:
                return folder
    raise StoreError(f"model {name} as shown is no longer in the store (deleted, or saved again since)", store)


def _folders(parent: Path) -> list[Path]:
    """The folders in ``parent``; none when it does not exist."""
    try:
        return [entry for entry in parent.iterdir() if entry.is_dir()]
    except OSError:
        return []


def model_zip(folder: str | Path, name: str | None = None) -> bytes:
    """A saved model as a zip of its folder's ``model.json`` and ``weights.safetensors`` (what Results downloads and
    :func:`import_model` takes) under ``name`` (the folder's own name when None), with no path of this machine in
    it. The weights are stored, not compressed: they would shrink by a few per cent."""
    folder = Path(folder)
    name = name or folder.name
    for file in (META, WEIGHTS):
        if not (folder / file).is_file():
            raise ModelError(f"{file} is missing: not a saved model", folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/{META}", _shareable_meta(folder / META), zipfile.ZIP_DEFLATED)
        archive.write(folder / WEIGHTS, f"{name}/{WEIGHTS}", zipfile.ZIP_STORED)
    return buffer.getvalue()


def _shareable_meta(path: Path) -> str:
    """``model.json`` as a model leaves this machine: its training dataset named by file name, not by where it lies.

    On a hosted dashboard that path runs through the private folder of the session that trained the model, whose
    id is what grants access to the session; elsewhere the path would name another file anyway (import_model)."""
    meta = json.loads(path.read_text())
    training = meta.get("training")
    if isinstance(training, dict) and isinstance(training.get("dataset_path"), str):
        training["dataset_path"] = Path(training["dataset_path"]).name
    return json.dumps(meta, indent=2)


def export_model(name: str | Path, out: str | Path, store: Path | None = None, force: bool = False) -> Path:
    """Write model ``name`` (a store name or a model folder) to the zip ``out``, checked first as
    :func:`load_model` checks it: a zip of a damaged model would only be refused where it is imported.
    An existing ``out`` is replaced only with ``force``."""
    folder = resolve_model_dir(name, store)
    out = Path(out)
    if out.exists() and not force:
        raise StoreError(f"{out} exists; give another file name or --force")
    load_model(folder)
    data = model_zip(folder)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return out


def read_card(path: str | Path) -> ModelCard:
    folder = resolve_model_dir(path)
    meta_path = folder / META
    if problem := _not_a_model_folder(folder):  # a link to a folder that cannot be reached
        raise ModelError(problem, folder)
    if not folder.exists():
        raise ModelError(_no_such_model_words(folder), folder)
    try:
        if not meta_path.is_file():
            raise ModelError(_not_a_model_words(folder), folder)
        text = meta_path.read_text()
    except PermissionError:
        raise ModelError(UNREADABLE_MODEL, folder) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{META} is not valid JSON ({exc})", folder) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{META} is not valid JSON ({exc})", folder) from None
    return ModelCard.from_json(data, meta_path)


def _no_such_model_words(path: Path) -> str:
    """That no model is at ``path``, and the saved models beside it that its name may mean (a slip of the keyboard,
    another case)."""
    words = (
        "no such saved model: neither a model's folder nor a name in the store (python -m ebsd_core models lists them)"
    )
    held = [folder.name for folder in _folders(path.parent) if (folder / META).is_file()]
    near = [name for name in held if name.lower() == path.name.lower()]
    near = near or difflib.get_close_matches(path.name, held, n=3, cutoff=0.7)
    return f"{words}; perhaps {' or '.join(near)}" if near else words


def _not_a_model_words(path: Path) -> str:
    """Why ``path``, which holds no ``model.json``, is no saved model, and what to give instead: the mistakes made
    with a model's path (a file of it, its zip, the store)."""
    if path.is_file() and path.name in (META, WEIGHTS):
        return f"is a file of a saved model: give its folder ({path.parent})"
    if path.is_file() and path.suffix.lower() == ".zip":
        return (
            "is a file, not a saved model's folder: a model's zip (the Results page's download) is added to the "
            f"store first (python -m ebsd_core import-model {path}), then given by its name"
        )
    if held := sorted(folder.name for folder in _folders(path) if (folder / META).is_file()):
        return (
            f"no {META} here: it holds saved models ({first_names(held)}), each a model of its own: give one of "
            f"them ({path / held[0]})"
        )
    return f"no {META} here: not a saved model"


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild a saved model; refuses tampered or mismatched files with the reason."""
    folder = resolve_model_dir(path)
    card = read_card(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ModelError(f"{WEIGHTS} is missing", folder)
    data = json.loads((folder / META).read_text())
    try:  # read once, by Python: safetensors opens UTF-8 paths alone, and a store may lie under a Latin-1 folder
        stored = weights.read_bytes()
    except PermissionError:
        raise ModelError(UNREADABLE_MODEL, weights) from None
    if data.get("weights_sha256") != hashlib.sha256(stored).hexdigest():
        raise ModelError(f"{WEIGHTS} does not match the checksum in {META} (changed or corrupt)", folder)
    try:
        found = _stored_shapes(stored)
    except Exception as exc:
        raise ModelError(f"cannot read {WEIGHTS} ({exc.__class__.__name__}: {exc})", folder) from None
    # On the meta device: a card may name any timm architecture (a billion parameters cost 4 GB to build), which
    # must fit the weights before it takes memory; the weights read then become its own, not copied into random ones
    # (a 96 MiB model took 369 MiB more at its peak, 2026-12-07).
    with torch.device("meta"):
        model = _build(card)
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    if expected != found:
        missing_or_extra = sorted(set(expected) ^ set(found))
        mismatched = [k for k in expected if k in found and expected[k] != found[k]]
        raise ModelError(f"weights do not fit backbone {card.backbone}: {(missing_or_extra or mismatched)[:3]}", folder)
    try:
        state = load(stored)
    except Exception as exc:
        raise ModelError(f"cannot read {WEIGHTS} ({exc.__class__.__name__}: {exc})", folder) from None
    del stored
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):  # a buffer no state dict holds
        model = _build(card)
        model.load_state_dict(state, strict=True)
    del state  # its tensors are the model's, or copied into them: converted below, not held twice
    return model.to(device, memory_format=torch.channels_last).eval(), card


def _stored_shapes(stored: bytes) -> dict[str, list[int]]:
    """The shape of each tensor in a safetensors file's bytes, from its header alone (its length as a little-endian
    u64, then that JSON), to check them before the model is built."""
    (length,) = struct.unpack_from("<Q", stored)
    header = json.loads(stored[8 : 8 + length])
    return {name: list(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}


def _build(card: ModelCard) -> nn.Module:
    return create_model(card.backbone, len(card.classes), pretrained=False, channel_mode=card.channel_mode)


def _not_a_model_folder(entry: Path) -> str | None:
    """None for a folder of the store (a model, or a broken one); for a link to a folder that cannot be reached, why
    (a lab links its vetted models in from a share: one that is not mounted, or that this account may not enter, had
    its models vanish from every list, or every page that lists them end in "Permission denied"); "" for anything
    else (a file, such as a README)."""
    try:
        if entry.is_dir():
            return None
    except PermissionError:
        return (
            f"a link to {os.readlink(entry)}, which this account may not reach (permission denied): whoever keeps it "
            "there can let others read it and the folders above it"
        )
    if link := broken_link(entry):
        return f"{link} (a share not mounted, or a model moved since)"
    return ""


def list_models(store: Path | None = None) -> list[dict]:
    """Saved models in the store with a short summary; broken ones are listed with their problem."""
    store = store or default_store()
    rows = []
    if not store.is_dir():
        return rows
    for folder in sorted(p for p in store.iterdir() if not p.name.startswith(".")):
        if (problem := _not_a_model_folder(folder)) is not None:
            if problem:
                rows.append({"name": folder.name, "path": str(folder), "error": f"{folder}: {problem}"})
            continue
        if printable_path(folder.name) != folder.name:  # a page would fail on it: the browser takes text alone
            error = (
                f"its name is {NOT_UTF8}: rename it to use it here (convmv does so); the command line uses it as it is"
            )
            rows.append({"name": printable_path(folder.name), "path": str(folder), "error": error})
            continue
        try:
            card = read_card(folder)
            rows.append(
                {
                    "name": folder.name,
                    "path": str(folder),
                    "backbone": card.backbone,
                    "channel_mode": card.channel_mode,
                    "pretrained": card.pretrained,
                    "classes": card.class_symbols,
                    "accuracy": card.metrics.get("accuracy"),
                    "holdout_accuracy": (card.metrics.get("holdout") or {}).get("accuracy"),
                    "shots": (card.training.get("config") or {}).get("shots"),
                    "input_size": card.input_size,
                    "epochs_run": len(card.history),
                    "epochs_to_95": epochs_to_reach(card.history),
                    "created": card.created,
                    "prior": card.is_prior,
                    "kind": card.kind,
                    "simulated_materials": card.simulated_materials,
                }
            )
        except ModelError as exc:
            rows.append({"name": folder.name, "path": str(folder), "error": str(exc)})
    return rows
