"""End-to-end workflows shared by the CLI and the dashboard."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebsd_core.errors import CancelledError, EbsdError, InputError, PhaseError
from ebsd_core.io.dataset import Dataset, made_by_simulator
from ebsd_core.store import (
    ModelCard,
    check_can_save,
    epochs_to_reach,
    file_sha256,
    list_models,
    read_card,
    save_model,
)
from ebsd_core.train import TrainConfig, TrainProgress, record_metrics, train_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoMapSettings:
    """Settings of the dashboard's phase-map demo (20 shots per phase, sized for a 2-core CPU)."""

    shots: int = 20
    val_per_class: int = 10
    pattern_size: int = 120  # at 60 px / input 64 austenite vs ferrite stayed at chance (0.43); 120/128: 0.62
    input_size: int = 128
    epochs: int = 10


DEMO_MAP = DemoMapSettings()


@dataclass(frozen=True)
class DemoSettings:
    """Settings of the Home page's demo: the six default space groups, 10 shots each."""

    per_class: int = 40
    pattern_size: int = 120  # 60 px reached 0.29 test accuracy in the demo, 120 px 0.71-0.75 (43-79 s on 2 CPU cores)
    input_size: int = 128
    shots: int = 10
    val_per_class: int = 10


DEMO = DemoSettings()
DEMO_MODEL_NAME = re.compile(r"demo-[0-9a-f]{12}")  # demo_train_job's models: "demo-" and the job's id


def latest_demo_model(store: Path | None = None) -> dict | None:
    """The newest model that the Home page's demo saved, in anyone's session (:func:`ebsd_core.store.list_models`'
    row, with ``epochs`` and its simulated ``dataset`` while that file is still there, else None), or None: a class
    can look at one at once while their own demos wait in the queue."""
    rows = [r for r in list_models(store) if "error" not in r and DEMO_MODEL_NAME.fullmatch(r["name"])]
    newest = max(rows, key=lambda r: r["created"], default=None)
    if newest is None:
        return None
    training = read_card(newest["path"]).training
    dataset = training.get("dataset_path")
    simulated = made_by_simulator(training.get("dataset"))  # never a user's recorded patterns
    return {
        **newest,
        "epochs": training.get("config", {}).get("epochs"),
        "dataset": dataset if simulated and dataset and Path(dataset).is_file() else None,
    }


def is_demo_map_model(name: str, phases: tuple[str, ...]) -> bool:
    """Whether the model ``name`` is one a demo map trained for ``phases``: "demo-map-", the phases and the job's id."""
    return re.fullmatch(rf"demo-map-{re.escape('-'.join(phases))}-[0-9a-f]{{12}}", name) is not None


def latest_demo_map_model(phases: tuple[str, ...], store: Path | None = None) -> str | None:
    """The folder of the newest model that a demo map trained for ``phases`` (in anyone's session), or None."""
    rows = [r for r in list_models(store) if "error" not in r and is_demo_map_model(r["name"], phases)]
    newest = max(rows, key=lambda r: r["created"], default=None)
    return None if newest is None else str(newest["path"])


def maps_demo_pair(materials, model_dir: str | None) -> ModelCard | None:
    """The card of ``model_dir`` where a demo map of ``materials`` can map with it: it knows their space groups and
    is not a Home demo model (too briefly trained to map); else None."""
    card = read_card(model_dir) if model_dir and not DEMO_MODEL_NAME.fullmatch(Path(model_dir).name) else None
    return card if card is not None and {m.space_group for m in materials} <= set(card.classes) else None


def demo_map_model(materials, model_dir: str | None = None, store: Path | None = None) -> tuple[str, ModelCard] | None:
    """The saved model a demo map of ``materials`` maps with, and its card: ``model_dir`` where it can
    (:func:`maps_demo_pair`), else the model an earlier demo map trained for them; None where the demo map must train
    one first (:func:`demo_map_job`)."""
    if (card := maps_demo_pair(materials, model_dir)) is not None:
        return model_dir, card
    model_dir = latest_demo_map_model(tuple(m.key for m in materials), store)
    return None if model_dir is None else (model_dir, read_card(model_dir))


def train_evaluate_save(
    dataset: Dataset,
    config: TrainConfig,
    out: str | Path,
    force: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    dataset_path: str | Path | None = None,
    training_notes: dict | None = None,
) -> dict:
    """Train, evaluate on unseen orientations and held-out materials, save to the store.

    ``training_notes`` are added to the card's ``training`` record (e.g. what a prior was trained on).
    """
    target = check_can_save(out, force)
    result = train_model(dataset, config, progress=progress, should_stop=should_stop)
    metrics = record_metrics(result, dataset)
    if dataset_path is not None:
        result.card.training["dataset_path"] = str(Path(dataset_path).resolve())
        result.card.training["dataset_sha256"] = file_sha256(Path(dataset_path))
    result.card.training.update(training_notes or {})
    save_model(result.model, result.card, target, force=force)
    return {
        "model": str(target),
        "seconds": round(result.seconds, 1),
        "best_epoch": result.best_epoch,
        "epochs_to_95": epochs_to_reach(result.history),
        "test_accuracy": metrics["test"].get("accuracy"),
        "holdout_accuracy": metrics.get("holdout", {}).get("accuracy"),
    }


def train_dataset_file(
    data: str | Path,
    out: str | Path,
    config_for: Callable[[tuple[int, int]], TrainConfig],
    force: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
) -> dict:
    """``train``'s run, for the command and the Python API alike: the labelled dataset file ``data`` trained with the
    config ``config_for`` gives for its pattern shape, saved to ``out`` (a bare name into the store) as
    :func:`train_evaluate_save` saves it. Shots the file cannot give are refused, naming it, before any training; a
    run that leaves no pattern to test on is said so."""
    from ebsd_core.fewshot import check_shots
    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.store import resolve_save_dir

    target = resolve_save_dir(out)
    dataset = read_dataset(data)
    config = config_for(tuple(dataset.patterns.shape[1:]))
    check_shots(dataset.labels, dataset.split, dataset.classes, config.shots, data)
    summary = train_evaluate_save(dataset, config, target, force, progress, dataset_path=data)
    if summary["test_accuracy"] is None:
        log.warning(
            "%s: no pattern was left to test on (the shots and the validation patterns took them all), so the "
            "model has no test accuracy: add patterns or choose fewer shots to get one",
            data,
        )
    return summary


def misclassified_test_patterns(model, card, limit: int = 12, scanned: int = 600, dataset_path: str | None = None):
    """Test patterns the model gets wrong among the first ``scanned`` of its test split, at most ``limit``.

    The split is recomputed from the seed and shots recorded on the card, on the dataset it was trained on
    (``dataset_path`` where a copy of it is, else the file the card names).
    Returns ``(patterns, labels, probabilities, materials, indices)`` (``indices``: the patterns' in the dataset), or
    None when that dataset is not here.
    """
    from ebsd_core.inference import predict_patterns
    from ebsd_core.io.dataset import read_dataset, take

    path = dataset_path or card.training.get("dataset_path")
    if not path or not Path(path).exists():
        return None
    dataset = read_dataset(path, lazy=True)
    if dataset.classes != card.classes:
        raise InputError(
            f"its classes ({', '.join(dataset.class_symbols)}) differ from the model's "
            f"({', '.join(card.class_symbols)}): the file has changed since the model was trained on it",
            Path(path).name,
        )
    split = training_split(card, dataset)
    index = np.sort(split.test)[:scanned]
    probabilities = predict_patterns(model, card, take(dataset.patterns, index), dataset.static_background)
    wrong = index[np.flatnonzero(probabilities.argmax(1) != dataset.labels[index])[:limit]]
    probabilities = probabilities[np.isin(index, wrong)]
    return take(dataset.patterns, wrong), dataset.labels[wrong], probabilities, dataset.material[wrong], wrong


def training_split(card, dataset: Dataset):
    """The few-shot split the model was trained with, recomputed from the seed and shots on its card."""
    from ebsd_core.fewshot import few_shot_split

    config = card.training.get("config", {})
    return few_shot_split(dataset, config["shots"], config["seed"], config["val_per_class"])


def learned_patterns(card, data: str | Path) -> np.ndarray | None:
    """Indices of the patterns of ``data`` the model was trained and validated on, when ``data`` is the file it
    was trained on (the same content, or the same path for models saved before their cards held its SHA-256);
    else None. Scoring the model on them would flatter it."""
    from ebsd_core.io.dataset import read_dataset

    training = card.training
    if not Path(data).is_file():
        return None
    recorded = training.get("dataset_sha256")
    if recorded:
        same = file_sha256(Path(data)) == recorded
    else:
        same = bool(training.get("dataset_path")) and Path(data).resolve() == Path(training["dataset_path"])
    if not same or "shots" not in training.get("config", {}):
        return None
    dataset = read_dataset(data, lazy=True)
    if dataset.classes != card.classes:
        return None
    split = training_split(card, dataset)
    return np.sort(np.concatenate([split.train, split.val]))


def score_source(
    model,
    card,
    source,
    split: str = "all",
    batch_size: int | None = None,
    precision: str = "auto",
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict, list[str]]:
    """A saved model's scores on labelled patterns (a :class:`~ebsd_core.io.readers.PatternSource`), and notes on
    what they rest on: the metrics of :func:`~ebsd_core.evaluate.evaluate_predictions`, with
    ``learned_patterns_left_out`` when the source is the model's training file (the patterns it was trained and
    validated on are left out: scored, they flattered it), and blank patterns (dropped frames) left out too.
    ``split``: "all", or one of the source's splits ("train", "val", "test", "holdout")."""
    from ebsd_core.caveats import blank_pattern_note
    from ebsd_core.evaluate import evaluate_predictions
    from ebsd_core.inference import blank_points, predict_source
    from ebsd_core.io.dataset import take

    notes = _scoring_notes(source, card)
    labels = np.array([card.classes.index(source.classes[i]) for i in source.labels])
    keep = np.arange(len(labels))
    if split != "all":
        keep = np.flatnonzero(source.split == split) if source.split is not None else []
        if not len(keep):
            splits = "no splits" if source.split is None else f"splits {sorted(set(source.split))}"
            raise EbsdError(f"{source.path}: has no {split!r} patterns ({splits}); use --split all")
    keep, left_out = _not_learned(card, source.path, keep, notes)
    if len(keep) < len(labels):
        source.patterns = take(source.patterns, keep)  # the kept rows only, also from a file read lazily
    labels, materials = labels[keep], None if source.material is None else source.material[keep]
    prediction = predict_source(
        model, card, source, batch_size=batch_size, progress=progress, should_stop=should_stop, precision=precision
    )
    # blank patterns' answer is a tie, which argmax reads as the first class: right or wrong by the classes' order
    blank = blank_points(prediction.quality)
    notes += [f"{note} and left out of the scores" for note in blank_pattern_note(blank, unread=source.unread)]
    if blank.all():
        raise EbsdError(f"{source.path}: every pattern holds one value everywhere: there is nothing to score")
    materials = None if materials is None else materials[~blank]
    probabilities, labels = prediction.probabilities[~blank], labels[~blank]
    metrics = evaluate_predictions(probabilities, labels, card.classes, materials)
    metrics["misread"] = misread_patterns(source, keep[~blank], probabilities, labels, card.class_symbols)
    return {**metrics, **({"learned_patterns_left_out": left_out} if left_out else {})}, notes


#: The most misread patterns a score lists (the first in the source's order): a list to look through and explain.
MAX_MISREAD_LISTED = 100


def misread_patterns(
    source, scored: np.ndarray, probabilities: np.ndarray, labels: np.ndarray, symbols: list[str]
) -> list[dict]:
    """The first :data:`MAX_MISREAD_LISTED` patterns read as another class than their own, of those ``scored`` (their
    indices in ``source``): each one's index, its row and column in a scan of rows and columns, its image file in a
    folder or zip, its class ("true"), what it was read as ("predicted", as the scores count it) and how sure the
    model was of that."""
    predicted = probabilities.argmax(1)
    grid = source.nav_shape if source.nav_shape is not None and len(source.nav_shape) == 2 else None
    rows = []
    for at in np.flatnonzero(predicted != labels)[:MAX_MISREAD_LISTED]:
        index = int(scored[at])
        row: dict = {"index": index}
        if grid:
            row["row"], row["column"] = (int(n) for n in divmod(index, grid[1]))
        if file := source.file_name(index):
            row["file"] = file
        row |= {
            "true": symbols[labels[at]],
            "predicted": symbols[predicted[at]],
            "confidence": round(float(probabilities[at, predicted[at]]), 4),
        }
        rows.append(row)
    return rows


def _scoring_notes(source, card) -> list[str]:
    """How far scores of ``source`` can be trusted; refuses a source of classes the model does not know."""
    from ebsd_core.caveats import ONE_PHASE_CHECK, SIMULATION_ONLY_CAUTION, source_notes
    from ebsd_core.phases import space_group_symbol

    missing = sorted(set(source.classes) - set(card.classes))
    if missing:

        def named(numbers: list[int]) -> str:
            return ", ".join(f"{space_group_symbol(n)} ({n})" for n in numbers)

        raise EbsdError(
            f"{source.path}: holds patterns of {named(missing)}, which the model does not know (it knows "
            f"{named(card.classes)}): score it on data of its classes"
        )
    notes = []
    for note in source_notes(source, card):  # not how the model scored on its own tests: these scores say
        if note != SIMULATION_ONLY_CAUTION:  # which asks for a check against known phases: this is one
            notes.append(note)
        elif len(np.unique(source.labels)) == 1:  # but one phase alone proves little
            notes.append(ONE_PHASE_CHECK)
    return notes


def _not_learned(card, path: str | None, keep: np.ndarray, notes: list[str]) -> tuple[np.ndarray, int]:
    """``keep`` without the patterns the model was trained and validated on, when ``path`` is its training file
    (scored, they flattered it), and how many were left out (said in ``notes``)."""
    from ebsd_core.wording import counted

    learned = learned_patterns(card, path) if path else None
    if learned is None:
        return keep, 0
    kept = np.setdiff1d(keep, learned)
    if not len(kept):
        raise EbsdError(
            f"{path}: is the file the model was trained on, and it was trained or validated on every pattern scored "
            "here: there is nothing left to score; score it on other data"
        )
    if left_out := len(keep) - len(kept):
        notes.append(
            f"the model was trained on this file; the {counted(left_out, 'pattern')} it was trained and validated on "
            f"are left out, so the scores are of the {counted(len(kept), 'pattern')} it has not seen"
        )
    return kept, left_out


def one_phase_source(path: str | Path, space_group: int, labelled_advice: str, material: str | None = None):
    """A scan, image or folder of one known phase (a reference sample) as labelled patterns of ``material`` (by
    default the file's stem), to score a model on; ``labelled_advice`` says where to score one that holds labels
    of its own."""
    from ebsd_core.io.readers import open_patterns

    source = open_patterns(path)
    if source.labelled:
        raise InputError(f"holds labels of its own: {labelled_advice}", path)
    source.labels, source.classes = np.zeros(len(source), dtype=int), [space_group]
    source.material = np.full(len(source), material or Path(path).stem)
    return source


def score_job(
    context, model_dir: str, data_path: str, space_group: int | None = None, material: str | None = None
) -> dict:
    """Job body: score a saved model (:func:`score_source`) on a labelled dataset file, or on a scan of one known
    phase (``space_group``; ``material``: its name in the scores)."""
    from ebsd_core.backbones import select_device
    from ebsd_core.io.readers import open_patterns
    from ebsd_core.store import load_model

    model, card = load_model(model_dir, device=select_device("auto"))
    if space_group is not None:
        source = one_phase_source(data_path, space_group, "score the model on it as the session's dataset", material)
    else:
        source = open_patterns(data_path, labelled=True)
        if not source.labelled:
            raise InputError("has no labels to score against: give the phase it holds", data_path)
    metrics, notes = score_source(model, card, source, progress=context.report, should_stop=context.should_stop)
    return {"model": Path(model_dir).name, "dataset": data_path, "metrics": metrics, "notes": notes}


def job_progress(context, label: str, index: int = 0, runs: int = 1) -> Callable[[TrainProgress], None]:
    """A training progress callback that reports run ``index`` of ``runs`` to a job, with curve events."""

    def progress(p: TrainProgress) -> None:
        event = None
        if p.message:
            event = {
                "run": label,
                "epoch": p.epoch,
                "train_loss": p.train_loss,
                "train_accuracy": p.train_accuracy,
                "val_loss": p.val_loss,
                "val_accuracy": p.val_accuracy,
            }
        eta = f", ETA {p.eta_seconds:.0f} s" if p.eta_seconds is not None else ""
        message = f"{label}: epoch {p.epoch}/{p.epochs}, batch {p.batch}/{p.batches}{eta}"
        context.report((index + p.fraction) / runs, message, event)

    return progress


def train_runs_job(context, params: dict) -> dict:
    """Job body of the Train page: train every run of ``params``, a JSON dict so the job can be restarted.

    ``params``: ``dataset_path``, ``runs`` (``[label, TrainConfig.to_dict()]`` pairs) and ``name``
    (models are saved as ``name-label``). Runs whose model is already in the store (after a
    restart) are kept, never overwritten.
    """
    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.store import default_store

    dataset = read_dataset(params["dataset_path"])
    runs = [(label, TrainConfig.from_dict(config)) for label, config in params["runs"]]
    name_prefix = params["name"]
    summaries = []
    for i, (label, config) in enumerate(runs):
        if (default_store() / f"{name_prefix}-{label}" / "model.json").exists():
            summaries.append({"run": label, "model": f"{name_prefix}-{label}", "kept": True})
            continue

        summary = train_evaluate_save(
            dataset,
            config,
            f"{name_prefix}-{label}",
            progress=job_progress(context, label, i, len(runs)),
            should_stop=context.should_stop,
        )
        summaries.append({"run": label, **summary})
    return {"runs": summaries, "model_name": f"{name_prefix}-{runs[0][0]}"}


def demo_train_job(context, folder: Path, epochs: int) -> dict:
    """Job body of the Home page's demo: simulate :data:`DEMO`'s dataset into ``folder``, train and save a model."""
    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset

    context.report(0.02, "simulating the demo dataset")
    dataset = simulate_dataset(per_class=DEMO.per_class, size=DEMO.pattern_size, seed=0)
    path = write_dataset(dataset, Path(folder) / "demo.h5")
    config = TrainConfig(
        shots=DEMO.shots,
        epochs=epochs,
        input_size=DEMO.input_size,
        patience=epochs,
        val_per_class=DEMO.val_per_class,
    )
    name = f"demo-{context.job_id}"
    progress = job_progress(_ScaledContext(context, 0.1, 1.0), "demo")
    summary = train_evaluate_save(
        dataset, config, name, progress=progress, should_stop=context.should_stop, dataset_path=path
    )
    return {"dataset": str(path), **summary, "model_name": name}


def cancellable(
    should_stop: Callable[[], bool] | None, cancelled: str, report: Callable[[float, str], None] | None = None
) -> Callable[[float, str], None]:
    """A simulation's progress callback for a job: raises :class:`CancelledError` (``cancelled``) once the job's
    Cancel was pressed, else passes the progress on to ``report``. Simulations have no ``should_stop`` of their own."""

    def progress(fraction: float, message: str) -> None:
        if should_stop and should_stop():
            raise CancelledError(cancelled)
        if report:
            report(fraction, message)

    return progress


def simulate_job(context, params: dict, out: str | Path) -> dict:
    """Job body of the Data page's simulation: ``params`` are :func:`ebsd_core.datasets.simulate_dataset`'s keyword
    arguments (JSON: ``per_class``, ``classes``, ``phases``, ``holdout_materials``, ``size``, ``seed``), with
    ``cifs``: CIF files of more phases; the dataset is written to ``out``. Cancellable between materials."""
    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset
    from ebsd_core.phases import phase_from_cif

    progress = cancellable(context.should_stop, "simulation cancelled", lambda f, m: context.report(0.95 * f, m))
    settings = {key: value for key, value in params.items() if key != "cifs"}
    extra = [phase_from_cif(path) for path in params.get("cifs", [])]
    dataset = simulate_dataset(**settings, extra_materials=extra, progress=progress)
    context.report(0.95, f"writing {len(dataset):,} patterns")
    return {"dataset": str(write_dataset(dataset, out)), "patterns": len(dataset)}


def phase_map_job(
    context,
    model_dir: str,
    scan_path: str,
    out: str | Path,
    cleanup: bool = True,
    orientations: str | Path | None = None,
    nav_shape: tuple[int, int] | None = None,
) -> dict:
    """Job body: map a scan with a saved model (and the grain clean-up) and store the map for viewing.

    ``orientations``: the scan's indexing file, whose orientations the map's exports keep; ``nav_shape``: rows and
    columns, for files that do not record them."""
    from ebsd_core.backbones import select_device
    from ebsd_core.io.readers import open_patterns
    from ebsd_core.phasemap import attach_orientations, map_scan, save_phase_map
    from ebsd_core.store import load_model

    model, card = load_model(model_dir, device=select_device("auto"))
    source = open_patterns(scan_path)
    if orientations is not None:
        source = attach_orientations(source, orientations, nav_shape)
    phase_map = map_scan(
        model,
        card,
        source,
        nav_shape=nav_shape,
        cleanup=cleanup,
        progress=context.report,
        should_stop=context.should_stop,
    )
    save_phase_map(phase_map, out)
    return {"map": str(out), "scan": scan_path, **phase_map.summary()}


def classify_job(
    context,
    model_dir: str,
    scan_path: str,
    out: str | Path,
    name: str | None = None,
    cleanup: bool = False,
    orientations: str | None = None,
) -> dict:
    """Job body: classify every pattern of a scan that no square map lays out (a hexagonal grid) with a saved model,
    each on its own unless cleaned up (below), into the CSV ``out`` (``predict``'s columns); returns the patterns per
    class and what to trust them on (``counts`` by space-group symbol, ``labels`` naming each as its maps do,
    ``colours`` as they draw it), and the pattern the model was least sure of (``least_sure``, its index). Where the
    scan says where its points lie on its grid, ``grid`` is the file of its points' predictions to draw there
    (:func:`~ebsd_core.predictions.write_grid_points`, beside ``out``), else None; there ``cleanup`` runs the grain
    clean-up on that grid (:func:`~ebsd_core.grain_cleanup.clean_up_hexagonal`, with each point's own views as a
    square map's), whose answers the CSV and the grid then hold. ``name``: the scan as its user knows it, which names
    the rows (an upload's own name, not the server's path of it). ``orientations``: the scan's own .ang on its grid
    (:func:`~ebsd_core.phasemap.attach_hexagonal_indexing`), written again with the model's phases as ``ang``
    (:func:`~ebsd_core.map_export.write_hexagonal_ang`, beside ``out``); it lays out a scan that does not say where its
    points lie."""
    from ebsd_core.backbones import select_device
    from ebsd_core.caveats import blank_pattern_note, reading_notes
    from ebsd_core.inference import blank_points, predict_source
    from ebsd_core.io.readers import open_patterns
    from ebsd_core.phasemap import map_views, phases_for_model
    from ebsd_core.predictions import prediction_counts, write_grid_points, write_predictions
    from ebsd_core.store import load_model

    model, card = load_model(model_dir, device=select_device("auto"))
    source = open_patterns(scan_path)
    placed_by_indexing = orientations is not None and source.hexagonal_places is None
    if orientations is not None:
        from ebsd_core.phasemap import attach_hexagonal_indexing

        source = attach_hexagonal_indexing(source, orientations)
    cleanup = cleanup and source.hexagonal_places is not None  # neighbours only where the points' places are known
    card = dataclasses.replace(card, views=map_views(card, cleanup))
    share = 0.6 if cleanup else 0.98  # of the progress bar, before the clean-up and the CSV
    report = lambda fraction, message: context.report(share * fraction, message)  # noqa: E731
    prediction = predict_source(
        model, card, source, progress=report, should_stop=context.should_stop, scatter_views=cleanup
    )
    changed, raw = 0, None
    if cleanup:
        from ebsd_core.grain_cleanup import clean_up_hexagonal

        report = lambda fraction, message: context.report(0.6 + 0.38 * fraction, message)  # noqa: E731
        smoothed = clean_up_hexagonal(prediction.probabilities, source, card.preprocess, report, context.should_stop)
        cleaned = dataclasses.replace(prediction, probabilities=smoothed)
        changed = int(np.count_nonzero(cleaned.index != prediction.index))
        prediction, raw = cleaned, prediction.probabilities
    context.report(0.98, f"writing the predictions of {len(source):,} patterns")
    write_predictions(out, source, prediction, card, name)
    grid = ang = None
    phases = phases_for_model(card)
    if source.hexagonal_places is not None:  # drawn on the scan's own grid
        grid_file = Path(out).with_suffix(".grid.safetensors")
        grid = str(write_grid_points(grid_file, prediction, source.hexagonal_places, raw))
    if orientations is not None:
        from ebsd_core.map_export import write_hexagonal_ang
        from ebsd_core.predictions import grid_points

        context.report(0.99, f"writing the phases of {len(source):,} points into {Path(orientations).name}")
        points = grid_points(prediction, source.hexagonal_places)
        ang = str(write_hexagonal_ang(points, phases, orientations, Path(out).with_suffix(".ang")))
    blank = blank_points(prediction.quality)
    held = np.flatnonzero(~blank)  # a blank pattern is not one the model was unsure of: it holds nothing
    return {
        "grid": grid,
        "ang": ang,
        "indexing": orientations,
        "placed_by_indexing": placed_by_indexing,  # not by the scan: no region of it can be taken
        "colours": {phase.symbol: phase.colour for phase in phases},
        "threshold": card.unknown_threshold,
        "least_sure": int(held[np.argmin(prediction.confidence[held])]) if len(held) else None,
        "predictions": str(out),
        "scan": scan_path,
        "model_name": Path(model_dir).name,  # the store's name for it
        "patterns": len(source),
        "step_um": source.step_um,  # along a row of its grid, as its file gives it
        "counts": prediction_counts(prediction),
        "labels": {phase.symbol: phase.label for phase in phases},  # as its maps name them
        "notes": reading_notes(source, card) + blank_pattern_note(blank, source.imageless, source.unread),
        "grain_cleanup": cleanup,
        "changed_by_cleanup": changed,
    }


def demo_layout(phases: tuple[str, ...], shape: tuple[int, int], layout_path: str | Path | None = None):
    """The grains of a demo scan: Voronoi grains of ``phases`` in ``shape``, or those of a real map's indexing file
    (``layout_path``: .ang, .ctf), its phases by their names there (Austenite, Ferrite, ...) or else ``phases`` in
    the file's order."""
    from ebsd_core.phases import get_material
    from ebsd_core.simulate_map import layout_from_ang, voronoi_layout

    if layout_path is None:
        return voronoi_layout([get_material(p) for p in phases], shape, grain_size=8, seed=1)
    try:
        return layout_from_ang(layout_path)
    except PhaseError:  # names that are no catalogue material's: the chosen phases, in order
        return layout_from_ang(layout_path, list(phases))


def demo_map_job(
    context,
    phases: tuple[str, ...],
    shape: tuple[int, int],
    folder: Path,
    model_dir: str | None = None,
    layout_path: str | None = None,
) -> dict:
    """Job body of the dashboard's demo map: simulate a Voronoi scan of two phases (or one with the grains of a real
    map's indexing file, ``layout_path``: :func:`demo_layout`) and map it.

    Uses ``model_dir`` when that model knows both phases' space groups and is not a Home demo model; otherwise the
    model an earlier demo map trained for the pair (anyone's: a class's demo maps queue behind one training, not
    one each), or else first trains a 20-shot model for the pair (:data:`DEMO_MAP`). A Home demo model saw 10
    patterns of each of six classes for a few epochs: it mapped a 40 x 50 austenite/ferrite demo scan 0.1 % right
    and a Ni/Ni3Al one 43 % (every point Pm-3m or unknown), where a model for each pair mapped them 94 % and
    99.95 % right (73 s and 95 s for the whole job on 2 cores).
    """
    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset
    from ebsd_core.simulate_map import simulate_scan

    folder = Path(folder)
    layout = demo_layout(phases, shape, layout_path)
    materials = layout.materials
    phases = tuple(m.key for m in materials)
    name = f"demo-map-{'-'.join(phases)}-{context.job_id}"
    pattern_size = DEMO_MAP.pattern_size
    model_dir, card = demo_map_model(materials, model_dir) or (None, None)
    if card is not None:
        pattern_size = int(card.training.get("pattern_size", pattern_size))
        name = card.name or Path(model_dir).name
        start = 0.0
    else:
        context.report(0.01, f"simulating {DEMO_MAP.shots} training patterns per phase")
        training = simulate_dataset(
            per_class=DEMO_MAP.shots + DEMO_MAP.val_per_class, phases=list(phases), size=pattern_size, seed=0
        )
        config = TrainConfig(
            shots=DEMO_MAP.shots,
            epochs=DEMO_MAP.epochs,
            input_size=DEMO_MAP.input_size,
            patience=DEMO_MAP.epochs,
            val_per_class=DEMO_MAP.val_per_class,
        )

        def progress(p: TrainProgress) -> None:
            context.report(
                0.05 + 0.6 * p.fraction, f"training a {DEMO_MAP.shots}-shot model: epoch {p.epoch}/{p.epochs}"
            )

        model_dir = train_evaluate_save(training, config, name, progress=progress, should_stop=context.should_stop)[
            "model"
        ]
        start = 0.65
    context.report(start, f"simulating a {layout.shape[0]}x{layout.shape[1]} scan")
    # a 300x300 scan takes minutes: Cancel acts here too
    simulating = cancellable(
        context.should_stop, "cancelled while simulating the scan", lambda f, m: context.report(start + 0.05 * f, m)
    )
    scan_file = f"demo-scan-{'-'.join(phases)}-{context.job_id}.h5"  # the map's title and export names
    scan = simulate_scan(layout, size=pattern_size, seed=1, progress=simulating)
    scan_path = write_dataset(scan, folder / scan_file)
    scaled = _ScaledContext(context, start + 0.05, 1.0)
    return {
        "model_name": name,
        "demo_pair": list(phases),  # the page's hint when a model maps the scan poorly
        **phase_map_job(scaled, str(model_dir), str(scan_path), folder / f"{context.job_id}.npz"),
    }


class _ScaledContext:
    """A job context whose progress maps 0..1 onto ``low..high`` of the parent's."""

    def __init__(self, parent, low: float, high: float) -> None:
        self.parent, self.low, self.high = parent, low, high
        self.job_id = parent.job_id

    def report(self, fraction: float, message: str = "", event: dict | None = None) -> None:
        self.parent.report(self.low + (self.high - self.low) * fraction, message, event)

    def should_stop(self) -> bool:
        return self.parent.should_stop()
