"""Access control: scrypt password hashes and the dashboard's password gate."""

import contextlib
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ebsd_core.access import hash_password, verify_password
from ebsd_core.errors import InputError

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_hash_roundtrip_and_refusals():
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct hors", stored)
    assert hash_password("correct horse") != stored  # salted
    for malformed in ("", "plain", "md5$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", stored[:-8]):
        assert not verify_password("correct horse", malformed)
    with pytest.raises(InputError, match="8 characters"):
        hash_password("short")


def test_a_browser_is_kept_in_until_its_token_expires_or_the_password_changes():
    from ebsd_core.access import keep_in_token, keeps_in

    stored = hash_password("lab password 1")
    token = keep_in_token(stored, days=7, now=1_000_000)
    assert keeps_in(token, stored, now=1_000_000 + 7 * 86400 - 1)
    assert not keeps_in(token, stored, now=1_000_000 + 7 * 86400 + 1)  # expired
    assert not keeps_in(token, hash_password("lab password 1"), now=1_000_000)  # a new hash, even of the same word
    expiry, mac = token.split(".")
    assert not keeps_in(f"{int(expiry) + 86400}.{mac}", stored, now=1_000_000)  # its expiry moved on
    forged_cookies = ("", "x", "1.", f"{expiry}.", f"{expiry}.{mac[:-2]}", f"-1.{mac}", f"{expiry}.{mac}.x", "²²².x")
    for forged in forged_cookies:  # "²" is a digit to str.isdigit, not to int(): it ended the page in a traceback
        assert not keeps_in(forged, stored, now=1_000_000), forged


@pytest.fixture
def gated(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSD_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path / "home"))
    app = AppTest.from_file(APP, default_timeout=60)
    app.secrets["access"] = {"password_hash": hash_password("lab password 1")}
    return app


def test_password_gate(gated):
    gated.run()
    assert not gated.exception
    assert [t.label for t in gated.text_input] == ["Lab password"]
    assert not any("Few-shot EBSD" in t.value for t in gated.title)
    gated.text_input[0].input("guess")
    gated.button[0].click().run()
    assert any("Wrong password" in e.value for e in gated.error)
    gated.text_input[0].input("lab password 1")
    gated.button[0].click().run()
    assert not gated.exception
    assert any("Few-shot EBSD" in t.value for t in gated.title)
    next(b for b in gated.sidebar.button if b.label == "Lock this browser").click().run()
    assert [t.label for t in gated.text_input] == ["Lab password"]
    assert not any("Few-shot EBSD" in t.value for t in gated.title)


@pytest.mark.cold_server
@pytest.mark.parametrize("page", ["pages/results.py", "pages/train.py", "pages/phasemap.py"])
def test_a_deep_link_to_a_freshly_started_server_still_asks_for_the_password(gated, page):
    """Streamlit runs a bookmarked page alone on a fresh server (its pages/ folder fallback): no way round the login."""
    gated.switch_page(page).run()
    assert not gated.exception
    assert [t.label for t in gated.text_input] == ["Lab password"]
    assert [t.value for t in gated.title] == ["EBSD few-shot classifier"]  # the login, not the page


def test_open_without_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path / "home"))
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert any("Few-shot EBSD" in t.value for t in app.title)


def _logged_in(user: dict) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    if not hasattr(app, "user"):  # requirements.txt allows 1.62: the dashboard runs there, this test cannot
        pytest.skip("AppTest logs a user in from Streamlit 1.67 on (AppTest.user)")
    app.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32}
    app.user = {"is_logged_in": True, "iss": "https://idp.example.org", **user}
    return app


def test_with_an_identity_provider_work_follows_the_login(tmp_path, monkeypatch):
    """A lab user logged in through OIDC finds their jobs again from another browser; a colleague does not."""
    from pages.common import job_manager

    monkeypatch.setenv("EBSD_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path / "home"))
    job_manager.clear()
    office = _logged_in({"sub": "ada", "email": "ada@lab.org"}).run()
    assert not office.exception
    assert [b.label for b in office.sidebar.button] == ["Log out"]  # a shared computer at the microscope
    mine = office.session_state["session_id"]
    assert "sid" not in office.query_params  # no private link to leak: the login is the key
    job_manager().wait(job_manager().submit("demo", "Ada's demo", mine, lambda ctx: {}))
    microscope = _logged_in({"sub": "ada", "email": "ada@lab.org"}).run()  # another browser, the same person
    assert microscope.session_state["session_id"] == mine
    microscope.switch_page("pages/train.py").run()
    assert [s.value for s in microscope.subheader] == ["Ada's demo"]
    colleague = _logged_in({"sub": "bob", "email": "bob@lab.org"})
    colleague.query_params["sid"] = mine  # a copied link gives nothing away
    colleague.run()
    assert colleague.session_state["session_id"] != mine
    colleague.switch_page("pages/train.py").run()
    assert not colleague.subheader and not colleague.exception


def test_a_new_login_at_the_same_tab_sees_none_of_the_previous_work(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path / "home"))
    app = _logged_in({"sub": "ada"}).run()
    app.session_state["dataset_path"] = str(tmp_path / "adas.h5")
    app.user = {"is_logged_in": True, "iss": "https://idp.example.org", "sub": "bob"}
    app.run()
    assert not app.exception
    assert "dataset_path" not in app.session_state


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project folder, and a home without Streamlit's global secrets (and no secrets files set for the suite)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STREAMLIT_SECRETS_FILES", raising=False)
    (tmp_path / "project" / ".streamlit").mkdir(parents=True)
    return tmp_path / "project"


def test_make_app_serves_this_computer_alone_until_visitors_are_asked_for_something(project, tmp_path):
    """Streamlit listens on every network interface: a `make app` on a lab's PC with no password set served anyone
    on the network, who could upload, train and delete models."""
    from ebsd_core.access import LOCAL_ONLY, listen_address

    assert listen_address(project) == LOCAL_ONLY
    secrets = project / ".streamlit" / "secrets.toml"
    secrets.write_text("[access]\n# password_hash to come\n")
    assert listen_address(project) == LOCAL_ONLY
    secrets.write_text(f'[access]\npassword_hash = "{hash_password("lab password 1")}"\n')
    assert listen_address(project) == ""  # Streamlit's default: every interface
    secrets.write_text("[access\n")  # Streamlit refuses to start on it, naming it
    assert listen_address(project) == LOCAL_ONLY
    secrets.unlink()
    (tmp_path / "home" / ".streamlit").mkdir(parents=True)
    (tmp_path / "home" / ".streamlit" / "secrets.toml").write_text('[auth]\nredirect_uri = "https://lab/oauth2"\n')
    assert listen_address(project) == ""


def test_the_secrets_files_streamlit_is_told_of_are_the_ones_read(project, tmp_path):
    from ebsd_core.access import LOCAL_ONLY, listen_address

    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "lab.toml").write_text(f'[access]\npassword_hash = "{hash_password("lab password 1")}"\n')
    (project / ".streamlit" / "config.toml").write_text(f'[secrets]\nfiles = ["{tmp_path / "etc" / "lab.toml"}"]\n')
    assert listen_address(project) == ""
    (project / ".streamlit" / "config.toml").write_text('[secrets]\nfiles = ["elsewhere.toml"]\n')
    assert listen_address(project) == LOCAL_ONLY


def test_the_secrets_files_set_in_the_environment_are_the_ones_read(project, tmp_path, monkeypatch):
    """As ``streamlit run`` takes them (a service's ``Environment=STREAMLIT_SECRETS_FILES=...``), over the config
    file's; the test suite points them at an empty file, so that a lab's password in its checkout does not fail it."""
    from ebsd_core.access import LOCAL_ONLY, SECRETS_FILES_VARIABLE, listen_address

    (tmp_path / "lab.toml").write_text(f'[access]\npassword_hash = "{hash_password("lab password 1")}"\n')
    (project / ".streamlit" / "secrets.toml").write_text((tmp_path / "lab.toml").read_text())
    (tmp_path / "none.toml").write_text("")
    monkeypatch.setenv(SECRETS_FILES_VARIABLE, f" {tmp_path / 'none.toml'}  {tmp_path / 'lab.toml'}")
    assert listen_address(project) == ""
    monkeypatch.setenv(SECRETS_FILES_VARIABLE, str(tmp_path / "none.toml"))
    assert listen_address(project) == LOCAL_ONLY
    monkeypatch.setenv(SECRETS_FILES_VARIABLE, "")
    assert listen_address(project) == ""


def test_make_app_passes_the_address(tmp_path):
    """As `make app` runs it (dry run): this computer alone, every interface once a password is set, or as given."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("no make here")
    root = Path(APP).parent
    home = tmp_path / "home"
    # the account's secrets alone, not a password a lab set in this checkout
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "STREAMLIT_SECRETS_FILES": f"{home}/.streamlit/secrets.toml"}

    def streamlit_command(*extra: str) -> str:
        done = subprocess.run(["make", "-n", "app", *extra], cwd=root, env=env, capture_output=True, text=True)
        return next(line for line in done.stdout.splitlines() if "streamlit run" in line)

    assert streamlit_command().endswith("--server.address 127.0.0.1")
    assert streamlit_command("ADDRESS=0.0.0.0").endswith("--server.address 0.0.0.0")
    (home / ".streamlit").mkdir(parents=True)
    (home / ".streamlit" / "secrets.toml").write_text(f'[access]\npassword_hash = "{hash_password("lab pass 12")}"\n')
    assert "--server.address" not in streamlit_command()


def _serving(port: int) -> bool:
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def make_app(tmp_path: Path, **env: str):
    """`make app` on a free port, in its own process group as under a supervisor; yields (process, port) once it
    serves, and kills whatever of it is left after."""
    import shutil
    import signal
    import subprocess
    import time

    from serving import free_port

    root = Path(APP).parent
    if shutil.which("make") is None or subprocess.run(["make", "-q", ".venv/.project"], cwd=root).returncode:
        pytest.skip("no make, or no .venv made by it here that is up to date (make app would install first)")
    port = free_port()
    env = os.environ | {"EBSD_FEWSHOT_HOME": str(tmp_path / "home"), "EBSD_MODEL_STORE": str(tmp_path / "store")} | env
    with open(tmp_path / "make.log", "wb") as log:
        make = subprocess.Popen(
            ["make", "app", f"PORT={port}", "ADDRESS=127.0.0.1"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while not _serving(port) and time.monotonic() < deadline and make.poll() is None:
            time.sleep(0.5)
        assert _serving(port), (tmp_path / "make.log").read_text(errors="replace")[-2000:]
        yield make, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make.pid, signal.SIGKILL)


def test_a_sigterm_to_make_alone_stops_the_dashboard(tmp_path):
    """A supervisor that signals one process (supervisord's default) or `kill` of make's PID stopped make, and its
    shell, but left Streamlit serving on the port; make now runs Streamlit in place of the shell and passes SIGTERM
    on to it."""
    import signal
    import time

    with make_app(tmp_path) as (make, port):
        make.send_signal(signal.SIGTERM)  # to make alone
        make.wait(timeout=60)
        deadline = time.monotonic() + 60
        while _serving(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _serving(port)


def test_make_app_serves_with_a_home_streamlit_cannot_read(tmp_path):
    """Found running it under supervisord as a service account: the account inherited supervisord's HOME (/root),
    Streamlit read ~/.streamlit/secrets.toml as it started and ended in "PermissionError" before the engine could
    give itself another home. (A home under a file fails so for root too: "NotADirectoryError".)"""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with make_app(tmp_path, HOME=str(blocker / "home")) as (make, port):
        assert make.poll() is None and _serving(port)
    assert "cannot be written to: HyperSpy's settings" in (tmp_path / "make.log").read_text()


def test_the_runtime_requirements_bring_what_streamlits_login_needs():
    """Streamlit's OIDC login needs Authlib, its [auth] extra: without it a lab's "Log in" ended in an error. The
    test tools bring Authlib too (oidc-provider-mock), so the browser test of the login cannot see it missing."""
    import re

    requirements = (Path(APP).parent / "requirements.txt").read_text()
    streamlit = re.search(r"^streamlit(\[[^\]]*\])?", requirements, re.MULTILINE)
    assert streamlit and "auth" in (streamlit.group(1) or ""), streamlit


def test_a_taken_port_is_said_with_what_to_do():
    """Found on review: a second `make app` (the first still running in another terminal) ended in Streamlit's "Port
    8501 is not available"; `make app` now says who may hold it and what to run instead."""
    import socket

    from ebsd_core.access import taken_port_problem

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = str(listener.getsockname()[1])
        problem = taken_port_problem(port, "127.0.0.1")
        assert problem.startswith(f"Port {port} is taken by another program on this computer")
        assert f"open http://localhost:{port} to use that one" in problem
        assert problem.endswith(f"or run make app PORT={int(port) + 1}")
        assert taken_port_problem(port, "") is not None  # every interface: this one too
    assert taken_port_problem(port, "127.0.0.1") is None  # closed: free again
    assert taken_port_problem("http", "127.0.0.1") is None  # Streamlit's own words for what is not a port
