"""Workflows shared by the CLI and the dashboard."""

import csv
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from ebsd_core.datasets import plan_simulation
from ebsd_core.errors import CancelledError, InputError, PhaseError, StoreError
from ebsd_core.io.dataset import read_dataset
from ebsd_core.jobs import JobManager
from ebsd_core.predictions import read_grid_points
from ebsd_core.train import TrainConfig
from ebsd_core.workflows import classify_job, latest_demo_model, simulate_job, train_evaluate_save


def _copy(model, store, name, created):
    shutil.copytree(model, store / name)
    card = store / name / "model.json"
    card.write_text(json.dumps({**json.loads(card.read_text()), "created": created}))


def test_the_latest_demo_model_is_the_newest_the_home_demo_saved(tmp_path, map_model):
    store = tmp_path / "store"
    assert latest_demo_model(store) is None
    _copy(map_model, store, "demo-00000000000a", "2026-12-03T10:00:00+00:00")
    _copy(map_model, store, "demo-00000000000b", "2026-12-03T11:00:00+00:00")
    _copy(map_model, store, "demo-map-ni-ni3al-00000000000c", "2026-12-03T12:00:00+00:00")  # the map demo's
    _copy(map_model, store, "demo-mine", "2026-12-03T12:00:00+00:00")  # a user's own name
    latest = latest_demo_model(store)
    assert latest["name"] == "demo-00000000000b" and latest["epochs"] == 2


class CancelledContext:
    """A job's context once its Cancel was pressed; it keeps the messages the job reports."""

    job_id = "x"

    def __init__(self) -> None:
        self.messages: list[str] = []

    def report(self, fraction: float, message: str = "", event: dict | None = None) -> None:
        self.messages.append(message)

    def should_stop(self) -> bool:
        return True


SETTINGS = {"per_class": 4, "classes": None, "phases": ["ni", "w"], "holdout_materials": [], "size": 32, "seed": 3}


def test_the_data_pages_simulation_job_writes_the_dataset(tmp_path):
    manager = JobManager(tmp_path / "jobs")
    out = tmp_path / "simulated.h5"
    state = manager.wait(manager.submit("simulate", "simulate", "a", lambda ctx: simulate_job(ctx, SETTINGS, out)))
    assert state.status == "done" and state.result == {"dataset": str(out), "patterns": 8}
    dataset = read_dataset(out)
    assert dataset.class_symbols == ["Fm-3m", "Im-3m"] and dataset.provenance["seed"] == 3


def test_a_cancelled_simulation_writes_nothing(tmp_path):
    manager = JobManager(tmp_path / "jobs")
    out = tmp_path / "simulated.h5"
    release = threading.Event()
    first = manager.submit("train", "someone's training", "b", lambda ctx: release.wait(30) and {})
    queued = manager.submit("simulate", "simulate", "a", lambda ctx: simulate_job(ctx, SETTINGS, out))
    manager.cancel(queued)
    release.set()
    assert manager.wait(first).status == "done" and manager.wait(queued).status == "cancelled"

    with pytest.raises(CancelledError, match="simulation cancelled"):  # cancelled while it simulates
        simulate_job(CancelledContext(), SETTINGS, out)
    assert not out.exists()


def test_a_simulation_plan_is_checked_without_simulating():
    plan = plan_simulation(10, None, ["ni", "ni3al"], ["cu3au"])
    assert plan.classes == [221, 225] and plan.holdout == {"cu3au"}
    assert sorted((m.key, n, split) for m, n, split in plan.runs) == [
        ("cu3au", 10, "holdout"),
        ("ni", 10, "train"),
        ("ni3al", 10, "train"),
    ]
    with pytest.raises(PhaseError, match="every Fm-3m material is held out"):
        plan_simulation(10, None, ["ni", "ni3al"], ["ni"])
    with pytest.raises(PhaseError, match="nothing to simulate: choose at least one space group or material"):
        plan_simulation(10, [], None)  # the Data page with every space group taken out


def test_the_demo_map_stops_while_it_simulates_its_scan_when_cancelled(tmp_path, map_model):
    """The page allows 300x300 points (minutes of simulation before the first map batch could see the Cancel)."""
    from ebsd_core.workflows import demo_map_job

    context = CancelledContext()
    with pytest.raises(CancelledError, match="while simulating the scan"):
        demo_map_job(context, ("austenite", "ferrite"), (10, 10), tmp_path, str(map_model))
    assert context.messages == ["simulating a 10x10 scan"] and not list(tmp_path.iterdir())


@pytest.mark.parametrize(("name", "mapped_with_it"), [("duplex-mine", True), ("demo-00000000000d", False)])
def test_the_demo_map_uses_the_chosen_model_unless_it_is_a_home_demo_model(
    tmp_path, monkeypatch, map_model, name, mapped_with_it
):
    """A Home demo model (six classes, a few epochs) mapped a duplex demo scan 0.1 % right: the demo map trains a
    model for the pair instead, as for a model that does not know both phases."""
    from ebsd_core import workflows

    monkeypatch.setenv("EBSD_MODEL_STORE", str(tmp_path / "store"))  # no earlier demo map's model to reuse
    shutil.copytree(map_model, tmp_path / name)
    tiny = workflows.DemoMapSettings(shots=2, val_per_class=1, pattern_size=32, input_size=32, epochs=1)
    context = CancelledContext()
    with pytest.MonkeyPatch.context() as patch, pytest.raises(CancelledError):
        patch.setattr(workflows, "DEMO_MAP", tiny)
        workflows.demo_map_job(context, ("austenite", "ferrite"), (10, 10), tmp_path / "maps", str(tmp_path / name))
    first = "simulating a 10x10 scan" if mapped_with_it else "simulating 2 training patterns per phase"
    assert context.messages[0] == first


def test_a_demo_map_reuses_the_model_an_earlier_one_trained_for_the_pair(tmp_path, monkeypatch, map_model):
    """A class clicking "Run the demo map" queued one training each (78 s apiece on 2 cores): the first trains."""
    from ebsd_core import workflows

    store = tmp_path / "store"
    monkeypatch.setenv("EBSD_MODEL_STORE", str(store))
    _copy(map_model, store, "demo-map-austenite-ferrite-00000000000a", "2026-12-04T10:00:00+00:00")
    _copy(map_model, store, "demo-map-austenite-ferrite-00000000000b", "2026-12-04T11:00:00+00:00")
    _copy(map_model, store, "demo-map-austenite-ferrite-mine", "2026-12-04T12:00:00+00:00")  # a user's name
    _copy(map_model, store, "demo-00000000000c", "2026-12-04T12:00:00+00:00")  # the Home demo's
    newest = workflows.latest_demo_map_model(("austenite", "ferrite"))
    assert Path(newest).name == "demo-map-austenite-ferrite-00000000000b"
    assert workflows.latest_demo_map_model(("ni", "ni3al")) is None
    context = CancelledContext()
    with pytest.raises(CancelledError):
        workflows.demo_map_job(context, ("austenite", "ferrite"), (10, 10), tmp_path, str(store / "demo-00000000000c"))
    assert context.messages[0] == "simulating a 10x10 scan"  # no training first


@pytest.mark.parametrize("existing", [False, True])
def test_a_model_that_could_not_be_saved_is_not_trained(tmp_path, monkeypatch, existing):
    """Found as a lab's server account: the Home demo trained for its minutes, then failed at the save in a model
    store the server could not write to, and a training job of an hour would have done the same."""
    from ebsd_core import workflows

    monkeypatch.setattr(workflows, "train_model", lambda *args, **kwargs: pytest.fail("trained all the same"))
    if existing:
        (tmp_path / "store" / "taken").mkdir(parents=True)
        target, refused = tmp_path / "store" / "taken", pytest.raises(StoreError, match="taken already exists")
    else:
        (tmp_path / "a-file").write_text("")  # a store that cannot be made, for root too
        target, refused = tmp_path / "a-file" / "store" / "new", pytest.raises(InputError, match="cannot write in")
    with refused:
        train_evaluate_save(None, TrainConfig(), target)


def test_the_phase_map_pages_classifying_of_a_scan_of_no_map_writes_predicts_csv(
    tmp_path, map_model, map_scan_file, capsys
):
    """A hexagonal grid lays out no map: the Phase map page classifies its patterns each on its own, into the CSV the
    predict command writes (the same rows), and counts them per phase; cancelled, it writes nothing."""
    from conftest import as_hexagonal_grid, scan_as_images

    from ebsd_core.cli import main

    folder = as_hexagonal_grid(scan_as_images(map_scan_file, tmp_path / "hexagonal"))
    manager = JobManager(tmp_path / "jobs")
    out = tmp_path / "page.csv"
    job = manager.submit("phasemap", "classify", "a", lambda ctx: classify_job(ctx, str(map_model), str(folder), out))
    state = manager.wait(job)
    assert state.status == "done", state.error
    assert main(["predict", "--model", str(map_model), "--input", str(folder), "--out", str(tmp_path / "cli.csv")]) == 0
    assert out.read_text() == (tmp_path / "cli.csv").read_text()
    said = json.loads(capsys.readouterr().out)["predictions"]
    assert state.result["counts"] == {"Fm-3m": said.get("Fm-3m", 0), "Im-3m": said.get("Im-3m", 0), "unknown": 0}
    assert state.result["patterns"] == 40 and state.result["model_name"] == "duplex"
    assert state.result["labels"] == {"Fm-3m": "Austenite (Fm-3m)", "Im-3m": "Ferrite (Im-3m)"}
    assert state.result["predictions"] == str(out) and state.result["scan"] == str(folder)
    # and its points' predictions, to draw on its grid where their names place them
    points = read_grid_points(state.result["grid"])
    with open(out) as handle:
        predicted = [row["prediction"] for row in csv.DictReader(handle)]
    assert [["Fm-3m", "Im-3m"][i] if i >= 0 else "unknown" for i in points.index] == predicted
    assert points.places.tolist() == [[row, 2 * c + row % 2] for row in range(8) for c in range(5)]
    assert state.result["colours"].keys() == {"Fm-3m", "Im-3m"}
    Path(state.result["grid"]).write_bytes(b"damaged")
    with pytest.raises(InputError, match=r"page.grid.safetensors: the points of a classified scan cannot be read"):
        read_grid_points(state.result["grid"])
    with pytest.raises(CancelledError, match="prediction cancelled"):
        classify_job(CancelledContext(), str(map_model), str(folder), tmp_path / "cancelled.csv")
    assert not (tmp_path / "cancelled.csv").exists() and not (tmp_path / "cancelled.grid.safetensors").exists()


def test_classifying_a_scan_on_a_hexagonal_grid_cleans_it_up_by_grains_there(tmp_path, map_model, map_scan_file):
    """The grain clean-up was of square maps alone: on a hexagonal grid whose points' places are known, it now
    averages each point with its six neighbours whose patterns correlate, from each point's own views, as a square
    map's; the CSV and the points drawn hold its answers."""
    import dataclasses

    from conftest import as_hexagonal_grid, scan_as_images

    from ebsd_core.grain_cleanup import clean_up_hexagonal
    from ebsd_core.inference import predict_source
    from ebsd_core.io.readers import open_patterns
    from ebsd_core.phasemap import map_views
    from ebsd_core.store import load_model

    folder = as_hexagonal_grid(scan_as_images(map_scan_file, tmp_path / "hexagonal"))
    manager = JobManager(tmp_path / "jobs")
    out = tmp_path / "cleaned.csv"
    job = manager.submit(
        "phasemap", "c", "a", lambda ctx: classify_job(ctx, str(map_model), str(folder), out, None, True)
    )
    state = manager.wait(job)
    assert state.status == "done", state.error
    model, card = load_model(map_model)
    source = open_patterns(folder)
    own_views = dataclasses.replace(card, views=map_views(card, cleanup=True))
    raw = predict_source(model, own_views, source, scatter_views=True)
    cleaned = dataclasses.replace(raw, probabilities=clean_up_hexagonal(raw.probabilities, source, card.preprocess))
    points = read_grid_points(state.result["grid"])
    np.testing.assert_allclose(points.probabilities, cleaned.probabilities, atol=1e-6)
    np.testing.assert_allclose(points.raw_probabilities, raw.probabilities, atol=1e-6)  # each pattern's own
    with open(out) as handle:
        assert [row["prediction"] for row in csv.DictReader(handle)] == cleaned.labels
    assert state.result["grain_cleanup"] is True
    assert state.result["changed_by_cleanup"] == int((cleaned.index != raw.index).sum())
