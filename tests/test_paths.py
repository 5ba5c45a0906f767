"""The data root users pick scans from by path; the working folder the tests run in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import TEST_VARIABLES, not_utf8_folder, unreadable

from ebsd_core.paths import data_root_problem, fewshot_home
from ebsd_core.store import default_store


@pytest.fixture(scope="module")
def folders_of_a_module_fixture():
    return fewshot_home(), default_store()


def test_module_fixtures_work_in_a_temporary_home(folders_of_a_module_fixture, tmp_path_factory):
    """Found in CI: a module fixture saved a model in the user's ``~/.ebsd_fewshot``, which then recorded the
    run's temporary store; a later run given the same temporary folder was refused its "lost" store. Nor may a test
    save into the project's ``models/`` or, run in a lab's shell, into the lab's store."""
    for folder in folders_of_a_module_fixture:
        assert folder.is_relative_to(tmp_path_factory.getbasetemp())


def test_the_shells_settings_are_not_the_tests(tmp_path_factory):
    """A lab's shell exports the service's settings (``STREAMLIT_SERVER_BASE_URL_PATH=ebsd``, which failed the
    browser tests' dashboards, ``EBSD_MODEL_STORE``); the secrets files are an empty one of the run's."""
    server = {name for name in os.environ if name.startswith("EBSD_") and name not in TEST_VARIABLES}
    assert server == {"EBSD_FEWSHOT_HOME", "EBSD_MODEL_STORE"}  # the run's temporary ones
    settings = {name: value for name, value in os.environ.items() if name.startswith("STREAMLIT_")}
    assert list(settings) == ["STREAMLIT_SECRETS_FILES"]
    secrets = Path(settings["STREAMLIT_SECRETS_FILES"])
    assert secrets.is_relative_to(tmp_path_factory.getbasetemp()) and secrets.read_text() == ""


def test_a_data_root_that_cannot_be_listed_says_why(tmp_path, monkeypatch):
    """Found on review: with EBSD_DATA_ROOT mistyped (or its share not mounted) every path a user typed was told "no
    such file or folder under the data root", as if they had mistyped it."""
    (tmp_path / "root").mkdir()
    (tmp_path / "file").write_text("")
    assert data_root_problem(tmp_path / "root") is None
    end = ": whoever runs the server can fix it, or upload instead."
    assert data_root_problem(tmp_path / "gone") == (
        f"The data root {tmp_path / 'gone'} (EBSD_DATA_ROOT) does not exist (not mounted, or mistyped?){end}"
    )
    assert (
        data_root_problem(tmp_path / "file")
        == f"The data root {tmp_path / 'file'} (EBSD_DATA_ROOT) is not a folder{end}"
    )
    latin1 = not_utf8_folder(tmp_path)  # copied from an old Windows share: no page could show its path
    assert data_root_problem(latin1) == (
        f"The data root {tmp_path}/caf\ufffd (EBSD_DATA_ROOT) has a path that is not UTF-8 text (as names copied from "
        "old Windows shares can be), which the pages cannot show: whoever runs the server can rename it (convmv does "
        "so) or set EBSD_DATA_ROOT to another folder. The command line works there as it is."
    )
    unreadable(monkeypatch, tmp_path / "root")
    assert data_root_problem(tmp_path / "root") == (
        f"The data root {tmp_path / 'root'} (EBSD_DATA_ROOT) cannot be read by the account this runs as (permission "
        f"denied){end}"
    )
