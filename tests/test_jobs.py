"""Jobs run library code on worker threads next to the server's script threads, one at a time, cancellable."""

import ast
import gc
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ebsd_core.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, BusyError, JobManager

ROOT = Path(__file__).resolve().parents[1]


class _Finaliser:
    def __del__(self):
        sum(range(50))  # Python code run by the garbage collector: another thread may take the GIL here


def _parse_while_collecting(source: str, errors: list[str], rounds: int) -> None:
    for _ in range(rounds):
        for _ in range(200):  # cyclic garbage, so that the collector runs finalisers in the middle of a parse
            garbage = _Finaliser()
            garbage.cycle = garbage
        try:
            ast.parse(source)
        except SystemError as exc:
            errors.append(str(exc))
            return


def test_threads_parse_python_at_once_without_a_system_error(tmp_path):
    """On CPython 3.11.7 this raised "AST constructor recursion depth mismatch" within a second (python/cpython#106905),
    as the dashboard's demo did in CI when its job imported kikuchipy while Streamlit parsed the Train page."""
    JobManager(tmp_path / "jobs")  # a job manager makes the process safe before its first worker thread
    source = Path(ast.__file__).read_text()
    errors: list[str] = []
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(50, 2, 2)
    try:
        threads = [threading.Thread(target=_parse_while_collecting, args=(source, errors, 20)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
    assert errors == []


def test_a_queued_job_is_cancelled_at_once_and_never_runs(tmp_path):
    """Found on review: a job queued behind a long one said 'queued' until that one ended, with no Cancel button."""
    manager = JobManager(tmp_path / "jobs")
    release, ran = threading.Event(), []

    def long_job(ctx):
        release.wait(30)
        return {}

    first = manager.submit("train", "first", "a", long_job)
    second = manager.submit("train", "second", "b", lambda ctx: ran.append(1) or {})
    while manager.get(first).status != RUNNING:
        time.sleep(0.01)
    assert manager.get(second).status == QUEUED
    manager.cancel(second)
    assert manager.get(second).status == CANCELLED  # at once, while the first still runs
    release.set()
    assert manager.wait(first).status == DONE and manager.wait(second).status == CANCELLED
    time.sleep(0.1)  # the second's thread has taken its slot and let it go
    assert ran == [] and manager.get(second).message == "cancelled before it started"


def test_a_queued_job_knows_what_runs_and_waits_before_it(tmp_path):
    """A class running the demo at once queues on one device: each student's page says what is ahead of theirs."""
    manager = JobManager(tmp_path / "jobs")
    release = threading.Event()
    first = manager.submit("demo", "first", "a", lambda ctx: release.wait(30) and {})
    while manager.get(first).status != RUNNING:
        time.sleep(0.01)
    second = manager.submit("demo", "second", "b", lambda ctx: {})
    third = manager.submit("demo", "third", "c", lambda ctx: {})
    assert manager.jobs_ahead(second) == (1, 0)
    assert manager.jobs_ahead(third) == (1, 1)
    assert manager.jobs_ahead(first) == (0, 0)  # running: nothing ahead
    manager.cancel(second)
    assert manager.jobs_ahead(third) == (1, 0)  # a cancelled job no longer waits
    release.set()
    assert manager.wait(third).status == DONE and manager.jobs_ahead(third) == (0, 0)


def test_the_finished_jobs_of_removed_sessions_are_forgotten(tmp_path):
    """A bookmarked link to a session removed for idleness must not show a job whose dataset and model are gone."""
    manager = JobManager(tmp_path / "jobs")
    release = threading.Event()
    done = manager.wait(manager.submit("demo", "old demo", "idle", lambda ctx: {}))
    other = manager.wait(manager.submit("demo", "theirs", "active", lambda ctx: {}))
    running = manager.submit("train", "long", "idle", lambda ctx: release.wait(30) and {})
    while manager.get(running).status != RUNNING:
        time.sleep(0.01)
    assert manager.forget(["idle"]) == [done.id]
    assert manager.get(done.id) is None and not (tmp_path / "jobs" / f"{done.id}.json").exists()
    assert [j.id for j in manager.jobs_of("idle")] == [running]  # a running job is never dropped
    assert manager.get(other.id) is not None
    release.set()
    manager.wait(running)
    assert {j.id for j in JobManager(tmp_path / "jobs").jobs_of("idle")} == {running}  # gone from disk too


def test_a_job_that_meets_a_missing_file_says_which_not_internal_error(tmp_path):
    manager = JobManager(tmp_path / "jobs")
    state = manager.wait(manager.submit("phasemap", "map", "a", lambda ctx: (tmp_path / "gone.h5").read_bytes()))
    assert state.status == FAILED and state.error == f"{tmp_path / 'gone.h5'}: No such file or directory"


def test_a_job_failing_as_the_server_stops_is_said_stopped_not_internal_error(tmp_path):
    """Found stopping a lab's service during the Home demo: as the server ended, dask's thread pool had shut down and
    the job said "internal error: RuntimeError: cannot schedule new futures after shutdown", not what a job a dead
    server leaves says. The process here ends its main thread while a job runs, as Streamlit's does on SIGTERM."""
    import textwrap

    from ebsd_core.jobs import SERVER_STOPPED

    script = textwrap.dedent(
        f"""
        import atexit, threading, time
        from pathlib import Path
        from ebsd_core.jobs import JobManager

        def simulate(ctx):
            while threading.main_thread().is_alive():
                time.sleep(0.01)
            raise RuntimeError("cannot schedule new futures after shutdown")

        atexit.register(time.sleep, 3)  # the server's own clean-up, during which the job still runs
        JobManager(Path({str(tmp_path / "jobs")!r})).submit("demo", "Demo", "a", simulate)
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1], check=True, timeout=120)
    (job,) = JobManager(tmp_path / "jobs").jobs_of("a")
    assert job.status == FAILED and job.error == SERVER_STOPPED and "traceback" not in job.result


def test_an_owner_has_one_job_queued_or_running_at_a_time(tmp_path):
    """Found on review: a second click on "Run the demo" queued a second demo, and the Train page showed only the
    second, so the first ran unseen and could not be cancelled, while a class waited behind both."""
    manager = JobManager(tmp_path / "jobs")
    release = threading.Event()
    first = manager.submit("demo", "Demo: simulate + train", "a", lambda ctx: release.wait(30) and {})
    with pytest.raises(BusyError, match="your job 'Demo: simulate \\+ train' is still (queued|running)") as refused:
        manager.submit("phasemap", "Demo map", "a", lambda ctx: {})
    assert refused.value.job.id == first
    other = manager.submit("demo", "another student's demo", "b", lambda ctx: {})  # queued behind it: not refused
    release.set()
    assert manager.wait(first).status == DONE and manager.wait(other).status == DONE
    assert [job.id for job in manager.jobs_of("a")] == [first]  # the refused one left no record
    again = manager.wait(manager.submit("phasemap", "Demo map", "a", lambda ctx: {}))  # once the first has ended
    assert again.status == DONE and manager.unfinished_job_of("a") is None


def test_a_job_started_again_waits_for_its_owners_other_job(tmp_path):
    manager = JobManager(tmp_path / "jobs")
    failed = manager.wait(manager.submit("train", "train", "a", lambda ctx: 1 / 0))
    release = threading.Event()
    running = manager.submit("phasemap", "map", "a", lambda ctx: release.wait(30) and {})
    with pytest.raises(BusyError) as refused:
        manager.restart(failed.id, lambda ctx: {})
    release.set()
    assert refused.value.job.id == running and manager.wait(running).status == DONE
    assert manager.wait(manager.restart(failed.id, lambda ctx: {})).status == DONE


def test_an_internal_error_of_a_job_is_one_line_on_the_page_and_its_trace_in_the_servers_log(tmp_path, caplog):
    """The trace was kept in the job's file alone: whoever keeps a lab's server, told "internal error: KeyError" by a
    user, found nothing in the server's log."""
    manager = JobManager(tmp_path / "jobs")

    def buggy(ctx):
        raise KeyError("a bug's key")

    job_id = manager.submit("train", "Train: 2 runs", "a", buggy)
    state = manager.wait(job_id)
    assert state.status == FAILED
    assert state.error == f"internal error: KeyError: \"a bug's key\" (the server's log has the details: job {job_id})"
    assert "KeyError" in state.result["traceback"]
    logged = [r for r in caplog.records if r.name == "ebsd_core.jobs"]
    assert [r.getMessage() for r in logged] == [f"job {job_id} (Train: 2 runs) failed with an internal error"]
    assert logged[0].levelno == logging.ERROR and logged[0].exc_info[0] is KeyError


def test_a_job_that_runs_out_of_memory_fails_with_what_to_try(tmp_path):
    """Not an 'internal error' with a traceback: a shared GPU that other programs fill is no bug of the job's."""
    import torch

    manager = JobManager(tmp_path / "jobs")

    def gpu_full(ctx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.")

    state = manager.wait(manager.submit("train", "train", "a", gpu_full))
    assert state.status == FAILED and state.error.startswith("the GPU ran out of memory (CUDA out of memory.")
    assert "traceback" not in state.result
    state = manager.wait(manager.submit("train", "train", "a", lambda ctx: torch.empty(2**50, dtype=torch.uint8)))
    assert state.status == FAILED and state.error.startswith("out of memory (") and "traceback" not in state.result


def test_a_second_server_on_the_same_jobs_folder_is_refused_and_fails_none_of_its_jobs(tmp_path):
    """Found by starting the dashboard twice with one working folder (``make app`` run twice by one account): the
    second failed the first's running job on disk ("the server stopped while this job was running") and offered to
    start it again while it still ran."""
    first = JobManager(tmp_path / "jobs")
    release = threading.Event()
    running = first.submit("phasemap", "a long map", "someone", lambda ctx: release.wait(60) and {})
    while first.get(running).status != RUNNING:
        time.sleep(0.01)
    second_server = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from ebsd_core.jobs import JobManager; " + (
        f"JobManager(__import__('pathlib').Path({str(tmp_path / 'jobs')!r}))"
    )
    refused = subprocess.run([sys.executable, "-c", second_server], capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert "another dashboard server (process " in refused.stderr
    assert f"keeps its sessions and jobs in {tmp_path}: stop it, or give this one a working folder of its own" in (
        refused.stderr
    )
    assert json.loads((tmp_path / "jobs" / f"{running}.json").read_text())["status"] == RUNNING
    release.set()
    first.wait(running)


def test_a_jobs_folder_that_cannot_be_locked_is_served_as_before(tmp_path, monkeypatch, caplog):
    """Some network mounts have no locks: a second server there goes unnoticed, which the log says once."""
    import errno

    from ebsd_core import jobs

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(jobs.fcntl, "flock", no_locks)
    manager = JobManager(tmp_path / "jobs")
    assert manager.wait(manager.submit("demo", "Demo", "someone", lambda ctx: {})).status == DONE
    assert f"{tmp_path / 'jobs'} cannot be locked (No locks available)" in caplog.text
