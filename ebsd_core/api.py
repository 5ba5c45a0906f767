"""The engine from Python, as a notebook uses it: a saved model, its readings of patterns, a phase map, explanations;
training one.

    >>> from ebsd_core.api import load_classifier
    >>> model = load_classifier("ni-ni3al")          # a model of the store, or a model folder's path
    >>> table = model.classify(signal)               # a kikuchipy EBSD signal, a numpy or dask array, or a file
    >>> table.attrs["notes"]                         # what to know before trusting the readings
    >>> phase_map = model.phase_map("scan.h5")       # with the grain clean-up, as the Phase map page
    >>> phase_map.to_crystal_map()                   # an orix CrystalMap
    >>> model.explain(signal, index=(2, 1))          # SHAP of one pattern (gradcam, activations; filters())
    >>> export_map(phase_map, "phases.ang")          # .ang, .ctf, .h5 (orix), .csv or .png
    >>> model = train("data.h5", "my-model", shots=20, epochs=30)  # as the train command, into the store

Every reading goes through the same code as ``predict`` and ``phasemap`` (and the dashboard): the model's own
preprocessing, test-time views and unknown threshold, blank patterns read as unknown, the same notes on how far a
reading can be trusted. Nothing is written unless asked, and an existing .ang, .ctf or .h5 (the microscope's own
indexing of a scan, perhaps) is replaced only with ``force=True``, as on the command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ebsd_core.errors import EbsdError, InputError

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from ebsd_core.explain_report import Explanation
    from ebsd_core.io.readers import PatternSource
    from ebsd_core.phasemap import PhaseMap
    from ebsd_core.store import ModelCard

log = logging.getLogger(__name__)

#: Where patterns given as an array are said to come from, in notes and errors.
ARRAY_NAME = "<array>"


@dataclass
class Classifier:
    """A saved model ready to read patterns: its network (on ``device``) and its card (``model.json``)."""

    network: nn.Module
    card: ModelCard
    folder: Path | None = None  # where it was loaded from: its name in the store is this folder's

    @property
    def classes(self) -> list[str]:
        """The space-group symbols it tells apart, in the order of its probability columns."""
        return self.card.class_symbols

    @property
    def name(self) -> str:
        """Its name in the store (its folder's), as the dashboard lists it; else the name it was trained under."""
        return self.folder.name if self.folder is not None else self.card.name or "unnamed"

    @property
    def device(self) -> str:
        from ebsd_core.inference import model_device

        return str(model_device(self.network))

    def __repr__(self) -> str:
        from ebsd_core.caveats import own_test_words

        tested = own_test_words(self.card)
        return (
            f"Classifier({self.name!r}: {self.card.backbone}, {', '.join(self.classes)}; "
            f"{self.card.input_size} px input; {f'read {tested}; ' if tested else ''}on {self.device})"
        )

    def classify(
        self,
        patterns: object,
        static_background: np.ndarray | None = None,
        views: int | None = None,
        unknown_threshold: float | None = None,
        batch_size: int | None = None,
    ) -> pd.DataFrame:
        """Each pattern's space group, as ``predict`` reads it.

        Parameters
        ----------
        patterns
            A kikuchipy ``EBSD`` signal (its map shape, and its static background unless its patterns have had it
            removed already, :func:`~ebsd_core.io.readers.signal_background`), an array of patterns
            (``(rows, cols)``, ``(N, rows, cols)`` or ``(map_rows, map_cols, rows, cols)``, numpy or dask), a path to
            any file or folder the command line reads, or a :class:`~ebsd_core.io.readers.PatternSource`.
        static_background
            Subtracted from every pattern before the dynamic background, where the patterns carry none.
        views, unknown_threshold
            Override the model's own test-time views and unknown threshold.
        batch_size
            Patterns per batch (default: 256 on the CPU, more on a GPU); memory is bounded by it.

        Returns
        -------
        pandas.DataFrame
            One row per pattern, indexed by its place in ``patterns`` (row-major on a map): ``row`` and ``column``
            on a 2D map, ``file`` for images, then ``prediction`` (a space-group symbol or ``unknown``),
            ``confidence`` and one ``p_<symbol>`` column per class. ``attrs["notes"]`` lists what to know before
            trusting them (how the patterns were read, a pattern size the model was not trained on, blank patterns, a
            model weak on its own test patterns, ...), as ``predict`` warns of them.
        """
        import pandas as pd

        from ebsd_core.caveats import blank_pattern_note, reading_notes
        from ebsd_core.inference import blank_points, predict_source

        source = as_pattern_source(patterns, static_background)
        card = self._card_with(views, unknown_threshold)
        notes = reading_notes(source, card)
        prediction = predict_source(self.network, card, source, batch_size=batch_size)
        notes += blank_pattern_note(blank_points(prediction.quality), source.imageless, source.unread)
        for note in notes:  # said where it runs too, as a map's notes are (ebsd_core.phasemap)
            log.warning("%s: %s", source.path, note)
        notes = source.warnings + notes  # how it was read, said when it was opened
        columns: dict[str, object] = {}
        if len(source.nav_shape or ()) == 2 and not source.hexagonal_grid:
            columns["row"], columns["column"] = np.divmod(np.arange(len(source)), source.nav_shape[1])
        if source.named_images:
            columns["file"] = [source.file_name(i) or "" for i in range(len(source))]
        columns |= {"prediction": prediction.labels, "confidence": prediction.confidence}
        columns |= {f"p_{symbol}": prediction.probabilities[:, i] for i, symbol in enumerate(self.classes)}
        table = pd.DataFrame(columns, index=pd.RangeIndex(len(source), name="index"))
        table.attrs["notes"] = notes
        table.attrs["source"] = source.path
        return table

    def phase_map(
        self,
        scan: object,
        orientations: str | Path | None = None,
        nav_shape: tuple[int, int] | None = None,
        cleanup: bool = True,
        views: int | None = None,
        unknown_threshold: float | None = None,
        batch_size: int | None = None,
        client: object | None = None,
    ) -> PhaseMap:
        """The phase map of a scan on a square grid, as ``phasemap`` makes it.

        Parameters
        ----------
        scan
            As ``patterns`` of :meth:`classify`; its map shape from the signal, array or file, else ``nav_shape``.
        orientations
            The scan's indexing file (.ang, .ctf, .h5oina, OIM .h5), points in the scan's order: its orientations go
            into the map's exports, and its map gives the shape of a scan that does not say it.
        nav_shape
            (rows, columns) of a scan whose file does not give them (images numbered in scan order).
        cleanup
            The grain clean-up (on by default, as on the Phase map page; ``phasemap --cleanup none`` is False).
        views, unknown_threshold, batch_size
            As in :meth:`classify` (on a cluster, ``batch_size`` is the patterns of each task, by default 512).
        client
            A dask.distributed ``Client``: the map is made on its workers, as ``phasemap --scheduler`` makes it. Each
            worker loads the saved model from its folder and reads the scan from its file (a path, which every
            worker must see); the grain clean-up runs here.

        Returns
        -------
        ebsd_core.phasemap.PhaseMap
            ``fractions()``, ``summary()`` (its ``notes`` too), ``to_crystal_map()`` (orix), and ``grid(values)`` to
            draw any per-point array; :func:`export_map` writes it.
        """
        from ebsd_core.phasemap import attach_orientations, map_scan

        if client is not None:
            phase_map = self._map_on(
                client, scan, nav_shape, batch_size, views=views, cleanup=cleanup, orientations=orientations
            )
            return dataclasses.replace(phase_map, threshold=self._card_with(None, unknown_threshold).unknown_threshold)
        source = as_pattern_source(scan)
        if orientations is not None:
            source = attach_orientations(source, orientations, nav_shape)
        card = self._card_with(None, unknown_threshold)
        return map_scan(self.network, card, source, nav_shape, batch_size, cleanup=cleanup, views=views)

    def _map_on(
        self, client: object, scan: object, nav_shape: tuple[int, int] | None, batch_size: int | None, **options: object
    ) -> PhaseMap:
        """:meth:`phase_map` on a dask cluster's workers (:func:`~ebsd_core.phasemap.map_scan_distributed`), each on
        its own GPU where it has one, at the model's saved threshold."""
        from ebsd_core.phasemap import CLUSTER_TASK_PATTERNS, map_scan_distributed

        if not isinstance(scan, str | Path):
            raise InputError(
                f"a cluster's workers read the scan from its file: give its path, not a {type(scan).__name__}",
                ARRAY_NAME,
            )
        if self.folder is None:
            raise EbsdError("a cluster's workers load the model from its folder: load it with load_classifier")
        chunk = batch_size or CLUSTER_TASK_PATTERNS
        return map_scan_distributed(self.folder, scan, client, nav_shape, chunk, "auto", **options)

    def evaluate(self, data: object, space_group: int | str | None = None, split: str = "all") -> dict:
        """The model's scores on labelled patterns, as ``evaluate`` gives them.

        Parameters
        ----------
        data
            A labelled dataset (a file ``simulate`` or ``dataset`` wrote, a folder or zip of class folders); or, with
            ``space_group``, patterns of that one phase as :meth:`classify` takes them (a reference sample's scan).
        space_group
            The phase every pattern of ``data`` is of: a symbol, a number or a catalogue material (``"Fm-3m"``,
            ``225``, ``"ni"``).
        split
            ``all``, or one of a dataset's splits (``test``, ``holdout``, ...). Of the model's own training file, the
            patterns it was trained and validated on are left out either way.

        Returns
        -------
        dict
            Accuracy, per-class precision, recall and F1, the confusion matrix, expected calibration error, the
            same-lattice confusions, the first misread patterns, and ``notes`` on what the scores rest on.
        """
        from ebsd_core.io.readers import open_patterns
        from ebsd_core.phases import space_group_of_label
        from ebsd_core.workflows import score_source

        if space_group is not None:  # a reference sample: patterns of one known phase
            group = space_group_of_label(str(space_group))
            source = as_pattern_source(data)
            if source.labelled:
                raise InputError("holds labels of its own: score it without space_group=", source.path)
            source.labels, source.classes = np.zeros(len(source), dtype=int), [group]
        else:
            source = open_patterns(data, labelled=True) if isinstance(data, str | Path) else as_pattern_source(data)
            if not source.labelled:
                raise InputError("has no labels: give the phase its patterns are all of (space_group=...)", source.path)
        metrics, notes = score_source(self.network, self.card, source, split=split)
        for note in notes:
            log.warning("%s: %s", source.path, note)
        return metrics | {"notes": notes}

    def explain(
        self,
        patterns: object,
        index: int | tuple[int, int] | str = 0,
        method: str = "shap",
        target: int | str | None = None,
        layer: str | None = None,
        shap_method: str | None = None,
    ) -> Explanation:
        """Why the model reads one pattern as it does, as ``explain`` and the Explain page show it.

        Parameters
        ----------
        patterns
            As in :meth:`classify`.
        index
            The pattern's index, its (row, column) on a map, or its image's file name in a folder.
        method
            ``shap`` (Shapley values of every pixel for every class), ``gradcam`` (where the evidence for ``target``
            lies) or ``activations`` (what a layer responds to; ``layer``, default a middle one).
        target
            The class to explain (default: the one it reads), by symbol or space-group number.
        shap_method
            ``deep`` (DeepLIFT, the default) or ``gradient``.

        Returns
        -------
        ebsd_core.explain_report.Explanation
            Its ``figures`` (PNG bytes by name, with ``captions``), ``numbers`` (the reading, its probabilities, the
            share of evidence on Kikuchi bands where the orientation is known) and ``notes``. A notebook shows it as
            it is; ``save(folder)`` writes its figures.
        """
        from ebsd_core.explain_report import explain_in_source

        source = as_pattern_source(patterns)
        explanation = explain_in_source(self.network, self.card, source, index, method, target, layer, shap_method)
        for note in explanation.notes:
            log.warning("%s: %s", source.path, note)
        return explanation

    def filters(self, compare: str | Path | None = None) -> Explanation:
        """The first layer's filters after training, beside those it started from (ImageNet's, or a prior's) and the
        ones training changed most; ``compare``: another saved model's too (one trained from scratch, say)."""
        from ebsd_core.explain_report import explain_filters

        return explain_filters(self.network, self.card, None if compare is None else str(compare))

    def _card_with(self, views: int | None, unknown_threshold: float | None) -> ModelCard:
        """The card with the overrides given (the loaded one is left as it was, for the next call)."""
        changes = {"views": views, "unknown_threshold": unknown_threshold}
        return dataclasses.replace(self.card, **{k: v for k, v in changes.items() if v is not None})


def load_classifier(model: str | Path, device: str = "auto") -> Classifier:
    """A saved model: a bare name is one of the store the dashboard lists (the project's ``models/`` or
    ``EBSD_MODEL_STORE``), a path its folder (or a folder of that name here that holds one, as ``--model`` takes it).
    ``device``: ``auto`` (CUDA, then Apple MPS, then the CPU), or ``cpu``, ``cuda``, ``cuda:1``, ``mps``. Only
    safetensors and JSON are read: nothing is unpickled."""
    from ebsd_core.backbones import select_device
    from ebsd_core.store import load_model, resolve_model_dir
    from ebsd_core.threads import fit_torch_threads

    fit_torch_threads()  # in a container or batch job capped below its cores, no more threads than it may run
    folder = resolve_model_dir(model)
    network, card = load_model(folder, device=select_device(device))
    return Classifier(network, card, folder)


def stored_models() -> pd.DataFrame:
    """The models of the store the dashboard lists (the project's ``models/`` or ``EBSD_MODEL_STORE``), one row each,
    indexed by name, as ``models list`` gives them (a broken one with its ``error``)."""
    import pandas as pd

    from ebsd_core.store import list_models

    rows = list_models()
    return pd.DataFrame(rows).set_index("name") if rows else pd.DataFrame(index=pd.Index([], name="name"))


def train(
    data: str | Path,
    out: str | Path,
    shots: int = 20,
    epochs: int = 30,
    backbone: str = "efficientnet_lite0",
    scratch: bool = False,
    weights: str | Path | None = None,
    seed: int = 0,
    device: str = "auto",
    force: bool = False,
    quiet: bool = False,
    **settings: object,
) -> Classifier:
    """Fine-tune a model on a labelled dataset and save it, as ``train`` does; returns it, loaded.

    Parameters
    ----------
    data
        A labelled dataset file (``simulate``, ``dataset``, the Data page).
    out
        A bare name saves into the store the dashboard lists, a path (``./NAME``, ``models/NAME``) there. A saved model
        of that name is replaced only with ``force``; a folder that holds anything else, never.
    shots, epochs, backbone, seed
        Patterns per class to train on, epochs at most (early stopping may end sooner), the registry's network, the
        seed of the sample and the training.
    scratch, weights
        Random initial weights instead of ImageNet's; or a saved model (an EBSD prior) to start from.
    quiet
        No progress lines (each epoch's losses and accuracies, on stderr).
    settings
        Any other field of :class:`ebsd_core.train.TrainConfig` (``input_size``, ``batch_size``, ``lr``,
        ``patience``, ``views``, ``augment_config``, ...), as ``train``'s options set them.
    """
    from ebsd_core.cli import print_epoch
    from ebsd_core.preprocess import input_size_for
    from ebsd_core.threads import fit_torch_threads
    from ebsd_core.train import TrainConfig
    from ebsd_core.workflows import train_dataset_file

    fit_torch_threads()
    starts = {"weights": weights} | {k: settings.get(k) for k in ("frozen_warmup_epochs", "rehearsal_per_class")}
    if scratch and (given := [name for name, value in starts.items() if value]):
        raise InputError(f"scratch=True starts from random weights and cannot take {given[0]}=: leave out one of them")
    weights_file = None if weights is None else str(weights)
    fixed = dict(backbone=backbone, pretrained=not scratch, weights_file=weights_file, shots=shots, epochs=epochs)

    def config_for(pattern_shape: tuple[int, int]) -> TrainConfig:
        given = {"input_size": input_size_for(pattern_shape)} | settings  # as train's default --input-size
        return TrainConfig(**fixed, seed=seed, device=device, **given)

    summary = train_dataset_file(data, out, config_for, force, None if quiet else print_epoch)
    return load_classifier(summary["model"], device)


def as_pattern_source(patterns: object, static_background: np.ndarray | None = None) -> PatternSource:
    """The :class:`~ebsd_core.io.readers.PatternSource` of what :meth:`Classifier.classify` takes.

    Raises
    ------
    InputError
        An array of another number of dimensions, or empty; a master pattern; a background of another shape.
    TypeError
        Something that holds no patterns.
    """
    from ebsd_core.io.readers import PatternSource, open_patterns

    if isinstance(patterns, PatternSource):
        # a copy: scoring labels it and takes its rows, a run notes its unread images; the caller's stays as it was
        source = dataclasses.replace(patterns, warnings=list(patterns.warnings), unread=dict(patterns.unread))
    elif isinstance(patterns, str | Path):
        source = open_patterns(patterns)
    elif hasattr(patterns, "axes_manager") and hasattr(patterns, "data"):
        source = _signal_source(patterns)
    elif hasattr(patterns, "shape") and hasattr(patterns, "dtype"):
        source = _array_source(patterns, ARRAY_NAME)
    else:
        raise TypeError(
            f"cannot read patterns from a {type(patterns).__name__}: give a kikuchipy EBSD signal, an array of "
            "patterns or a path"
        )
    if static_background is not None:
        background = np.asarray(static_background)
        if background.shape != source.pattern_shape:
            raise InputError(
                f"the static background is {_size(background.shape)} but the patterns are "
                f"{_size(source.pattern_shape)}",
                source.path,
            )
        source = dataclasses.replace(source, static_background=background)
    return source


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape[::-1]) + " px" if len(shape) == 2 else f"of shape {shape}"


def _array_source(data: object, name: str) -> PatternSource:
    """Patterns of an array: one pattern (2D), a line (3D) or a map (4D) of them."""
    from ebsd_core.io.readers import PatternSource

    shape = tuple(int(v) for v in data.shape)
    if len(shape) not in (2, 3, 4):
        raise InputError(
            f"an array of shape {shape} holds no patterns: give (rows, cols), (N, rows, cols) or "
            "(map_rows, map_cols, rows, cols)",
            name,
        )
    if 0 in shape:
        raise InputError(f"the array is empty (shape {shape})", name)
    nav_shape = shape[:-2] or (1,)
    flat = data.reshape((-1, *shape[-2:]))
    return PatternSource(path=name, kind="array", patterns=flat, nav_shape=nav_shape)


def _signal_source(signal: object) -> PatternSource:
    """Patterns of a kikuchipy ``EBSD`` signal (lazy or not), with its static background, its crystal map's
    orientations and its step, as the file it was loaded from would give them."""
    from ebsd_core.io.orientations import from_crystal_map
    from ebsd_core.io.readers import MASTER_PATTERN, signal_background

    if "MasterPattern" in type(signal).__name__:
        raise InputError(MASTER_PATTERN, _signal_name(signal))
    source = _array_source(signal.data, _signal_name(signal))
    source.static_background, source.warnings = signal_background(signal, source.pattern_shape)
    for message in source.warnings:  # as a file's are, when it is opened
        log.warning("%s: %s", source.path, message)
    quaternions = from_crystal_map(getattr(signal, "xmap", None), len(source))
    if quaternions is not None:
        source.quaternions, source.orientations_from = quaternions, "the signal's crystal map"
    nav_axes = signal.axes_manager.navigation_axes
    source.step_um = float(nav_axes[0].scale) if nav_axes else 1.0
    return source


def _signal_name(signal: object) -> str:
    """The file a signal was loaded from (HyperSpy keeps it), else its title, else its kind: what its notes name."""
    with contextlib.suppress(AttributeError, TypeError):
        loaded = signal.tmp_parameters
        return str(Path(loaded.folder) / f"{loaded.filename}.{loaded.extension}")
    with contextlib.suppress(AttributeError):
        if title := str(signal.metadata.General.title):
            return title
    return type(signal).__name__


def export_map(phase_map: PhaseMap, path: str | Path, force: bool = False) -> Path:
    """Write ``phase_map`` as its file's suffix says (.ang, .ctf, orix .h5, .csv, .png), whole or not at all.

    An existing .ang, .ctf or .h5 is replaced only with ``force``: it may be the microscope's own indexing of the scan
    (or the scan itself). A map of a scan with its own .ang (``orientations``) is written as that file with the
    model's phases, every other byte kept.
    """
    from ebsd_core.map_export import INDEXING_SUFFIXES
    from ebsd_core.map_export import export_map as write

    path = Path(path)
    if path.suffix.lower() in INDEXING_SUFFIXES and path.exists() and not force:
        raise EbsdError(f"{path} already exists, and may be the microscope's own indexing of a scan; pass force=True")
    return write(phase_map, path)
