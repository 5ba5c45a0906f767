"""A server account without a home it can write to: the engine could not be imported (HyperSpy makes
``~/.hyperspy`` when imported; numba caches in ``~/.cache/numba`` where it cannot write beside the source)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import unreadable, unwritable

from ebsd_core import home_folder
from ebsd_core.home_folder import ensure_writable_home, working_folder_problem
from ebsd_core.paths import FEWSHOT_HOME_VARIABLE


@pytest.fixture
def no_home(tmp_path, monkeypatch) -> Path:
    """HOME at a folder that cannot be made (its parent is a file, which holds for root too)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("HOME", str(blocker / "home"))
    monkeypatch.setattr(home_folder.tempfile, "tempdir", str(tmp_path / "tmp"))
    return blocker / "home"


def test_a_writable_home_is_left_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ensure_writable_home() is None and os.environ["HOME"] == str(tmp_path)


def test_a_home_that_cannot_be_written_moves_under_the_working_folder(no_home, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(FEWSHOT_HOME_VARIABLE, str(tmp_path / "work"))
    assert ensure_writable_home() == tmp_path / "work" / "home"
    assert os.environ["HOME"] == str(tmp_path / "work" / "home")
    assert f"the home folder {no_home} cannot be written to" in caplog.text
    assert "sessions, jobs and masters are kept where EBSD_FEWSHOT_HOME says" in caplog.text


def test_without_a_working_folder_it_moves_to_the_temporary_folder_and_says_so(no_home, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(FEWSHOT_HOME_VARIABLE, raising=False)
    home = ensure_writable_home()
    assert home is not None and home.parent == tmp_path / "tmp" and os.environ["HOME"] == str(home)
    assert "set EBSD_FEWSHOT_HOME to a lasting folder to keep them" in caplog.text


def test_a_working_folder_that_cannot_be_written_is_said_so(no_home, tmp_path, monkeypatch, caplog):
    """Found with EBSD_FEWSHOT_HOME at a folder of root's, as another account: every page of the dashboard ended in
    "PermissionError: [Errno 13] Permission denied: '/tmp/rohome/jobs'", and the line said to keep things there."""
    monkeypatch.setenv(FEWSHOT_HOME_VARIABLE, str(no_home.parent / "work"))  # under a file: for root too
    assert working_folder_problem() == (
        f"This server cannot write in {no_home.parent / 'work'} ({no_home.parent} is a file), its working folder for "
        "sessions, uploads and jobs. Whoever runs it can give it write access there, or set EBSD_FEWSHOT_HOME to a "
        "folder it can write to."
    )
    assert ensure_writable_home().parent == tmp_path / "tmp"
    assert f"to be kept in {no_home.parent / 'work'} (EBSD_FEWSHOT_HOME), which cannot be written to" in caplog.text
    monkeypatch.setenv(FEWSHOT_HOME_VARIABLE, str(tmp_path / "work"))
    assert working_folder_problem() is None


def test_a_working_folder_with_another_accounts_folders_in_it_says_which(tmp_path, monkeypatch):
    """Found moving a server from root to a service account that was given the working folder but not what is in
    it: every page ended in "PermissionError: [Errno 13] Permission denied: '/tmp/mixhome/jobs/.server.lock'"."""
    work = tmp_path / "work"
    (work / "sessions" / "a1b2").mkdir(parents=True)
    (work / "jobs").mkdir()
    (work / "data").mkdir()  # a lab's read-only share kept there too: none of the server's
    monkeypatch.setenv(FEWSHOT_HOME_VARIABLE, str(work))
    unwritable(monkeypatch, work / "data")
    assert working_folder_problem() is None
    unwritable(monkeypatch, work / "sessions" / "a1b2")
    monkeypatch.setattr(home_folder, "account_name", lambda: "svc")
    assert working_folder_problem() == (
        f"This server (account svc) cannot write in {work / 'sessions' / 'a1b2'} (account "
        f"{(work / 'jobs').owner()}'s), in its working folder for sessions, uploads and jobs. Whoever runs it can "
        f"give it what it keeps there (chown -R svc {work / 'jobs'} {work / 'sessions'}), or set EBSD_FEWSHOT_HOME "
        "to a folder of its own."
    )


def test_a_jobs_lock_of_another_account_is_named(tmp_path, monkeypatch):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / ".server.lock").write_text("process 1 on lab")
    unwritable(monkeypatch, tmp_path / "jobs" / ".server.lock")
    assert f"cannot write in {tmp_path / 'jobs' / '.server.lock'} (" in working_folder_problem(tmp_path)


def test_a_folder_in_it_that_cannot_be_listed_is_named(tmp_path, monkeypatch):
    (tmp_path / "sessions" / "closed").mkdir(parents=True)
    unreadable(monkeypatch, tmp_path / "sessions" / "closed")
    assert f"cannot write in {tmp_path / 'sessions' / 'closed'} (" in working_folder_problem(tmp_path)


def _no_home_known(cls):
    raise RuntimeError("Could not determine home directory.")  # Path.home() with no HOME and no password entry


def test_a_user_without_any_home_gets_one(no_home, tmp_path, monkeypatch):
    monkeypatch.setattr(home_folder.Path, "home", classmethod(_no_home_known))
    monkeypatch.setenv(FEWSHOT_HOME_VARIABLE, str(tmp_path / "work"))
    assert ensure_writable_home() == tmp_path / "work" / "home"


def test_the_engine_and_its_libraries_import_without_a_writable_home(no_home, tmp_path):
    """In a process of its own, as a server account would start: kikuchipy (HyperSpy) and orix (numba) import and
    compile, with HyperSpy's settings in the home given under EBSD_FEWSHOT_HOME."""
    script = textwrap.dedent(
        """
        import os

        import ebsd_core
        from kikuchipy.signals import EBSD
        from orix.quaternion import Rotation

        rotations = Rotation.random(4)
        (rotations * rotations).to_euler()
        print(os.environ["HOME"])
        """
    )
    env = {**os.environ, "HOME": str(no_home), FEWSHOT_HOME_VARIABLE: str(tmp_path / "work")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(tmp_path / "work" / "home")]
    assert (tmp_path / "work" / "home" / ".hyperspy").is_dir()
    assert f"the home folder {no_home} cannot be written to" in done.stderr


def test_the_engine_imports_where_no_temporary_folder_can_be_written(no_home, tmp_path):
    """Found in a container run with a read-only file system and one writable volume (a read-only /tmp, as a server
    account): importing the engine failed with "FileNotFoundError: No usable temporary directory found in ['/tmp',
    '/var/tmp', '/usr/tmp', '/']". Root may write anywhere, so the process is told the system has none."""
    script = textwrap.dedent(
        """
        import os
        import tempfile

        def candidates():  # as the system's list, with every folder of it refused (but the TMPDIR given)
            return [os.environ["TMPDIR"]] if "TMPDIR" in os.environ else ["/nonexistent/tmp"]

        tempfile._candidate_tempdir_list = candidates
        import ebsd_core

        print(tempfile.gettempdir())
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")}
    env.update(HOME=str(no_home), **{FEWSHOT_HOME_VARIABLE: str(tmp_path / "work")})
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(tmp_path / "work" / "tmp")]
    assert f"temporary files go under {tmp_path / 'work' / 'tmp'} instead" in done.stderr
