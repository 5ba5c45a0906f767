"""Start the dashboard as a real server (``streamlit run app.py``) for browser tests and the load benchmark."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_url(port: int, options: tuple[str, ...] = ()) -> str:
    """The dashboard's address on ``port``, under the path that ``--server.baseUrlPath`` in ``options`` sets."""
    base = (options[options.index("--server.baseUrlPath") + 1] if "--server.baseUrlPath" in options else "").strip("/")
    return f"http://127.0.0.1:{port}" + (f"/{base}" if base else "")


def start_dashboard(
    port: int,
    env: dict[str, str],
    timeout_s: float = 60,
    options: tuple[str, ...] = (),
    log: Path | None = None,
) -> subprocess.Popen:
    """``streamlit run app.py`` on 127.0.0.1:``port`` with ``env`` added and Streamlit ``options``
    (``--secrets.files``, ...); returns once it answers /health. The server's output goes to ``log``."""
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true", *options]
    output = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (the child holds it)
    process = subprocess.Popen(command, cwd=ROOT, env=os.environ | env, stdout=output, stderr=subprocess.STDOUT)
    if log:
        output.close()
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{dashboard_url(port, options)}/_stcore/health", timeout=2)
            return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"streamlit did not start within {timeout_s:.0f} s")


def stop_dashboard(process: subprocess.Popen, grace_s: float = 60) -> None:
    """Stop a server started by :func:`start_dashboard`: SIGTERM, then SIGKILL if it has not exited within
    ``grace_s`` (in one full-suite run a server took over 20 s to stop after a Grad-CAM; not seen when rerun alone)."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_idle(page, timeout_ms: int = 120_000) -> None:
    """Until the page's script has run to its end (Streamlit's running indicator gone). The click on the Results
    page's model download (a zip made on click) started no download in one full-suite run on 2 busy cores, and in 1
    of 4 runs of that test with both cores kept busy; waiting for the run to end first, in none of 5."""
    page.wait_for_timeout(1000)  # a rerun just asked for shows its indicator after a moment
    page.get_by_test_id("stStatusWidgetRunningIcon").wait_for(state="detached", timeout=timeout_ms)


def as_running_server(init):
    """Wrap Streamlit's ``PagesManager.__init__`` so that AppTest runs as on a server that is already up.

    AppTest starts every run as a freshly started server, on which Streamlit runs a page alone, without
    app.py (its pages/ folder fallback, which ``pages.common.enter_page`` turns off with a rerun). A real
    server does that at most once.
    """

    def warm_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        type(self).uses_pages_directory = False

    return warm_init
