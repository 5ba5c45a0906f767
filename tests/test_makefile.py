"""How `make` makes .venv: on a Python too old, and after a making that failed half-way (its own Makefile, copied
into a folder with a requirements.txt of nothing to install, so that no package is fetched)."""

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Debian's and Ubuntu's python3 without python3-venv: `-m venv` leaves bin/python without pip, then fails
PYTHON_WITHOUT_ENSUREPIP = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  shift 2
  "{python}" -m venv --without-pip "$@"
  echo "The virtual environment was not created successfully because ensurepip is not available." >&2
  exit 1
fi
exec "{python}" "$@"
"""


@pytest.fixture
def project(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make here")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "requirements.txt").write_text("")
    return tmp_path


def make_runtime(project: Path, *settings: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PIP_NO_INDEX": "1"}  # pip's own upgrade finds nothing to fetch, and asks no index
    return subprocess.run(
        ["make", ".venv/.runtime", f"PYTHON={sys.executable}", *settings],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",  # a sub-make names its folder in its bytes ("Entering directory '.../caf\xe9'")
        timeout=600,
    )


def test_a_python_too_old_is_said_before_any_venv_is_made(project):
    done = make_runtime(project, "MIN_PYTHON=99.0")
    version = sys.version.split()[0]
    assert done.returncode != 0
    assert f"is Python {version}, and this project needs 99.0 or later: install one, then run make" in done.stderr
    assert not (project / ".venv").exists()


def test_a_project_in_a_folder_named_not_in_utf8_is_said_so_before_any_venv_is_made(project):
    """Found on review: cloned under a folder copied from an old Windows share (Latin-1, "caf\xe9"), `make app` ended in
    "Error: 'utf-8' codec can't encode character '\\udce9' ...: surrogates not allowed" from `python -m venv`, and
    Streamlit cannot serve from there either."""
    from conftest import not_utf8_folder

    moved = not_utf8_folder(project) / "project"
    moved.mkdir()
    for name in ("Makefile", "requirements.txt"):
        shutil.copy(project / name, moved / name)
    done = make_runtime(moved)
    assert done.returncode != 0
    assert f"This project lies in {project}/caf\ufffd/project, a path that is not UTF-8 text" in done.stderr
    assert "move it to a folder named in UTF-8, or rename the folder (convmv does so)" in done.stderr
    assert not (moved / ".venv").exists()


def test_a_project_moved_into_a_folder_named_not_in_utf8_after_its_venv_is_said_so_before_serving(project):
    """Its .venv made before, Streamlit started and served a blank page (its own script's path "surrogates not
    allowed" in its log): `make app` says so instead, before it starts."""
    from conftest import not_utf8_folder

    assert make_runtime(project).returncode == 0
    (project / ".venv" / ".project").touch()  # made, as `make app` makes it
    moved = not_utf8_folder(project) / "project"
    moved.mkdir()
    for name in ("Makefile", "requirements.txt", ".venv"):
        shutil.move(project / name, moved / name)
    done = subprocess.run(
        ["make", "app", "PORT=0"], cwd=moved, capture_output=True, text=True, errors="replace", timeout=120
    )
    assert done.returncode != 0
    assert f"This project lies in {project}/caf\ufffd/project, a path that is not UTF-8 text" in done.stderr


def test_a_venv_whose_making_failed_half_way_is_made_again(project):
    """Found reading the Makefile: where python3-venv was missing, the first make left .venv/bin/python without pip;
    once it was installed, every later make failed with "No module named pip", as .venv/bin/python was there."""
    fake = project / "python-without-ensurepip"
    fake.write_text(PYTHON_WITHOUT_ENSUREPIP.format(python=sys.executable))
    fake.chmod(0o755)
    failed = make_runtime(project, f"PYTHON={fake}")
    assert failed.returncode != 0 and "ensurepip is not available" in failed.stderr
    assert (project / ".venv" / "bin" / "python").exists() and not (project / ".venv" / ".runtime").exists()
    done = make_runtime(project)  # python3-venv installed since
    assert done.returncode == 0, done.stderr[-2000:]
    assert (project / ".venv" / ".runtime").exists()
    assert subprocess.run([project / ".venv" / "bin" / "python", "-m", "pip", "--version"]).returncode == 0


def test_a_venv_whose_python_is_gone_is_made_again(project):
    """Found reading the Makefile: after a system upgrade took the Python a .venv was made with, make found .venv up
    to date, and `make app` ended in "No such file or directory"."""
    python = project / "python3-of-before"
    python.symlink_to(getattr(sys, "_base_executable", sys.executable))  # the interpreter, not this test's venv
    assert make_runtime(project, f"PYTHON={python}").returncode == 0
    assert (project / ".venv" / "bin" / "python").resolve() == python.resolve()
    python.unlink()  # the upgrade
    assert not os.access(project / ".venv" / "bin" / "python", os.X_OK)
    done = make_runtime(project)
    assert done.returncode == 0, done.stderr[-2000:]
    assert os.access(project / ".venv" / "bin" / "python", os.X_OK) and (project / ".venv" / ".runtime").exists()


def test_a_venv_whose_python_this_account_may_not_run_is_said_so_not_made_again(project):
    """Found running the dashboard as a service account: .venv made with the admin's ~/.pyenv Python (under a home
    closed to others) gave that account "Permission denied" (126). make took it for a Python that is gone, removed the
    stamps and, where the account owned the checkout, would make .venv again (7 GB) at the service's start."""
    python = project / "python3-of-the-admin"
    python.symlink_to(getattr(sys, "_base_executable", sys.executable))
    assert make_runtime(project, f"PYTHON={python}").returncode == 0
    python.unlink()
    python.write_text("")  # there, but not to be run: as another account's home makes it
    done = make_runtime(project)
    assert done.returncode != 0
    account = pwd.getpwuid(os.getuid()).pw_name
    assert f".venv was made with the Python in {project}, which this account ({account}) may not run" in done.stderr
    assert "Run make as the account that made .venv" in done.stderr
    assert (project / ".venv" / ".runtime").exists()  # not taken for gone
    assert (project / ".venv" / "bin" / "python").is_symlink()
