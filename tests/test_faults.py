"""Faults: a training worker killed with SIGKILL mid-epoch, an interrupted save, leftovers, idle sessions."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import unwritable
from streamlit.testing.v1 import AppTest

from ebsd_core import atomic
from ebsd_core.errors import StoreError
from ebsd_core.housekeeping import (
    REMOVED_SESSIONS,
    cleanup_partial_saves,
    cleanup_sessions,
    retire_demo_models,
    session_keep_hours,
    session_removed_at,
)
from ebsd_core.jobs import FAILED, JobManager
from ebsd_core.store import list_models, save_model
from ebsd_core.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
OWNER = "ab" * 16  # a valid session id
WORKER = """
import sys, time
sys.path.insert(0, {root!r})
from ebsd_core.jobs import JobManager
from ebsd_core.workflows import train_runs_job
params = {params!r}
JobManager().submit("train", "victim: 1 run(s)", {owner!r}, lambda ctx: train_runs_job(ctx, params), params)
time.sleep(600)
"""


def _params(dataset: Path, epochs: int) -> dict:
    config = TrainConfig(shots=4, epochs=epochs, input_size=32, batch_size=8, min_steps_per_epoch=40, patience=999)
    return {"dataset_path": str(dataset), "runs": [["transfer-k4", config.to_dict()]], "name": "victim"}


def _wait_for_mid_epoch(jobs: Path, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in jobs.glob("*.json"):
            state = json.loads(path.read_text())
            if state["status"] == "running" and "batch" in state["message"] and state["progress"] > 0:
                return state
        time.sleep(0.2)
    pytest.fail("the training job never got going")


def test_sigkill_mid_epoch(tiny_dataset, tmp_path, monkeypatch):
    home, store = tmp_path / "home", tmp_path / "store"
    env = os.environ | {"EBSD_FEWSHOT_HOME": str(home), "EBSD_MODEL_STORE": str(store)}
    script = WORKER.format(root=str(ROOT), params=_params(tiny_dataset, 200), owner=OWNER)
    worker = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT)
    try:
        running = _wait_for_mid_epoch(home / "jobs")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    # the next server process reports the job failed, and the store holds no partial model
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(home))
    monkeypatch.setenv("EBSD_MODEL_STORE", str(store))
    state = JobManager().get(running["id"])
    assert state.status == FAILED and "stopped" in state.error
    assert list_models(store) == [] and not (store / "victim-transfer-k4").exists()
    # the app still serves, shows the failure and can start the job again
    from pages.common import job_manager

    job_manager.clear()
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    app.query_params["sid"] = OWNER
    app.switch_page("pages/train.py").run()
    assert not app.exception
    assert any("stopped" in e.value for e in app.error)
    next(b for b in app.button if b.label == "Start again").click().run()
    new_job = app.session_state["train_job"]
    assert new_job != running["id"]
    assert job_manager().get(new_job).params == running["params"]
    job_manager().cancel(new_job)
    assert job_manager().wait(new_job, timeout=120).status == "cancelled"
    assert list_models(store) == []


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    from ebsd_core.backbones import create_model
    from ebsd_core.preprocess import PreprocessConfig
    from ebsd_core.store import ModelCard

    model = create_model("efficientnet_lite0", 2, pretrained=False)
    card = ModelCard("efficientnet_lite0", [225, 229], PreprocessConfig(size=32))

    def power_cut(*args):
        raise OSError("power cut")

    monkeypatch.setattr(atomic.os, "rename", power_cut)
    with pytest.raises(OSError):
        save_model(model, card, tmp_path / "store" / "m")
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "store").iterdir() if not p.name.endswith(".lock")] == []
    save_model(model, card, tmp_path / "store" / "m")
    with pytest.raises(StoreError):
        save_model(model, card, tmp_path / "store" / "m")


def test_a_full_disk_is_named_in_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """A write that fails names no file ('[Errno 28] No space left on device'): the message names the one being
    made, whatever wrote it (h5py gives the words only); a dataset larger than the free space is refused first."""
    import errno
    import shutil

    from ebsd_core.cli import main
    from ebsd_core.errors import InputError

    target = tmp_path / "maps" / "map.ang"
    for failure in (OSError(errno.ENOSPC, "No space left on device"), OSError("file write failed: 'File too large'")):
        named = r"map.ang: could not be written \((No space|File too large).*free some"
        with pytest.raises(InputError, match=named), atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a map")
            raise failure
        assert list(target.parent.iterdir()) == []
    with pytest.raises(FileNotFoundError), atomic.atomic_path(target):  # reading another file: its own error
        (tmp_path / "missing.ang").read_bytes()

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda folder: usage._replace(free=10_000))
    out = tmp_path / "data.h5"
    assert main(["simulate", "--phases", "ni,ni3al", "--per-class", "4", "--size", "64", "--out", str(out)]) == 2
    assert f"data.h5: needs up to 33 kB and 10 kB are free in {tmp_path}: free some" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".data.h5*"))


def test_leftovers_of_a_killed_save_are_ignored_then_removed(tmp_path):
    store = tmp_path / "store"
    leftover = store / ".m.abc123.part"
    leftover.mkdir(parents=True)
    (leftover / "weights.safetensors").write_bytes(b"half")
    assert list_models(store) == []
    assert cleanup_partial_saves(store) == []  # too young: it may be a save in progress
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    assert cleanup_partial_saves(store) == [".m.abc123.part"] and not leftover.exists()


def test_leftovers_that_cannot_be_removed_stay_and_are_logged(tmp_path, monkeypatch, caplog):
    """Found as a lab's server account: a leftover of a killed save in a store it could only read ended every page of
    the dashboard in a traceback ("PermissionError: [Errno 13] Permission denied: '/tmp/rostore/.t9.abc.part'")."""
    folder, file = tmp_path / "store" / ".m.abc123.part", tmp_path / "store" / ".data.h5.abc123.part"
    folder.mkdir(parents=True)
    file.write_bytes(b"half")
    old = time.time() - 7200
    for leftover in (folder, file):
        os.utime(leftover, (old, old))
    unwritable(monkeypatch, tmp_path / "store")
    assert cleanup_partial_saves(tmp_path / "store") == [] and folder.exists() and file.exists()
    for leftover in (folder, file):
        assert f"could not remove {leftover}, left by a save that never finished" in caplog.text


def test_idle_sessions_that_cannot_be_removed_keep_their_jobs(tmp_path, monkeypatch):
    """A session folder holding another account's files stays, and so must its jobs and demo models."""
    idle = tmp_path / "sessions" / "idle"
    idle.mkdir(parents=True)
    old = time.time() - 48 * 3600
    os.utime(idle, (old, old))
    unwritable(monkeypatch, idle)
    assert cleanup_sessions(tmp_path, max_age_hours=24) == [] and idle.exists()


def test_idle_sessions_age_out(tmp_path):
    sessions = tmp_path / "sessions"
    idle, active, mapping = sessions / "idle", sessions / "active", sessions / "mapping"
    for folder in (idle, active, mapping):
        (folder / "uploads").mkdir(parents=True)
        (folder / "uploads" / "scan.h5").write_bytes(b"x")
    old = time.time() - 48 * 3600
    for folder in (idle, mapping):
        for path in (folder, folder / "uploads", folder / "uploads" / "scan.h5"):
            os.utime(path, (old, old))
    # found on review: a map of a large scan running for over a day lost the scan it read, and its map
    assert cleanup_sessions(tmp_path, max_age_hours=24, working=["mapping"]) == ["idle"]
    assert active.exists() and mapping.exists() and not idle.exists()


def test_a_removed_session_is_noted_and_the_time_kept_is_the_servers_to_set(tmp_path, monkeypatch, caplog):
    """A lab keeps a weekend's work (EBSD_SESSION_KEEP_HOURS=72); a link bookmarked before a removal can be told so."""
    sessions = tmp_path / "sessions"
    for name, hours in (("friday", 60), ("thursday", 80)):
        (sessions / name).mkdir(parents=True)
        old = time.time() - hours * 3600
        os.utime(sessions / name, (old, old))
    stale_note = sessions / REMOVED_SESSIONS / "last-spring"
    stale_note.parent.mkdir()
    stale_note.touch()
    os.utime(stale_note, (time.time() - 100 * 86400,) * 2)
    monkeypatch.setenv("EBSD_SESSION_KEEP_HOURS", "72")
    assert cleanup_sessions(tmp_path) == ["thursday"]
    assert abs(session_removed_at("thursday", tmp_path) - time.time()) < 60
    assert session_removed_at("friday", tmp_path) is None and not stale_note.exists()  # notes last 90 days
    assert cleanup_sessions(tmp_path) == [] and (sessions / REMOVED_SESSIONS).is_dir()  # never taken for a session
    for wrong in ("three days", "0", "-5", "inf", "nan"):
        monkeypatch.setenv("EBSD_SESSION_KEEP_HOURS", wrong)
        assert session_keep_hours() == 24
        said = f"EBSD_SESSION_KEEP_HOURS={wrong} is not a number of hours: idle sessions are kept 24 hours"
        assert said in caplog.text
    assert cleanup_sessions(tmp_path) == ["friday"]


def test_the_sessions_with_a_job_queued_or_running_are_working(tmp_path):
    manager = JobManager(tmp_path / "jobs")
    release = threading.Event()
    manager.wait(manager.submit("demo", "Demo", "done", lambda ctx: {}))
    running = manager.submit("phasemap", "map", "mapping", lambda ctx: release.wait(30) and {})
    while manager.get(running).status != "running":  # it holds the device: the next one waits
        time.sleep(0.01)
    queued = manager.submit("train", "train", "waiting", lambda ctx: {})
    assert manager.working_owners() == {"mapping", "waiting"}
    release.set()
    manager.wait(running), manager.wait(queued)
    assert manager.working_owners() == set()


def _jobs_saving_models(tmp_path: Path, model: Path):
    """A working folder, a store, a job manager and a job body that saves a copy of ``model`` in the store."""
    import shutil

    home, store = tmp_path / "home", tmp_path / "store"

    def saves(name: str) -> dict:
        shutil.copytree(model, store / name)
        return {"model_name": name}

    return home, store, JobManager(home / "jobs"), saves


def test_demo_models_go_with_their_session(tmp_path, map_model):
    """A class clicks the demo 30 times: once their sessions age out, the pickers show the lab's own models again."""
    home, store, manager, saves = _jobs_saving_models(tmp_path, map_model)
    gone = manager.wait(manager.submit("demo", "Demo", "idle", lambda ctx: saves(f"demo-{ctx.job_id}")))
    gone_map = manager.wait(
        manager.submit("phasemap", "Demo map", "idle", lambda ctx: saves(f"demo-map-ni-{ctx.job_id}"))
    )
    kept = manager.wait(manager.submit("demo", "Demo", "active", lambda ctx: saves(f"demo-{ctx.job_id}")))
    manager.wait(manager.submit("train", "Train", "idle", lambda ctx: saves("demo-ni")))  # a user's own, named demo-
    assert sorted(retire_demo_models(["idle"], home, store)) == sorted(
        [f"demo-{gone.id}", f"demo-map-ni-{gone_map.id}"]
    )
    assert {m["name"] for m in list_models(store)} == {f"demo-{kept.id}", "demo-ni"}
    assert len(list((store / ".deleted").iterdir())) == 2  # moved, not erased
    assert retire_demo_models(["idle"], home, store) == []  # moved already


def test_demo_models_in_a_store_that_cannot_be_written_to_stay(tmp_path, map_model, monkeypatch, caplog):
    home, models, manager, saves = _jobs_saving_models(tmp_path, map_model)
    gone = manager.wait(manager.submit("demo", "Demo", "idle", lambda ctx: saves(f"demo-{ctx.job_id}")))
    unwritable(monkeypatch, models)
    assert retire_demo_models(["idle"], home, models) == []
    assert {m["name"] for m in list_models(models)} == {f"demo-{gone.id}"}
    assert f"could not move the demo model demo-{gone.id} out of the store's listing" in caplog.text
