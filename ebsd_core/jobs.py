"""A small job queue for long work (training, simulation) off the caller's thread.

Jobs run on worker threads, at most ``max_concurrent`` at a time per manager
(one by default, so two trainings queue instead of fighting over one GPU), and
each owner (a browser session) has at most one queued or running: a second one
would hide the first from its page and make everyone else on a shared server
wait twice.
Each job's state is written atomically to ``<home>/jobs/<id>.json`` after every
change, so a page reload or a new browser session can find it again; jobs that
were running when the process died are reported as failed on the next start.
One server process at a time keeps its jobs in a folder (:func:`hold_jobs_folder`).
"""

from __future__ import annotations

import ast
import fcntl
import functools
import json
import logging
import os
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ebsd_core.atomic import atomic_path
from ebsd_core.errors import CancelledError, EbsdError, os_error_text, out_of_memory_text
from ebsd_core.memory import release_freed_memory
from ebsd_core.paths import fewshot_home

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
PERSIST_INTERVAL_S = 1.0  # progress-only updates (every training batch) reach disk at most this often
SERVER_STOPPED = "the server stopped while this job was running; start it again"
FINISHED = (DONE, FAILED, CANCELLED)
log = logging.getLogger(__name__)

JobFunction = Callable[["JobContext"], dict]


# CPython 3.11.0-3.11.7 and 3.12.0-3.12.1 keep ast.parse's recursion counter in state shared by all threads; when
# the garbage collector lets another thread parse in the middle of a parse, one of them raises "SystemError: AST
# constructor recursion depth mismatch" (python/cpython#106905, fixed in 3.11.8 and 3.12.2). Jobs import libraries
# that parse (lazy_loader reads kikuchipy's, orix's and scikit-image's stubs with ast.parse; matplotlib its rc
# values) while the server's script threads import and parse too: it failed the dashboard's demo in CI.
AST_PARSE_SHARES_STATE = sys.version_info[:3] < (3, 11, 8) or (3, 12) <= sys.version_info[:3] < (3, 12, 2)


def serialise_ast_parse() -> None:
    """On Pythons with the race above, let one thread at a time run :func:`ast.parse` in this process."""
    if not AST_PARSE_SHARES_STATE or getattr(ast.parse, "serialised", False):
        return
    parse, lock = ast.parse, threading.RLock()

    @functools.wraps(parse)
    def serialised(*args, **kwargs):
        with lock:
            return parse(*args, **kwargs)

    serialised.serialised = True
    ast.parse = serialised


def jobs_home() -> Path:
    return fewshot_home() / "jobs"


SERVER_LOCK = ".server.lock"
_held: dict[Path, object] = {}  # the jobs folders this process holds: their lock files, open while it lives


def hold_jobs_folder(home: Path) -> None:
    """Hold ``home`` for this process as long as it lives (a lock on a file in it, which the system lets go of when
    the process ends, killed too).

    A second server started on the same working folder (``make app`` run twice by one account, whose working folder
    is the same ``~/.ebsd_fewshot``) took the first's running jobs for ones a stopped server had left, failed them
    on disk and offered to start them again, and its clean-up would remove the folders they read.

    Raises
    ------
    EbsdError
        Where another live process holds it, saying which and what to do.
    """
    key = home.resolve()
    if key in _held:
        return
    handle = open(home / SERVER_LOCK, "a+")  # noqa: SIM115 - held open for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise EbsdError(
            f"another dashboard server ({holder}) keeps its sessions and jobs in {home.parent}: stop it, or give "
            "this one a working folder of its own (EBSD_FEWSHOT_HOME)"
        ) from None
    except OSError as exc:  # a file system without locks (some network mounts): served as before, unguarded
        log.warning(
            "%s cannot be locked (%s): a second server started on this working folder would not be noticed",
            home,
            os_error_text(exc),
        )
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()}")
    handle.flush()
    _held[key] = handle


@dataclass
class JobState:
    id: str
    kind: str
    owner: str
    title: str
    status: str = QUEUED
    progress: float = 0.0
    message: str = ""
    events: list[dict] = field(default_factory=list)
    result: dict = field(default_factory=dict)
    error: str = ""
    params: dict = field(default_factory=dict)  # JSON parameters, enough to start the job again
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None


def _copy(state: JobState) -> JobState:
    """A deep copy of ``state``, for callers outside the manager's lock."""
    return JobState(**json.loads(json.dumps(asdict(state))))


class BusyError(EbsdError):
    """An owner asked for a job while one of its own is queued or running (``job``: that one)."""

    def __init__(self, job: JobState) -> None:
        self.job = job
        super().__init__(
            f"your job {job.title!r} is still {job.status}: wait for it to end or cancel it, then start this one "
            "(one job per session at a time, so that everyone on this server gets a turn)"
        )


class JobContext:
    """What a running job sees: progress reporting and the cancel flag."""

    def __init__(self, manager: JobManager, job_id: str) -> None:
        self._manager = manager
        self.job_id = job_id
        self.cancel_requested = threading.Event()

    def report(self, fraction: float, message: str = "", event: dict | None = None) -> None:
        self._manager._update(self.job_id, progress=float(fraction), message=message, event=event)

    def should_stop(self) -> bool:
        return self.cancel_requested.is_set()


class JobManager:
    """Queue, run and persist jobs."""

    def __init__(self, home: Path | None = None, max_concurrent: int = 1) -> None:
        serialise_ast_parse()  # before the first worker thread
        self.home = home or jobs_home()
        self.home.mkdir(parents=True, exist_ok=True)
        hold_jobs_folder(self.home)
        self._lock = threading.RLock()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._jobs: dict[str, JobState] = {}
        self._contexts: dict[str, JobContext] = {}
        self._last_persist: dict[str, float] = {}
        self._recover()

    def _path(self, job_id: str) -> Path:
        return self.home / f"{job_id}.json"

    def _persist(self, state: JobState) -> None:
        with atomic_path(self._path(state.id)) as tmp:
            tmp.write_text(json.dumps(asdict(state)))

    def _recover(self) -> None:
        """Load persisted jobs; those left queued/running by a dead process are failed."""
        for path in self.home.glob("*.json"):
            try:
                state = JobState(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if state.status not in FINISHED:
                state.status = FAILED
                state.error = SERVER_STOPPED
                state.finished = time.time()
                self._persist(state)
            self._jobs[state.id] = state

    def submit(self, kind: str, title: str, owner: str, function: JobFunction, params: dict | None = None) -> str:
        """Queue ``function`` as a job of ``owner``; returns its id.

        Raises
        ------
        BusyError
            If ``owner`` has a job queued or running.
        """
        job_id = uuid.uuid4().hex[:12]
        state = JobState(id=job_id, kind=kind, owner=owner, title=title, params=dict(params or {}))
        context = JobContext(self, job_id)
        with self._lock:
            if unfinished := self.unfinished_job_of(owner):
                raise BusyError(unfinished)
            self._jobs[job_id] = state
            self._contexts[job_id] = context
            self._persist(state)
        thread = threading.Thread(target=self._run, args=(job_id, function, context), daemon=True, name=f"job-{job_id}")
        thread.start()
        return job_id

    def _run(self, job_id: str, function: JobFunction, context: JobContext) -> None:
        with self._slots:
            with self._lock:  # cancel() sees it queued or running, never between
                if context.should_stop():
                    return  # cancel() has marked it
                self._update(job_id, status=RUNNING, started=time.time(), message="started")
            try:
                result = function(context)
                self._update(
                    job_id, status=DONE, progress=1.0, result=result or {}, finished=time.time(), message="done"
                )
            except CancelledError as exc:
                self._update(job_id, status=CANCELLED, message=str(exc), finished=time.time())
            except EbsdError as exc:
                self._update(job_id, status=FAILED, error=str(exc), finished=time.time())
            except OSError as exc:  # a file that went away or a permission taken away: the user can act on it
                self._update(job_id, status=FAILED, error=os_error_text(exc), finished=time.time())
            except Exception as exc:  # a bug (keep the trace in the job file, show one line), or memory ran out
                if not threading.main_thread().is_alive():
                    # the server is ending (a service stopped, Ctrl-C) and the libraries' thread pools with it: a
                    # demo stopped while simulating said "internal error: RuntimeError: cannot schedule new futures
                    # after shutdown"; said as a job that a dead server left behind is
                    self._update(job_id, status=FAILED, error=SERVER_STOPPED, finished=time.time())
                    return
                if memory := out_of_memory_text(exc):  # the job asked for more than there was: no bug
                    self._update(job_id, status=FAILED, error=memory, finished=time.time())
                    return
                # in the server's log too, where whoever keeps a lab's server looks when a user reports it
                log.error("job %s (%s) failed with an internal error", job_id, self._jobs[job_id].title, exc_info=True)
                self._update(
                    job_id,
                    status=FAILED,
                    error=f"internal error: {exc.__class__.__name__}: {exc} (the server's log has the details: job "
                    f"{job_id})",
                    result={"traceback": traceback.format_exc()},
                    finished=time.time(),
                )
            finally:
                release_freed_memory()  # what the job's batches kept for reuse goes back to the system

    def _update(self, job_id: str, event: dict | None = None, **changes) -> None:
        with self._lock:
            state = self._jobs[job_id]
            for key, value in changes.items():
                setattr(state, key, value)
            if event:
                state.events.append(event)
            progress_only = event is None and set(changes) <= {"progress", "message"}
            now = time.monotonic()
            if not progress_only or now - self._last_persist.get(job_id, 0.0) >= PERSIST_INTERVAL_S:
                self._persist(state)
                self._last_persist[job_id] = now

    def restart(self, job_id: str, function: JobFunction) -> str:
        """Start a finished (failed or cancelled) job again with its saved parameters, as a new job."""
        state = self.get(job_id)
        if state is None or state.status not in FINISHED:
            raise EbsdError(f"job {job_id} is not finished, so it cannot be started again")
        title = state.title if state.title.endswith("(restarted)") else f"{state.title} (restarted)"
        return self.submit(state.kind, title, state.owner, function, state.params)

    def get(self, job_id: str) -> JobState | None:
        with self._lock:
            state = self._jobs.get(job_id)
            return None if state is None else _copy(state)

    def unfinished_job_of(self, owner: str) -> JobState | None:
        """The job of ``owner`` that is queued or running, if any (there is one at most)."""
        with self._lock:
            return next((_copy(s) for s in self.jobs_of(owner) if s.status not in FINISHED), None)

    def working_owners(self) -> set[str]:
        """The owners with a job queued or running."""
        with self._lock:
            return {s.owner for s in self._jobs.values() if s.status not in FINISHED}

    def jobs_of(self, owner: str) -> list[JobState]:
        with self._lock:
            return sorted((s for s in self._jobs.values() if s.owner == owner), key=lambda s: s.created, reverse=True)

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop at its next check; a queued one is cancelled at once (it would otherwise
        look queued until the job before it ends)."""
        with self._lock:
            context = self._contexts.get(job_id)
            if context is None:
                return
            context.cancel_requested.set()
            if self._jobs[job_id].status == QUEUED:
                self._update(job_id, status=CANCELLED, message="cancelled before it started", finished=time.time())

    def forget(self, owners: Iterable[str]) -> list[str]:
        """Drop the finished jobs of these owners (sessions removed for idleness) from memory and disk; their files
        and demo models are gone, so a bookmarked link shows a fresh start instead. Returns the ids dropped."""
        owners = set(owners)
        with self._lock:
            dropped = [s.id for s in self._jobs.values() if s.owner in owners and s.status in FINISHED]
            for job_id in dropped:
                del self._jobs[job_id]
                self._contexts.pop(job_id, None)
                self._last_persist.pop(job_id, None)
                self._path(job_id).unlink(missing_ok=True)
        return dropped

    def occupancy(self) -> tuple[int, int]:
        """How many jobs of any owner are running and how many are queued."""
        with self._lock:
            statuses = [s.status for s in self._jobs.values()]
        return statuses.count(RUNNING), statuses.count(QUEUED)

    def jobs_ahead(self, job_id: str) -> tuple[int, int]:
        """For a queued job: how many jobs of any owner are running, and how many were queued before it.

        Both are (0, 0) once the job runs or ends. Queued jobs take the free slot in about the order they came."""
        with self._lock:
            state = self._jobs.get(job_id)
            if state is None or state.status != QUEUED:
                return 0, 0
            others = [s for s in self._jobs.values() if s.id != job_id]
            running = sum(s.status == RUNNING for s in others)
            earlier = sum(s.status == QUEUED and s.created <= state.created for s in others)
            return running, earlier

    def wait(self, job_id: str, timeout: float = 600.0) -> JobState:
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = self.get(job_id)
            if state is not None and state.status in FINISHED:
                return state
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} did not finish in {timeout} s")
