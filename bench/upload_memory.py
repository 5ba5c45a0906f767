"""Server memory held for uploads: the dashboard as `make app` runs it (its malloc settings), a file of ``--mb`` MB
uploaded on the Data page in each of ``--uploads`` browser sessions (headless Chromium), their tabs then closed, and
the server's resident memory at a later visit, after their time to reconnect (``server.disconnectedSessionTTL``,
10 s here) and the once-a-minute release (``pages.common.release_memory_of_ended_sessions``).

Streamlit holds each upload in the server's memory; without the release, three 600 MB uploads held the server at
3.3 GB for good (bench/RESULTS.md).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, clean_up_on_sigterm, emit, parser

sys.path.insert(0, str(ROOT / "tests"))
from serving import CHROMIUM, CHROMIUM_FLAGS, free_port, start_dashboard, stop_dashboard  # noqa: E402

from ebsd_core.memory import GLIBC_TUNABLES  # noqa: E402

RELEASE_PERIOD_S = 60  # release_memory_of_ended_sessions runs at most this often
SESSION_TTL_S = 10


def resident_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def upload_in_a_session(browser, url: str, scan: Path) -> None:
    """A new tab: the Data page, the scan dropped on its uploader, until the page shows it; then another page."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/data")
    uploader = page.locator("input[type=file]").first
    uploader.wait_for(state="attached", timeout=120_000)
    uploader.set_input_files(str(scan), timeout=600_000)
    page.get_by_text(scan.name).first.wait_for(timeout=600_000)
    page.wait_for_timeout(5000)


def visit(url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        browser.new_page().goto(f"{url}/results")
        time.sleep(10)
        browser.close()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=600, help="size of each upload (MB)")
    p.add_argument("--uploads", type=int, default=3, help="sessions, each uploading one file")
    args = p.parse_args()
    clean_up_on_sigterm()
    mb, uploads = (50, 2) if args.quick else (args.mb, args.uploads)
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="upload-memory-"))
    scan = work / "big_scan.h5"  # random bytes: refused as a scan once saved, as Streamlit held it before that
    with open(scan, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    env = {"EBSD_FEWSHOT_HOME": str(work / "home"), "EBSD_MODEL_STORE": str(work / "store")}
    env["GLIBC_TUNABLES"] = GLIBC_TUNABLES  # as `make app`
    port = free_port()
    ttl = ("--server.disconnectedSessionTTL", str(SESSION_TTL_S))
    server = start_dashboard(port, env, options=ttl, log=work / "server.log")
    url, result = f"http://127.0.0.1:{port}", {"upload_mb": mb, "uploads": uploads}
    try:
        visit(url)  # the first run imports torch and friends
        result["resident_mb_before"] = resident_mb(server.pid)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            for n in range(uploads):
                upload_in_a_session(browser, url, scan)
                result[f"resident_mb_after_upload_{n + 1}"] = resident_mb(server.pid)
            browser.close()
        time.sleep(RELEASE_PERIOD_S + SESSION_TTL_S + 5)
        result["resident_mb_tabs_closed"] = resident_mb(server.pid)
        visit(url)
        result["resident_mb_after_a_later_visit"] = resident_mb(server.pid)
    finally:
        stop_dashboard(server)
        shutil.rmtree(work, ignore_errors=True)  # the uploads, saved in the sessions' folders too
    emit(result)


if __name__ == "__main__":
    main()
