"""Shared helpers of the dashboard pages: session state, cached engine objects, plots.

Pages only lay out widgets and call ebsd_core; everything long runs as a job.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import glob
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from ebsd_core.atomic import atomic_path
from ebsd_core.errors import EbsdError, InputError, os_error_text
from ebsd_core.io import nordif
from ebsd_core.io.images import is_image_name
from ebsd_core.jobs import FINISHED, QUEUED, BusyError, JobFunction, JobManager, JobState, jobs_home
from ebsd_core.memory import release_freed_memory
from ebsd_core.paths import (
    DATA_ROOT_VARIABLE,
    FEWSHOT_HOME_VARIABLE,
    MODEL_STORE_VARIABLE,
    default_store,
    fewshot_home,
    printable_path,
    untextual_folder_problem,
)
from ebsd_core.phases import CATALOGUE, M3M_SPACE_GROUPS
from ebsd_core.wording import counted

# what the uploaders take: every format the engine reads patterns from (ebsd_core.io.readers)
SCAN_FILE_TYPES = ["h5", "hdf5", "h5ebsd", "h5oina", "up1", "up2", "ebsp", "dat", "zip"]
NORDIF_SETTING_TYPES = ["txt"]  # a NORDIF Pattern.dat is read with the Setting.txt uploaded beside it
IMAGE_FILE_TYPES = ["png", "tif", "tiff", "bmp", "jpg", "jpeg"]
#: What an uploaded folder gives of its files (:func:`folder_upload`): images, and a NORDIF acquisition's Pattern.dat
#: and Setting.txt (not a folder's scan files, of which one at a time is read: they go in the uploader of files).
FOLDER_FILE_TYPES = [*IMAGE_FILE_TYPES, "dat", *NORDIF_SETTING_TYPES]


@st.cache_resource
def job_manager() -> JobManager:
    """One queue per server process: jobs survive reloads and page switches."""
    return JobManager(jobs_home(), max_concurrent=1)


#: The page that shows each kind of job (its progress and Cancel button) and the session key naming the job it shows.
JOB_PAGES = {
    "demo": ("pages/train.py", "train_job"),
    "train": ("pages/train.py", "train_job"),
    "prior": ("pages/train.py", "train_job"),
    "phasemap": ("pages/phasemap.py", "map_job"),
    "simulate": ("pages/data.py", "simulate_job"),
    "score": ("pages/results.py", "score_job"),
}


def start_job(kind: str, title: str, function: JobFunction, params: dict | None = None) -> str | None:
    """Queue a job of this session and return its id; None when the session has a job queued or running, which
    is then named, with a link to the page that shows it."""
    return _unless_busy(lambda: job_manager().submit(kind, title, session_id(), function, params))


def restart_job(job_id: str, function: JobFunction) -> str | None:
    """Start a finished job of this session again (a new id); None, as :func:`start_job`, while another runs."""
    return _unless_busy(lambda: job_manager().restart(job_id, function))


def start_again_button(key: str) -> bool:
    """A "Start again" button for a failed or cancelled job; while the session has another job queued or running,
    a note saying so instead (a refusal shown inside a page's job panel would be gone at its next refresh)."""
    own = job_manager().unfinished_job_of(session_id())
    if own is not None:
        st.caption(f"It can start again once your job {own.title!r} has ended.")
        return False
    return st.button("Start again", key=key)


#: Which of a page's jobs :func:`latest_job_shown_on` picks, by their state.
JOB_STATES = {
    "any": lambda job: True,
    "unfinished": lambda job: job.status not in FINISHED,
    "done": lambda job: job.status == "done",
}


def latest_job_shown_on(page: str, which: str = "any") -> str | None:
    """This session's latest job of the kinds ``page`` shows, or None: what the page shows after a browser reload,
    which empties the session state. ``which`` (:data:`JOB_STATES`): any job, only one still queued or running (a
    finished one would apply its result again, over what the user chose since), or only one that finished well."""
    kinds = {kind for kind, (shown_on, _) in JOB_PAGES.items() if shown_on == page}
    jobs = [job for job in job_manager().jobs_of(session_id()) if job.kind in kinds]
    return next((job.id for job in jobs if JOB_STATES[which](job)), None)


def _unless_busy(submit) -> str | None:
    try:
        return submit()
    except BusyError as exc:
        st.error(for_the_user(str(exc)))
        link_to_job(exc.job)
        return None


def link_to_job(job: JobState) -> None:
    """A link to the page that shows ``job``, which that page then shows (even if a later click had hidden it)."""
    if job.kind in JOB_PAGES:
        page, key = JOB_PAGES[job.kind]
        st.session_state[key] = job.id
        st.page_link(page, label=f"See {job.title}", icon=":material/pending:")


def queue_note(job_id: str) -> str | None:
    """What a queued job waits for, in words (the queue is shared by everyone on this server); None once it runs."""
    manager = job_manager()
    state = manager.get(job_id)
    if state is None or state.status != QUEUED:
        return None
    running, earlier = manager.jobs_ahead(job_id)
    ahead = [f"{counted(running, 'job')} {'is' if running == 1 else 'are'} running"] if running else []
    ahead += [f"{counted(earlier, 'job')} {'was' if earlier == 1 else 'were'} queued before it"] if earlier else []
    if not ahead:
        return "Queued: starting."
    return (
        f"Queued: the compute device runs one job at a time, and {' and '.join(ahead)}. "
        "It starts by itself; you can leave this page."
    )


def show_unfinished_job(
    job_id: str, state: JobState, cancel_key: str, label: str, details: Callable[[], None] | None = None
) -> None:
    """A queued or running job: what it waits for, its progress bar, ``details`` (e.g. curves) and Cancel."""
    if note := queue_note(job_id):
        st.info(note)
    st.progress(min(1.0, state.progress), label)
    if details is not None:
        details()
    if state.status not in FINISHED and st.button("Cancel", key=cancel_key):
        job_manager().cancel(job_id)


@st.fragment(run_every=1.0)
def _live_job(job_id: str, draw: Callable[[str], None]) -> None:
    state = job_manager().get(job_id)
    ended = state is not None and state.status in FINISHED  # None: forgotten while shown, which draw() says
    if ended:
        st.session_state.setdefault("jobs_drawn_ended", set()).add(job_id)
    draw(job_id)  # an ended job's result is applied here, where the page's widgets may still be set
    if ended:
        st.rerun(scope="app")  # from now on drawn by the page itself, and no longer every second


def show_job(job_id: str, draw: Callable[[str], None]) -> None:
    """The page's panel of a job, ``draw(job_id)``: redrawn every second while the job is queued or running, and
    once more when it has ended, when it applies the job's result; after that, drawn with the page. A fragment
    polling an ended job would redraw it (its curves too) every second for as long as the page stays open: 3 % of a
    core per open tab, taken from the jobs that run. A job forgotten with its idle session is drawn once (draw()
    says so)."""
    if job_id in st.session_state.get("jobs_drawn_ended", ()) or job_manager().get(job_id) is None:
        draw(job_id)
    else:
        _live_job(job_id, draw)


def _secret_section(name: str) -> dict:
    try:
        return dict(st.secrets.get(name, {}))
    except (FileNotFoundError, KeyError, AttributeError, ValueError):  # no secrets file: access control is off
        return {}


def enter_page() -> None:
    """The first call of every page: the login, and the router when Streamlit skipped it.

    Until some session of a freshly started server has run ``app.py`` (and so called
    ``st.navigation``), Streamlit treats the ``pages/`` folder as an old-style multipage app:
    a deep link such as a bookmarked ``/results`` then runs the page alone, without the
    router and its login. Such a run turns that fallback off and starts again through
    ``app.py``, which asks for the login and then opens the same page. The login is asked
    here as well, should a Streamlit version skip the router some other way.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()
    require_access()


def _password_hash() -> str | None:
    """The lab's shared password hash (``[access] password_hash``), where access is by password; else None."""
    if _secret_section("auth"):
        return None
    stored = _secret_section("access").get("password_hash")
    return str(stored) if stored else None


def has_access() -> bool:
    """Whether this visitor may use the dashboard (see :func:`require_access`): logged in, or let in with the password
    in this session or, within :data:`~ebsd_core.access.KEEP_IN_DAYS`, in this browser (its cookie)."""
    from ebsd_core.access import KEEP_IN_COOKIE, keeps_in

    if _secret_section("auth"):
        return bool(st.user.is_logged_in)
    stored = _password_hash()
    if not stored or st.session_state.get("access_granted"):
        return True
    if not st.session_state.get("access_locked") and keeps_in(st.context.cookies.get(KEEP_IN_COOKIE) or "", stored):
        st.session_state.access_granted = True
        return True
    return False


def _write_keep_in_cookie() -> None:
    """Write (or, with an empty token, remove) the cookie that keeps this browser in, as asked on the run before.

    Streamlit offers no way to set a cookie from a script: a script on the page does it. Its path is the
    dashboard's (``server.baseUrlPath``), so that other sites under the same host name never get it."""
    from ebsd_core.access import KEEP_IN_COOKIE

    if (asked := st.session_state.pop("keep_in_cookie", None)) is None:
        return
    token, max_age = asked
    base = str(st.get_option("server.baseUrlPath") or "").strip("/")
    cookie = f"{KEEP_IN_COOKIE}={token}; Max-Age={max_age}; Path=/{base}; SameSite=Strict"
    script = f"document.cookie = {json.dumps(cookie)} + (location.protocol === 'https:' ? '; Secure' : '');"
    # this tab's own lock: its watcher (below) does not reload it, as it asks for the password already
    script += f" window.ebsdKeepInWatchOff = {json.dumps(not token)};"
    st.html(f"<script>{script}</script>", unsafe_allow_javascript=True)


def _watch_keep_in_cookie() -> None:
    """Reload this tab once the cookie that keeps the browser in is gone: another tab's **Lock this browser** then
    asks for the password in every tab of the browser, not only in those reloaded since (on a shared computer at the
    microscope, the next person could carry on in a tab left open). It checks every 2 s and when the tab is shown
    again, and only after it has seen the cookie (a browser that refuses cookies never has one)."""
    from ebsd_core.access import KEEP_IN_COOKIE

    script = f"""(() => {{
  if (window.ebsdKeepInWatch) return;
  const name = {json.dumps(KEEP_IN_COOKIE + "=")};
  let seen = false;
  const check = () => {{
    if (window.ebsdKeepInWatchOff) return;
    const kept = document.cookie.split("; ").some((c) => c.startsWith(name) && c.length > name.length);
    if (kept) seen = true;
    else if (seen) {{ clearInterval(window.ebsdKeepInWatch); window.location.reload(); }}
  }};
  window.ebsdKeepInWatch = setInterval(check, 2000);
  document.addEventListener("visibilitychange", check);
  check();
}})();"""
    st.sidebar.html(f"<script>{script}</script>", unsafe_allow_javascript=True)


def lock_button() -> None:
    """In the sidebar: log out where visitors log in, or, where access is by password, ask for it again in this
    browser (a shared computer at the microscope)."""
    if _secret_section("auth"):
        if st.user.is_logged_in:
            st.sidebar.button("Log out", icon=":material/logout:", on_click=st.logout, help="Leave this browser.")
        return
    if not _password_hash():
        return
    if st.sidebar.button(
        "Lock this browser",
        icon=":material/lock:",
        help="Ask for the lab password again here, also after a reload or in a new tab (on a shared computer).",
    ):
        st.session_state.access_granted = False
        st.session_state.access_locked = True  # this session still holds the cookie it started with
        st.session_state.keep_in_cookie = ("", 0)
        st.rerun()
    _watch_keep_in_cookie()  # under the button: the sidebar's last element, whose gap shows nowhere


def require_access() -> None:
    """Stop the script until the visitor is allowed in.

    * ``[auth]`` in ``.streamlit/secrets.toml``: Streamlit's OIDC login (``st.login``).
    * ``[access] password_hash``: one shared password for a small lab (hash from
      ``python -m ebsd_core hash-password``).
    * neither (``make app`` on localhost): open.
    """
    _write_keep_in_cookie()
    if has_access():
        return
    if _secret_section("auth"):
        st.title("EBSD few-shot classifier")
        st.button("Log in", on_click=st.login, type="primary")
        st.stop()
    from ebsd_core.access import KEEP_IN_DAYS, keep_in_token, verify_password

    stored = str(_password_hash())
    st.title("EBSD few-shot classifier")
    with st.form("login"):
        password = st.text_input("Lab password", type="password")
        keep = st.checkbox(
            f"Keep this browser in for {KEEP_IN_DAYS} days",
            value=True,
            help="A reload or a new tab is not asked again. On a shared computer, leave it unticked, or use "
            "**Lock this browser** in the sidebar when done.",
        )
        if st.form_submit_button("Enter", type="primary"):
            if verify_password(password, stored):
                st.session_state.access_granted = True
                st.session_state.access_locked = False
                if keep:
                    st.session_state.keep_in_cookie = (keep_in_token(stored), KEEP_IN_DAYS * 86400)
                st.rerun()
            time.sleep(1.0)  # slows down guessing
            st.error("Wrong password.")
    st.stop()


def default_name(prefix: str) -> str:
    """A time-stamped default for a name field, the same on every rerun until :func:`renew_default_name`.

    A default that changed every second would give the text field a new identity on the rerun
    that submits its form, and Streamlit would then drop what the user typed.
    """
    return st.session_state.setdefault(f"default_name_{prefix}", f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}")


def renew_default_name(prefix: str) -> None:
    """After a job took the name: the next form offers a new one, in a new field (:func:`name_input`)."""
    st.session_state.pop(f"default_name_{prefix}", None)
    st.session_state.get(KEPT_WIDGETS, {}).pop(_name_key(prefix), None)
    st.session_state[f"name_renewals_{prefix}"] = st.session_state.get(f"name_renewals_{prefix}", 0) + 1


def _name_key(prefix: str) -> str:
    return f"name:{prefix}:{st.session_state.get(f'name_renewals_{prefix}', 0)}"


def name_input(label: str, prefix: str, where=st) -> str:
    """A name field offering :func:`default_name`; what was typed in it stays after a visit to another page.

    Its key changes when the name is renewed (:func:`renew_default_name`): under the old key the browser would give
    back the name a job has just taken.
    """
    key = _name_key(prefix)
    keep_hidden_widgets(key)
    return where.text_input(label, default_name(prefix), key=key)


def login_identity() -> str | None:
    """With an identity provider (``[auth]``): a private id for the logged-in person, from the provider's issuer
    and subject, so that their uploads, datasets and jobs follow them to any browser. None otherwise."""
    if not _secret_section("auth") or not st.user.is_logged_in:
        return None
    subject = st.user.get("sub") or st.user.get("email")
    if not subject:
        return None
    return hashlib.sha256(f"{st.user.get('iss', '')}\n{subject}".encode()).hexdigest()[:32]


def session_id() -> str:
    """This browser session's private id: the login's (:func:`login_identity`) with an identity provider;
    otherwise kept in the URL so that a reload finds its data and jobs again.

    The URL's id is a random 128-bit token: knowing it is what grants access, as with a
    private link.
    """
    identity = login_identity()
    if identity is not None:
        if st.session_state.get("session_id") != identity:  # another person logged in at this browser tab
            for key in list(st.session_state):
                del st.session_state[key]  # nothing of the previous one's work stays in view
            st.session_state.session_id = identity
            _note_if_removed(identity)
        if "sid" in st.query_params:
            del st.query_params["sid"]
        return identity
    if "session_id" not in st.session_state:
        from_url = st.query_params.get("sid", "")
        valid = len(from_url) == 32 and all(c in "0123456789abcdef" for c in from_url)
        st.session_state.session_id = from_url if valid else uuid.uuid4().hex
        if valid:
            _note_if_removed(from_url)
    if st.query_params.get("sid") != st.session_state.session_id:
        st.query_params["sid"] = st.session_state.session_id
    return st.session_state.session_id


def _note_if_removed(session: str) -> None:
    """Where the work of a returning session (a bookmarked link, a login) was removed for idleness, keep when, for
    :func:`removed_session_notice`."""
    from ebsd_core.housekeeping import session_removed_at

    if not (fewshot_home() / "sessions" / session).exists() and (when := session_removed_at(session)):
        st.session_state.session_removed_at = when


def removed_session_notice() -> None:
    """Once, on the first page of a returning session whose work was removed for idleness: say so, and when. Before,
    a link bookmarked on a Friday opened on the Monday as a new session, with no word of the scan uploaded to it."""
    from ebsd_core.housekeeping import SESSION_KEEP_VARIABLE, session_keep_hours

    if (when := st.session_state.pop("session_removed_at", None)) is None:
        return
    st.info(
        f"The work of this session (its uploads, datasets, maps and jobs) was removed on "
        f"{time.strftime('%Y-%m-%d at %H:%M %Z', time.localtime(when))}, unused for {session_keep_hours():g} hours "
        f"(the server's {SESSION_KEEP_VARIABLE}). Models saved in the store stay (**Results**); those its demos "
        "trained were taken out of the lists with it.",
        icon=":material/history:",
    )


@st.cache_resource(show_spinner=False)
def _tabs_of_sessions() -> tuple[threading.Lock, dict[str, set[str]]]:
    """Per server process: the Streamlit sessions (browser tabs) that have shown each of our sessions."""
    return threading.Lock(), {}


def open_tabs(session: str, tab: str | None) -> int:
    """How many browser tabs that are still connected show ``session``, ``tab`` (Streamlit's id of this one) among
    them; 1 where that cannot be told (no server, as under AppTest)."""
    from streamlit.runtime import Runtime

    if tab is None or not Runtime.exists():
        return 1
    is_open = getattr(Runtime.instance(), "is_active_session", None)  # a test checks that Streamlit still has it
    if is_open is None:
        return 1
    lock, tabs = _tabs_of_sessions()
    with lock:
        for known, shown in list(tabs.items()):  # closed tabs, and sessions no tab shows any more, forgotten
            shown.intersection_update({t for t in shown if is_open(t)})
            if not shown and known != session:
                del tabs[known]
        tabs.setdefault(session, set()).add(tab)
        return len(tabs[session])


def shared_session_notice() -> None:
    """Where this session's private link is open in more than one browser tab, say so in the sidebar, with a way to a
    session of one's own. A teacher who pasted the address of their tab into a class's chat gave every student the
    same session: one job at a time for all of them, each one's upload replacing the others' choices."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if login_identity() is not None:  # one person's browsers, on purpose
        return
    ctx = get_script_run_ctx()
    tabs = open_tabs(session_id(), ctx.session_id if ctx else None)
    if tabs > 1:
        st.sidebar.info(
            f"This session is open in {tabs} browser tabs, sharing its uploads, datasets and jobs: its link (the "
            "`sid` in the address) was opened again, or passed on. [Start a session of your own](./) (a new link).",
            icon=":material/group:",
        )


def session_dir() -> Path:
    """A folder private to this browser session (uploads, datasets)."""
    folder = fewshot_home() / "sessions" / session_id()
    folder.mkdir(parents=True, exist_ok=True)
    os.utime(folder)  # activity keeps the folder from ageing out (ebsd_core.housekeeping)
    return folder


def in_another_sessions_folder(path: str | Path) -> bool:
    """Whether ``path`` lies in another browser session's private folder (its uploads and datasets)."""
    sessions = (fewshot_home() / "sessions").resolve()
    try:
        relative = Path(path).resolve().relative_to(sessions)
    except ValueError:
        return False
    return bool(relative.parts) and relative.parts[0] != session_id()


@st.cache_data(max_entries=32, show_spinner=False)
def _sha256(path: str, modified: float) -> str:
    from ebsd_core.store import file_sha256

    return file_sha256(Path(path))


def test_set(generator: str | None) -> tuple[str, str]:
    """How the pages name a model's test set, by what made its dataset (``card.training["dataset"]``), and what a
    score on it means: (name, explanation)."""
    from ebsd_core.assemble import MAP_REGIONS_CAUTION, SINGLE_PHASE_SCANS_CAUTION

    if generator == "map regions":  # its test patterns: the same grains as its shots
        return "Other points of its regions", MAP_REGIONS_CAUTION
    if generator == "single-phase scans":  # the same scans as its shots
        return "Other points of its scans", SINGLE_PHASE_SCANS_CAUTION
    return "Unseen orientations", "Patterns of the training materials in orientations the model never saw."


def trained_on_here(card) -> str | None:
    """Where this session finds the dataset a model was trained on: its own dataset when that is a copy of it (the
    Home page's latest demo of another session: one source of those patterns on Explain, and one that outlives the
    other session's files), else the file the card names while it is there; None when neither."""
    recorded = card.training.get("dataset_path") or ""
    own = active_dataset_path()
    if own is not None and recorded and Path(recorded).resolve() == own.resolve():
        return str(own)
    digest = card.training.get("dataset_sha256")
    if own is not None and digest and _sha256(str(own), own.stat().st_mtime) == digest:
        return str(own)
    return recorded if recorded and Path(recorded).exists() else None


def new_session_file(stem: str, suffix: str = ".h5") -> Path:
    """A new file in this session's folder. A dataset made again must not replace the one a model was trained on:
    the model's card names that file, and Results, Explain and a restarted job read it."""
    return session_dir() / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}{suffix}"


@st.cache_data(ttl=30, show_spinner=False)
def _working_folder_problem(folder: str) -> str | None:
    from ebsd_core.home_folder import working_folder_problem

    return working_folder_problem(Path(folder))


def require_working_folder() -> None:
    """Stop with one line where the server cannot write in its working folder (``EBSD_FEWSHOT_HOME``), or another
    server keeps its jobs there (:func:`ebsd_core.jobs.hold_jobs_folder`): sessions, uploads and jobs live there, and
    every page would end in a traceback, or fail the other's jobs. Where its path, or the model store's, is not UTF-8
    text, it says so (:func:`ebsd_core.paths.untextual_folder_problem`)."""
    home = fewshot_home()
    problem = untextual_folder_problem(home, "working folder", FEWSHOT_HOME_VARIABLE) or untextual_folder_problem(
        default_store(), "model store", MODEL_STORE_VARIABLE
    )
    if problem or (problem := _working_folder_problem(str(home))):
        st.error(problem, icon=":material/folder_off:")
        st.stop()
    try:
        job_manager()
    except EbsdError as exc:  # tried again at the next click: the other server may have stopped since
        show_error(exc)
        st.stop()


@st.cache_data(ttl=30, show_spinner=False)
def _store_write_problem(store: str) -> str | None:
    from ebsd_core.store import store_write_problem

    return store_write_problem(Path(store))


def store_write_problem() -> str | None:
    """Why no model can be saved, added or deleted on this server (:func:`ebsd_core.store.store_write_problem`),
    looked at most every 30 s; None where they can."""
    return _store_write_problem(str(default_store()))


def read_only_store_warning() -> bool:
    """Where no model can be saved on this server (:func:`store_write_problem`), say so as a warning; whether it did,
    for the page to disable what would save one (not fail after the work)."""
    problem = store_write_problem()
    if problem:
        st.warning(problem, icon=":material/lock:")
    return problem is not None


@st.cache_resource(ttl=3600, show_spinner=False)
def housekeeping() -> float:
    """At most hourly per server process: remove idle sessions' files and demo models, and stale partial saves."""
    from ebsd_core.housekeeping import cleanup_partial_saves, cleanup_sessions, retire_demo_models

    removed = cleanup_sessions(working=job_manager().working_owners())
    retire_demo_models(removed)  # reads the removed sessions' job records: before they are forgotten
    job_manager().forget(removed)
    cleanup_partial_saves(default_store())
    return time.time()


@st.cache_resource(ttl=60, show_spinner=False)
def release_memory_of_ended_sessions() -> int:
    """At most every minute per server process: hand back to the system the memory of the browser sessions that
    Streamlit has ended, their uploads above all; how many sessions' uploads Streamlit still held.

    Streamlit keeps a session's uploads in the server's memory, a session whose tab was closed is kept a while for it
    to reconnect and then only dropped, never shut down (streamlit/streamlit#12607), and `make app`'s memory settings
    keep what is freed for reuse. Three scans of 600 MB uploaded on the Data page, in three sessions whose tab was
    then closed, held the server at 3.3 GB for good (0.9 GB before them); with this, the next visit after their time
    to reconnect found it back at 0.9 GB (``bench/upload_memory.py``). Every upload is saved in its session's folder
    when it arrives, so nothing needs Streamlit's copy after. A full collection costs about 0.25 s (torch, timm and
    kikuchipy in the heap), once a minute at most; only Streamlit's own in-memory managers are looked at."""
    from streamlit.runtime import Runtime

    if not Runtime.exists():
        return 0
    runtime = Runtime.instance()
    uploads, sessions = runtime.uploaded_file_mgr, getattr(runtime, "_session_mgr", None)
    stored = getattr(getattr(sessions, "_session_storage", None), "_cache", None)
    if hasattr(stored, "expire"):  # the sessions whose time to reconnect is over, dropped now with what they hold
        stored.expire()
    held = getattr(uploads, "file_storage", None)
    ended = []
    if isinstance(held, dict) and hasattr(sessions, "list_sessions"):
        known = {info.session.id for info in sessions.list_sessions()}
        ended = [session for session in list(held) if session not in known]
        for session in ended:
            uploads.remove_session_files(session)
    gc.collect()  # a dropped session's objects refer to each other; Streamlit's collection after each run is off
    release_freed_memory()
    return len(ended)


def data_root() -> Path | None:
    """Server-side folder users may pick scans from (``EBSD_DATA_ROOT``), or None."""
    root = os.environ.get(DATA_ROOT_VARIABLE)
    return Path(root).resolve() if root else None


def shown_name(path: str | Path) -> str:
    """A file as users know it: by its path under the data root (sample folders' scans often share a file name,
    ``patterns.h5``), else by the name it was uploaded under, else by its name."""
    root, path = data_root(), Path(path)
    return printable_path(path.relative_to(root) if root and path.is_relative_to(root) else uploaded_name(path))


MAX_LISTED_SOURCES = 1000  # a choice among more is no choice, and each rerun would send them all to the browser


def server_path_input(label: str, purpose: str, key: str) -> Path | None:
    """A path typed by the user under ``EBSD_DATA_ROOT``, confined to it; None until a valid one is given. What is
    typed (and chosen of a folder) is kept while another page or a choice hides it (:func:`keep_hidden_widgets`)."""
    root = data_root()
    if root is None:
        st.info(f"Set `EBSD_DATA_ROOT` on the server to let users {purpose} by path instead of uploading.")
        return None
    from ebsd_core.paths import data_root_problem, resolve_under_root

    if problem := data_root_problem(root):
        st.error(problem)
        return None
    keep_hidden_widgets(key, f"{key}-found")
    relative = st.text_input(
        f"{label} under {root}", key=key, placeholder="a file, or a folder to list what it holds (. for all of it)"
    )
    if not relative:
        return None
    try:
        path = resolve_under_root(root, relative)
        found = _sources_under(str(path), path.stat().st_mtime, str(root)) if path.is_dir() else []
        if not found:  # a file, or a folder read as one source
            return path
        if len(found) == 1:  # a sample's folder with its one scan: nothing to choose
            st.caption(printable_path(f"Reading {found[0]} in {path.name}."))
            return resolve_under_root(root, str(Path(relative) / found[0]))
        if len(found) > MAX_LISTED_SOURCES:
            st.caption(
                f"The first {MAX_LISTED_SOURCES:,} are listed: type a folder further in to choose among the others."
            )
        choice = st.selectbox(
            f"{path.name} holds {counted(len(found), 'source')} of patterns (scan files, folders of images): read",
            found[:MAX_LISTED_SOURCES],
            format_func=printable_path,  # a name that is not UTF-8 (from an old Windows share) cannot be sent as it is
            index=None,
            placeholder="choose one",
            key=f"{key}-found",
        )
        # resolved again: a link in the tree must not lead out of the root
        return None if choice is None else resolve_under_root(root, str(Path(relative) / choice))
    except (EbsdError, OSError) as exc:  # OSError: a folder the server may not list
        show_error(exc)
        return None


@st.cache_data(ttl=60, max_entries=16, show_spinner="Looking through the folder")
def _sources_under(folder: str, modified: float, root: str) -> list[str]:
    """The sources a folder on the server holds, each by itself (as ``predict`` reads them), by their paths in it;
    empty when the folder is one source. Links that lead out of ``root`` are left out, as they would be refused.
    Kept a minute: a lab's data tree can hold many thousands of files."""
    from ebsd_core.io.readers import sources_in_folder

    inside = [found for found in sources_in_folder(Path(folder), Path(root)) if found.resolve().is_relative_to(root)]
    return [str(found.relative_to(folder)) for found in inside]


# What a browser reload, which empties the session state, must not lose: kept in the session folder (also read by
# the session's other tabs)
CURRENT_MODEL_FILE = "current_model.txt"
ACTIVE_DATASET_FILE = "active_dataset.txt"


def kept(name: str) -> str | None:
    """The text the session keeps in its folder under ``name``, or None."""
    with contextlib.suppress(OSError, UnicodeDecodeError):  # a file damaged, or written in another locale before
        return (session_dir() / name).read_text(encoding="utf-8")
    return None


def keep(name: str, text: str) -> None:
    """Keep ``text`` in the session folder under ``name`` (written atomically)."""
    with atomic_path(session_dir() / name) as tmp:
        tmp.write_text(text, encoding="utf-8")  # a path typed in any letters, whatever the server's locale


def kept_since(name: str, finished: float) -> bool:
    """Whether the session kept ``name`` after ``finished`` (a job's end): a page that shows the job again after a
    browser reload must not undo a choice made since with the job's result."""
    with contextlib.suppress(OSError):
        return (session_dir() / name).stat().st_mtime > finished
    return False


def in_store(name: str) -> bool:
    """Whether the model store holds a model ``name`` (it may have been deleted since, by anyone)."""
    from ebsd_core.store import META  # not at import: the store imports PyTorch

    return (default_store() / name / META).is_file()


def current_model() -> str | None:
    """The session's current model (the one last trained, mapped or chosen), or None; after a browser reload, the
    one the session folder keeps. None too once the store no longer holds it (deleted here or by someone else)."""
    if "model_name" not in st.session_state and (remembered := (kept(CURRENT_MODEL_FILE) or "").strip()):
        st.session_state.model_name = st.session_state.model_remembered = remembered
    name = st.session_state.get("model_name")
    if name and not in_store(name):
        del st.session_state.model_name
        return None
    return name


def model_chosen_since(finished: float) -> bool:
    """Whether the session chose its model after ``finished`` (a job's end)."""
    return kept_since(CURRENT_MODEL_FILE, finished)


def apply_job_model(name: str | None, finished: float) -> None:
    """Make the model a job made the session's, unless the session chose one since (:func:`model_chosen_since`)."""
    if name and not model_chosen_since(finished):
        st.session_state.model_name = name


def select_model(names: list[str], key: str = "model_picker") -> str:
    """A model picker that starts on the session's current model (the one last trained, mapped or chosen)."""
    current = current_model()
    if current in names:
        st.session_state[key] = current  # also one a page made current since the picker was last drawn
    # index 0: where the picker has a state, that decides (Streamlit warns of another index beside a state set);
    # on_change: a choice becomes the session's before the page runs again, so the sidebar, drawn first, names it
    # also when the page stops early (st.stop drops what is drawn after it)
    choice = st.selectbox("Model", names, index=0, key=key, on_change=lambda: make_current(st.session_state[key]))
    st.session_state.model_name = choice
    if current not in names and choice == names[0]:
        return choice  # shown first, not chosen: nothing to remember
    make_current(choice)
    return choice


def make_current(name: str) -> None:
    """Make model ``name`` the session's, and keep it over a browser reload."""
    st.session_state.model_name = name
    if st.session_state.get("model_remembered") != name:
        keep(CURRENT_MODEL_FILE, name)
        st.session_state.model_remembered = name


def send_to_explain(model_name: str, source: str, index: int, kind: str = "training data") -> None:
    """Open pattern ``index`` of ``source`` on the Explain page, explained at once with Grad-CAM (its first method,
    a second or two) by ``model_name`` when the store holds it (else by the session's model); ``kind`` names the
    source there where the page has not offered it already ("training data: NAME")."""
    if in_store(model_name):
        st.session_state.model_name = model_name
    st.session_state.explain_index, st.session_state.explain_from = index, source
    st.session_state.explain_from_kind = kind
    st.session_state.explain_shown = (model_name, "gradcam", index)
    st.switch_page("pages/explain.py")


def how_trained_section(card) -> None:
    """A model's training in words (:meth:`ebsd_core.store.ModelCard.how_trained`), folded away."""
    with st.expander("How it was trained"):
        told = card.how_trained()
        st.markdown("\n".join(f"- **{label}**: {text}" for label, text in told.items()) or "Its card does not say.")


def download_button(label: str, data, file_name: str, mime: str | None = None, *, where=st, **options) -> None:
    """Streamlit's download button, which leaves the page alone when clicked. A click also reran the page, and a
    rerun that ended before the server took the file's request forgot a file made on the click (``data`` a
    callable: the model zip, a map's export): "Failed to generate file for download", 2 clicks in 30 on two busy
    cores. The rerun had nothing to do either.

    A callable ``data`` runs on the click in the server's own thread, outside any run of the page: a cached function
    there needs ``show_spinner=False``, or Streamlit logged "missing ScriptRunContext!" on every download."""
    where.download_button(label, data, file_name, mime, on_click="ignore", **options)


#: The session-state dict of the values that :func:`keep_hidden_widgets` keeps, by widget key.
KEPT_WIDGETS = "kept_widgets"


def keep_hidden_widgets(*keys: str) -> None:
    """Keep what was typed or chosen in these widgets while a choice or another page hides them: Streamlit forgets a
    widget's value on a run that does not draw it (switching a radio away and back emptied them, and so did a visit
    to another page). Call before drawing them; a form's widgets keep the values last submitted. A value the widget
    no longer offers gives its default."""
    kept = st.session_state.setdefault(KEPT_WIDGETS, {})
    for key in keys:
        if key in st.session_state:  # not set again: a form's edits not yet submitted would be undone
            kept[key] = st.session_state[key]
        elif key in kept:
            st.session_state[key] = kept[key]


def keep_hidden_widgets_of(prefix: str) -> None:
    """:func:`keep_hidden_widgets` of every widget whose key starts with ``prefix``."""
    known = [*st.session_state, *st.session_state.get(KEPT_WIDGETS, {})]
    keep_hidden_widgets(*dict.fromkeys(str(key) for key in known if str(key).startswith(prefix)))


def kept_tabs(labels: list[str], key: str):
    """Tabs that open on the one last chosen, also after a visit to another page (:func:`keep_hidden_widgets`)."""
    keep_hidden_widgets(key)
    return st.tabs(labels, key=key, on_change="rerun")


def space_group_choice(label: str, key: str, where=st) -> int | None:
    """The space group of a single-phase scan or a region of a map; none is preselected, as a label left as it came
    would go unnoticed."""
    return where.selectbox(
        label,
        list(M3M_SPACE_GROUPS),
        index=None,
        format_func=lambda sg: f"{M3M_SPACE_GROUPS[sg]} ({sg})",
        placeholder="choose one",  # the label names what; a longer one was cut on a 1,024 px screen
        key=key,
    )


def material_choice(key: str) -> str:
    """A catalogue material as a picker shows it (its key, name and space group)."""
    return CATALOGUE[key].choice_label


def show_source_warnings(name: str, source) -> None:
    """What the reader noticed about a pattern file (images left out, scans not read, a missing background)."""
    for warning in source.warnings:  # it may name files whose names are not UTF-8 (from an old Windows share)
        st.warning(printable_path(f"{name}: {warning}"))


#: A model of a sweep run on the Train page: NAME-transfer-kN or NAME-scratch-kN, with -sS for its repeats
#: (seed S; the first, seed 0, has none).
SWEEP_NAME = re.compile(r"^(?P<prefix>.+)-(?P<mode>transfer|scratch)-k(?P<shots>\d+)(?:-s(?P<seed>\d+))?$")


def sweep_run(mode: str, shots: int, repeat: int = 0) -> str:
    """A run's label in a Train page job (its model is ``PREFIX-LABEL``, :data:`SWEEP_NAME`): ``transfer-k10``,
    ``scratch-k10-s1`` for the second repeat."""
    return f"{mode}-k{shots}" + (f"-s{repeat}" if repeat else "")


def sweep_partner(name: str, names: list[str]) -> str | None:
    """The model trained beside ``name`` in a side-by-side run (its scratch twin for a transfer model, and the
    reverse), when it is among ``names``."""
    match = SWEEP_NAME.match(name)
    if not match:
        return None
    other = {"transfer": "scratch", "scratch": "transfer"}[match["mode"]]
    partner = f"{match['prefix']}-{sweep_run(other, int(match['shots']), int(match['seed'] or 0))}"
    return partner if partner in names else None


def metric_row():
    """A row of ``st.metric`` that wraps onto a second line where the page is too narrow for them (a 1,024 px
    screen), where columns cut their labels and values short ("Image...")."""
    return st.container(horizontal=True)


def show_notes(notes: list[str]) -> None:
    """The engine's notes on how far a reading can be trusted (written to follow 'FILE: ') as warnings."""
    for note in notes:
        st.warning(note[:1].upper() + note[1:])


def safe_name(name: str) -> str:
    """A user's file name reduced to a harmless base name."""
    base = Path(name.replace("\\", "/")).name
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", base)[:100]
    return "upload" if set(safe) <= {"."} else safe  # none, or ".." (a request's own): the folder above


#: Session key: the name each file saved by :func:`upload_to_session` was uploaded under.
UPLOAD_NAMES = "upload_names"


def uploader_folder(uploader: str) -> Path:
    """This session's folder of the files uploaded with the uploader keyed ``uploader``: one per uploader, so that a
    file uploaded on one page never replaces one of its name kept on another (every NORDIF scan is a Pattern.dat)."""
    plain = re.fullmatch(r"[A-Za-z0-9_-]{1,60}", uploader)
    return session_dir() / "uploads" / (uploader if plain else hashlib.sha256(uploader.encode()).hexdigest()[:16])


def upload_folder(uploader: str, upload) -> Path:
    """The session's folder of one upload (of the uploader keyed ``uploader``): its own, so that a file uploaded since
    under its name never replaces it, while a map is made of it or shown (every NORDIF scan is a Pattern.dat)."""
    return uploader_folder(uploader) / hashlib.sha256(str(upload.file_id).encode()).hexdigest()[:12]


def upload_to_session(upload, uploader: str, name: str | None = None, beside=None) -> Path:
    """Save a Streamlit upload into this session's private folder of it (:func:`upload_folder`), or of the upload
    ``beside`` (a NORDIF scan's Setting.txt goes beside its Pattern.dat), under a sanitised name (or ``name``, one
    the engine gave).

    Written once per upload, not on every rerun; a file uploaded beside another under the same name replaces it.
    """
    target = upload_folder(uploader, beside or upload) / (name or safe_name(upload.name))
    _save_upload(upload, target)
    return target


def _save_upload(upload, target: Path) -> None:
    """Write an upload to ``target``, once (not on every rerun), and remember the name it was uploaded under."""
    written = st.session_state.setdefault("uploads_written", {})  # file path -> the upload it holds
    if not target.exists() or written.get(str(target)) != upload.file_id:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            if not _linked_to_the_same_upload(upload, target.name, tmp):
                tmp.write_bytes(upload.getbuffer())
        written[str(target)] = upload.file_id
    st.session_state.setdefault(UPLOAD_NAMES, {})[str(target)] = upload.name


def folder_part(name: str) -> str:
    """A part of an uploaded file's path in its folder, kept as it was named (the reader's messages name the files
    by their paths in the folder), unless it names no file of its own or cannot be a name here: sanitised then."""
    if name in (".", "..") or any(ord(character) < 32 for character in name) or len(name.encode()) > 255:
        return safe_name(name)
    return name


#: Streamlit names an uploaded file by its path in a folder picked with the button (the browser's webkitRelativePath),
#: but a folder dragged onto the uploader reaches it as its files alone: the browser gives dropped files no such path.
DROPPED_FOLDER = "a folder dragged onto an uploader arrives as its files alone, without its sub-folders"


def folder_to_session(uploads: list, uploader: str) -> Path:
    """Save the files of one uploaded folder (Streamlit names each by its path in it, the folder's name first) into a
    folder of the session of their own, under the same paths (:func:`folder_part`): that folder's path.

    Raises
    ------
    InputError
        If the files are not those of one folder, or two of them would be saved under one name.
    """
    paths = {
        upload.file_id: [p for p in upload.name.replace("\\", "/").split("/") if p not in ("", ".")]
        for upload in uploads
    }
    loose = [upload.name for upload in uploads if len(paths[upload.file_id]) < 2]
    if loose and len(loose) == len(uploads):  # dropped: a folder's class folders would be lost, a scan's name too
        acquisition = any(nordif.is_scan_file(name) for name in loose)  # never read from a zip
        other_way = (
            f"give its {nordif.SCAN_SUFFIX} and {nordif.SETTING_FILE} to the uploader of files"
            if acquisition
            else "upload a zip of it"
        )
        raise InputError(
            f"{counted(len(uploads), 'file')} arrived, none in a folder: {DROPPED_FOLDER} (class folders would be "
            f"lost). Click the uploader and pick the folder instead, or {other_way}"
        )
    if loose:
        raise InputError("a file on its own, where this takes a folder (files go in the uploader of files)", loose[0])
    tops = sorted({parts[0] for parts in paths.values()})
    if len(tops) > 1:
        raise InputError(f"one folder at a time: {', '.join(tops)} were given")
    identity = hashlib.sha256("\n".join(sorted(str(upload.file_id) for upload in uploads)).encode()).hexdigest()
    root = uploader_folder(uploader) / identity[:12] / folder_part(tops[0])
    saved: dict[Path, str] = {}
    for upload in uploads:
        target = root.joinpath(*(folder_part(part) for part in paths[upload.file_id][1:]))
        if target in saved:  # "a\x01.png" and "a_.png": one would replace the other
            raise InputError(f"{saved[target]} and {upload.name} would be saved under one name: rename one of them")
        saved[target] = upload.name
    for upload, target in zip(uploads, saved):
        _save_upload(upload, target)
    st.session_state.setdefault(UPLOAD_NAMES, {})[str(root)] = tops[0]
    return root


#: The browser sends a folder's files one by one, and Streamlit's uploader slows down with their number (measured:
#: bench/RESULTS.md, "A folder picked in the browser").
FOLDER_UPLOAD_HELP = (
    "The browser sends each file on its own and slows down with many: on a 2-core server 500 images took 9 s, "
    "1,000 took 25 s and 5,000 did not end in 10 minutes. A larger folder is quicker as one zip, or by its path "
    "on the server (Server path, where the server offers it). Pick the folder with the button: "
    f"{DROPPED_FOLDER}."
)
#: Streamlit's uploader sends every file of a selection at once, and Chromium failed some of them above this many
#: (net::ERR_INSUFFICIENT_RESOURCES: 1,000 arrived whole, 1,417-1,500 of 1,500 in 4 tries), whatever their size.
MANY_UPLOADS = 1000


def warn_of_many_uploads(count: int) -> None:
    """Where ``count`` files arrived in one uploader: say that a browser may have failed to send others."""
    if count > MANY_UPLOADS:
        st.warning(
            f"{count:,} files arrived. A browser may fail to send some of a selection of more than {MANY_UPLOADS:,} "
            "files (Chromium lost up to 83 of 1,500 here): any that the uploader marks in red are not among them. "
            "A zip of them, or their path on the server, arrives whole."
        )


def folder_upload(label: str, key: str, types: list[str]) -> Path | None:
    """An uploader of one folder (its files of ``types``, with their sub-folders: class folders, a scan exported as
    images, a NORDIF acquisition), saved into the session: the folder's path, or None (with the reason, when the
    files are not one folder's); kept (:func:`kept_upload`)."""

    def draw() -> Path | None:
        uploads = st.file_uploader(
            label, type=types, accept_multiple_files="directory", key=key, help=FOLDER_UPLOAD_HELP
        )
        if not uploads:
            return None
        warn_of_many_uploads(len(uploads))
        try:
            return folder_to_session(uploads, key)
        except EbsdError as exc:
            show_error(exc)
            return None

    return kept_upload(key, draw)


def _same_bytes(path: Path, data: memoryview, chunk: int = 1 << 24) -> bool:
    with path.open("rb") as file:
        for start in range(0, len(data), chunk):
            if file.read(chunk) != data[start : start + chunk]:
                return False
    return True


def _linked_to_the_same_upload(upload, name: str, tmp: Path) -> bool:
    """Make ``tmp`` a hard link of a file of this ``name`` and the upload's bytes that the session saved before, if
    there is one: a scan uploaded again (removed from the uploader and dropped on it again, or uploaded on another
    page) is not a second copy on the server's disk. Its own folder still holds it: a file is only ever replaced
    whole (atomically), never written into, so the two names cannot change each other. Only files of its name are
    compared: a folder's worth of patterns of one size are not compared with each other."""
    data = upload.getbuffer()
    for path in (session_dir() / "uploads").glob(f"*/*/{glob.escape(name)}"):
        try:
            if path.stat().st_size != len(data) or not _same_bytes(path, data):
                continue
            tmp.unlink()
            os.link(path, tmp)
            return True
        except OSError:  # gone since, or a file system without hard links: written as it came
            continue
    return False


def uploads_to_read(uploads: list, uploader: str) -> list:
    """The uploads to read as patterns (of the uploader keyed ``uploader``). The files a NORDIF scan is read with
    (Setting.txt, its background image) are saved beside it under NORDIF's names instead, and its other images are
    left out, said so."""
    try:
        roles = nordif.upload_roles([upload.name for upload in uploads])
    except EbsdError as exc:
        show_error(exc)
        return []
    scan = next((upload for upload in uploads if nordif.is_scan_file(upload.name)), None)
    if scan is not None:  # companions removed from the uploader since must not be used
        uploaded = {nordif.companion_name(upload.name) for upload in uploads if roles[upload.name] == "companion"}
        nordif.remove_companions(upload_folder(uploader, scan), keep=uploaded)
    for upload in uploads:
        if roles[upload.name] == "companion":
            try:
                upload_to_session(upload, uploader, nordif.companion_name(upload.name), beside=scan)
            except EbsdError as exc:
                show_error(exc)
    side_images = [upload.name for upload in uploads if roles[upload.name] == "side image"]
    if side_images:
        st.caption(
            f"Not read: {', '.join(side_images)} (NORDIF's calibration and area images, not points of the scan)."
        )
    return [upload for upload in uploads if roles[upload.name] == "file"]


def one_upload_to_read(uploads: list, uploader: str) -> Path | None:
    """The one file of an uploader that takes one scan (with a NORDIF scan's Setting.txt beside it), saved into
    the session; None, with the reason shown, when there is none or more than one."""
    to_read = uploads_to_read(uploads, uploader)
    if len(to_read) > 1:
        named = ", ".join(upload.name for upload in to_read)
        images = all(is_image_name(upload.name) for upload in to_read)  # a scan exported as images, dropped here
        hint = f" ({DROPPED_FOLDER}: pick it in the uploader of folders below)" if images else ""
        show_error(InputError(f"one scan at a time: {named} were given{hint}"))
        return None
    try:
        return upload_to_session(to_read[0], uploader) if to_read else None
    except EbsdError as exc:
        show_error(exc)
        return None


def one_scan_upload(label: str, key: str, types: list[str] | None = None) -> Path | None:
    """An uploader of one scan file, image or NORDIF Pattern.dat (with its Setting.txt), or of ``types``, saved into
    the session: its path, or None (with the reason, when more than one was given); kept (:func:`kept_upload`)."""
    types = types or SCAN_FILE_TYPES + IMAGE_FILE_TYPES + NORDIF_SETTING_TYPES

    def draw() -> Path | None:
        uploads = st.file_uploader(label, type=types, accept_multiple_files=True, key=key)
        return one_upload_to_read(uploads, key) if uploads else None

    return kept_upload(key, draw)


def one_scan_upload_or_folder(
    label: str,
    key: str,
    types: list[str] | None = None,
    folder_label: str = "Or a folder: a scan exported as images, or a NORDIF acquisition",
) -> Path | None:
    """:func:`one_scan_upload`, and beside it an uploader of the scan as a folder (:func:`folder_upload`, labelled
    ``folder_label``: a scan exported as images, a NORDIF acquisition, and class folders where the page reads them):
    the scan's path, or None (with the reason, when both are given)."""
    uploaded = one_scan_upload(label, key, types)
    folder = folder_upload(folder_label, f"{key}-folder", FOLDER_FILE_TYPES)
    if uploaded and folder:
        show_error(
            InputError(
                f"one scan at a time: {uploaded_name(uploaded)} and the folder {uploaded_name(folder)} were given: "
                "remove one of them"
            )
        )
        return None
    return uploaded or folder


def kept_upload(key: str, draw: Callable[[], Path | None]) -> Path | None:
    """The file saved from the uploader that ``draw`` draws under ``key``, kept while a choice or another page hides
    that uploader (:func:`kept_uploads`)."""
    paths = kept_uploads(key, lambda: [path] if (path := draw()) else [])
    return paths[0] if paths else None


def kept_uploads(key: str, draw: Callable[[], list[Path]]) -> list[Path]:
    """The files saved from the uploader that ``draw`` draws under ``key``, kept while a choice or another page hides
    that uploader, which Streamlit empties then (large scans had to be uploaded again): drawn again, the uploader
    still gives them, saying so, until others are uploaded or they are forgotten (a button, or the user removing
    them from the uploader)."""
    kept_key, held_key = f"{key}-kept", f"{key}-held"
    redrawn = key not in st.session_state  # Streamlit drops a widget's state on a run that does not draw it
    paths = draw()
    if st.session_state.get(key):  # the uploader holds files
        st.session_state[kept_key], st.session_state[held_key] = paths, True
        return paths
    if st.session_state.pop(held_key, False) and not redrawn:  # the user has just removed them
        st.session_state.pop(kept_key, None)
    earlier = [path for path in st.session_state.get(kept_key) or [] if path.exists()]
    if not earlier:
        return []
    names = ", ".join(uploaded_name(path) for path in earlier[:3]) + (
        f" and {len(earlier) - 3} more" if len(earlier) > 3 else ""
    )  # a folder's worth of images would fill the page
    one = len(earlier) == 1
    st.caption(
        f"{names}, uploaded before, {'is' if one else 'are'} still given "
        f"(upload {'another to replace it' if one else 'others to replace them'})."
    )
    forget = functools.partial(st.session_state.pop, kept_key, None)  # before the rerun draws it again
    label = f"Forget {names}" if one else f"Forget these {len(earlier)} files"
    st.button(label, key=f"{key}-forget", type="tertiary", icon=":material/close:", on_click=forget)
    return earlier


def uploaded_name(path: Path) -> str:
    """The name a file saved by :func:`upload_to_session` was uploaded under."""
    return st.session_state.get(UPLOAD_NAMES, {}).get(str(path), path.name)


def for_the_user(message: str) -> str:
    """``message`` with this session's private folder left out: files are named as the user uploaded them,
    and a hosted server does not show its folders."""
    for saved, name in sorted(st.session_state.get(UPLOAD_NAMES, {}).items(), key=lambda item: -len(item[0])):
        message = message.replace(saved, name)  # "my scan.h5", not the session's my_scan.h5
    uploads = session_dir() / "uploads"
    folders = r"(?:[A-Za-z0-9_-]+" + re.escape(os.sep) + r"){1,2}"  # the uploader's and the upload's
    message = re.sub(re.escape(f"{uploads}{os.sep}") + folders, "", message)
    for folder in (uploads, session_dir()):
        message = message.replace(f"{folder}{os.sep}", "")
    return printable_path(message)


def show_error(exc: Exception) -> None:
    """One clear line for the user; never a traceback. An unexpected one (a bug) logs its traceback in the server's
    log, where whoever keeps a lab's server looks when a user reports it."""
    if isinstance(exc, EbsdError):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = os_error_text(exc)
    else:
        logging.getLogger(__name__).error("unexpected problem on a page", exc_info=exc)
        text = f"Unexpected problem: {exc.__class__.__name__}: {exc} (the server's log has the details)"
    st.error(for_the_user(text))


def active_dataset_path() -> Path | None:
    path = st.session_state.get("dataset_path")
    if not path:
        path, _, label = (kept(ACTIVE_DATASET_FILE) or "").strip().partition("\n")  # the label: since 2026-12-05
        if path:
            st.session_state.dataset_path = path
            st.session_state.dataset_label = label or Path(path).name
    return Path(path) if path and Path(path).exists() else None


def active_dataset_name() -> str:
    """The session's dataset as the sidebar names it ("demo", not the session's file of it); "" when there is none."""
    path = active_dataset_path()
    return (st.session_state.get("dataset_label") or path.name) if path else ""


def set_active_dataset(path: Path, label: str) -> None:
    st.session_state.dataset_path = str(path)
    st.session_state.dataset_label = label
    keep(ACTIVE_DATASET_FILE, f"{path}\n{label}")


def apply_job_dataset(path: Path, label: str, finished: float) -> None:
    """Make the dataset a job made the session's, unless the session chose one after the job ended: a page that shows
    the job again after a browser reload must not undo that choice."""
    if not kept_since(ACTIVE_DATASET_FILE, finished):
        set_active_dataset(path, label)


def tidy(fig: go.Figure, height: int, **layout) -> go.Figure:
    """The dashboard's common plot layout: compact margins and a fixed height."""
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), **layout)
    return fig


def montage_figure(patterns: np.ndarray, titles: list[str], columns: int = 6) -> go.Figure:
    from plotly.subplots import make_subplots

    rows = int(np.ceil(len(patterns) / columns))
    title_px = 15 * max(title.count("<br>") + 1 for title in titles)  # a title of two lines ("<br>") takes twice
    spacing = min(0.5 / max(rows - 1, 1), (title_px + 8) / (170 * rows))
    fig = make_subplots(
        rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=spacing
    )
    fig.update_annotations(font_size=12)
    for i, pattern in enumerate(patterns):
        fig.add_trace(
            go.Heatmap(z=pattern[::-1], colorscale="gray", showscale=False, hoverinfo="skip"),
            row=i // columns + 1,
            col=i % columns + 1,
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    fig.update_layout(height=170 * rows, margin=dict(l=5, r=5, t=title_px + 15, b=5))
    return fig


def curves_figure(histories: dict[str, list[dict]], metric: str) -> go.Figure:
    fig = go.Figure()
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        for split in ("train", "val"):
            key = f"{split}_{metric}"
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[h[key] for h in history if key in h],
                    mode="lines+markers",
                    name=f"{name} {split}",
                    line=dict(dash="dot" if split == "train" else "solid"),
                )
            )
    # the legend under the plot: beside it, a few models' names took half the width from the curves
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.3, x=0))
    last_epoch = max((h["epoch"] for history in histories.values() for h in history), default=0)
    if last_epoch <= 10:  # whole epochs: three of them were ticked 1, 1.5, 2, 2.5, 3
        fig.update_xaxes(tick0=1, dtick=1)
    return tidy(fig, 320 + 20 * len(histories), xaxis_title="epoch", yaxis_title=metric)


def confusion_figure(matrix: list[list[int]], classes: list[str], normalise: bool) -> go.Figure:
    z = np.asarray(matrix, dtype=float)
    if normalise:
        z = z / np.maximum(z.sum(axis=1, keepdims=True), 1)
    text = [[f"{v:.2f}" if normalise else f"{int(v)}" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(z=z, x=classes, y=classes, colorscale="Blues", text=text, texttemplate="%{text}", showscale=False)
    )
    return tidy(fig, 420, xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed")


@st.cache_resource(max_entries=2, ttl=600, show_spinner="Opening the scan")
def cached_source(path: str, modified: float):
    """A pattern source opened once per (path, modification time), for looking at its patterns one by one: opening
    a folder or zip of images reads every image's header and decodes a small one whole. Shared, so read-only;
    two at most, as a small folder of images is held decoded (up to 1 GiB)."""
    from ebsd_core.io.readers import open_patterns

    return open_patterns(path)


def modified_time(path: str | Path) -> float:
    """When the file at ``path`` was last changed, a cache key of its version; -1 where it is gone or unreadable
    (opening it says which, in its own words)."""
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return -1.0


def opened_source(path: str | Path):
    """:func:`cached_source` of ``path`` as it is now."""
    return cached_source(str(path), modified_time(path))


@st.cache_resource(max_entries=4)
def cached_model(path: str, modified: float):
    """A saved model, loaded once per (folder, modification time)."""
    from ebsd_core.store import load_model

    return load_model(path)


def confusion_png(matrix: list[list[int]], classes: list[str], title: str) -> bytes:
    """The confusion matrix as a PNG (matplotlib; no browser needed)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = np.asarray(matrix, dtype=float)
    norm = z / np.maximum(z.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(z[i, j])}", ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()
