"""The dashboard as a service that starts with the machine and comes back after a crash, as a lab runs it.

supervisord (``apt install supervisor``; not a dependency of the project) runs the README's program, with this
checkout, an account and folders of the command line's, as root runs it for a lab. Each step is checked and timed:
started (the health check answers under the base path, the page is drawn in Chromium where there is one and, but with
``--quick``, the Home demo runs and saves its model), the log
(make's line and Streamlit's, as they are written), the process's account, a crash (Streamlit killed with SIGKILL:
supervisord starts it again), a stop (``supervisorctl stop``: the port closed and no process left), a start again,
and supervisord's own shutdown. The README's systemd unit, as the README has it, is checked with
``systemd-analyze verify`` where that is on the PATH; it is not run here (bench/RESULTS.md says how it was run by hand
on a machine whose first process is not systemd, and why that is no benchmark).

The account (``--user``, default this one) must be able to run the checkout's ``.venv`` (``make`` says so where it
cannot): make it as that account (``sudo -u ACCOUNT make app``, then Ctrl-C). Prints JSON: one entry per step (ok,
seconds, what was seen).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

from _common import ROOT, Steps, clean_up_on_sigterm, emit, parser

sys.path.insert(0, str(ROOT / "tests"))
from serving import CHROMIUM, CHROMIUM_FLAGS, free_port  # noqa: E402

BASE_PATH = "ebsd"
PROGRAM = "ebsd-fewshot"
START_TIMEOUT_S = 180
HOME_TITLE = "Few-shot EBSD pattern classification"
TROUBLE_WORDS = ("Traceback", "Error", "Warning", "WARNING", "error:", "denied")
# the README's service: checkout, account, working folder, model store, data root, port; and supervisord's log
README_SERVICE = (
    Path("/srv/ebsd-fewshot"),
    "ebsd",
    Path("/srv/ebsd/home"),
    Path("/srv/ebsd/models"),
    Path("/srv/ebsd/data"),
    8501,
)
README_LOG = Path("/var/log/ebsd-fewshot.log")


def service_environment(home: Path, store: Path, data: Path) -> dict[str, str]:
    """What the service sets: its working folder and model store (lasting, the account's), the folder its users pick
    scans from by server path, and the proxy's path."""
    return {
        "EBSD_FEWSHOT_HOME": str(home),
        "EBSD_MODEL_STORE": str(store),
        "EBSD_DATA_ROOT": str(data),
        "STREAMLIT_SERVER_BASE_URL_PATH": BASE_PATH,
    }


def make_command(port: int) -> str:
    return f"/usr/bin/make app ADDRESS=127.0.0.1 PORT={port}"


def supervisor_program(checkout: Path, account: str, home: Path, store: Path, data: Path, port: int, log: Path) -> str:
    """The README's supervisord program: stopped and killed as a process group, started again after a crash."""
    environment = ",".join(f'{name}="{value}"' for name, value in service_environment(home, store, data).items())
    return textwrap.dedent(
        f"""\
        [program:{PROGRAM}]
        command={make_command(port)}
        directory={checkout}
        user={account}
        environment={environment}
        autorestart=true
        stopasgroup=true
        killasgroup=true
        stopwaitsecs=30
        redirect_stderr=true
        stdout_logfile={log}
        """
    )


def systemd_unit(checkout: Path, account: str, home: Path, store: Path, data: Path, port: int) -> str:
    """The README's systemd unit (systemd stops every process of the service, and sets the account's HOME)."""
    environment = [f"Environment={name}={value}" for name, value in service_environment(home, store, data).items()]
    lines = [
        "[Unit]",
        "Description=EBSD few-shot dashboard",
        "After=network.target",
        "",
        "[Service]",
        f"User={account}",
        f"WorkingDirectory={checkout}",
        *environment,
        f"ExecStart={make_command(port)}",
        "Restart=on-failure",
        "RestartSec=5",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def supervisord_conf(work: Path, program: str) -> str:
    return (
        textwrap.dedent(
            f"""\
        [unix_http_server]
        file={work / "supervisor.sock"}

        [supervisord]
        logfile={work / "supervisord.log"}
        pidfile={work / "supervisord.pid"}
        childlogdir={work}

        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

        [supervisorctl]
        serverurl=unix://{work / "supervisor.sock"}

        """
        )
        + program
    )


def health(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{BASE_PATH}/_stcore/health", timeout=5) as answer:
            return answer.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def control(work: Path, *args: str) -> str:
    done = subprocess.run(
        ["supervisorctl", "-c", str(work / "supervisord.conf"), *args], capture_output=True, text=True, timeout=120
    )
    return (done.stdout + done.stderr).strip()


def make_pid(work: Path) -> int:
    pid = int(control(work, "pid", PROGRAM) or 0)
    if pid <= 0:
        raise RuntimeError(f"{PROGRAM} is not running: {control(work, 'status', PROGRAM)}")
    return pid


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def group_left(pgid: int) -> list[str]:
    """The processes still in process group ``pgid``, as ``ps`` names them."""
    found = subprocess.run(["pgrep", "-a", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if line.strip()]


def page_drawn(port: int, store: Path, demo: bool) -> str:
    """The Home page drawn; with ``demo``, the Home demo run (1 epoch) and its model saved, as the service's account."""
    if CHROMIUM is None:
        return "no Chromium here: not drawn"
    from playwright.sync_api import sync_playwright
    from proxy import run_demo

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/{BASE_PATH}/")
        page.get_by_text(HOME_TITLE).wait_for(timeout=120_000)
        if not demo:
            browser.close()
            return f"{HOME_TITLE!r} drawn"
        start = time.perf_counter()
        run_demo(page)
        seconds = time.perf_counter() - start
        browser.close()
    models = [(m.name, pwd.getpwuid(m.stat().st_uid).pw_name) for m in store.iterdir() if m.is_dir()]
    return f"{HOME_TITLE!r} drawn; the Home demo (1 epoch) finished in {seconds:.1f} s; saved: {models}"


def started(port: int) -> str:
    wait_for(lambda: health(port) == "ok", START_TIMEOUT_S, "the health check")
    return "health: ok"


def log_lines(log: Path) -> list[str]:
    wanted = ("Serving this computer alone, as asked", "You can now view your Streamlit app", "home folder")
    text = wait_for(lambda: log.exists() and "You can now view" in log.read_text(errors="replace") and log, 30, "log")
    lines = text.read_text(errors="replace").splitlines()
    return [line.strip()[:300] for line in lines if any(w in line for w in wanted)]


def account_of(pid: int) -> str:
    return pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name


def crash(work: Path, port: int) -> str:
    before = make_pid(work)
    streamlit = children(before)
    if not streamlit:
        raise RuntimeError("no Streamlit process under make")
    os.kill(streamlit[0], signal.SIGKILL)
    wait_for(lambda: health(port) is None, 30, "the port closed after the crash")
    gone = time.perf_counter()
    wait_for(lambda: health(port) == "ok", START_TIMEOUT_S, "the health check after the crash")
    after = make_pid(work)
    if after == before:
        raise RuntimeError("the same make process: not started again")
    return f"killed Streamlit {streamlit[0]}; serving again {time.perf_counter() - gone:.1f} s later (make {after})"


def stop(work: Path, port: int) -> str:
    pid = make_pid(work)
    pgid = os.getpgid(pid)
    said = control(work, "stop", PROGRAM)
    if health(port) is not None:
        raise RuntimeError(f"still serving after {said!r}")
    try:
        wait_for(lambda: not group_left(pgid), 10, "the group's processes gone")
    except TimeoutError:
        raise RuntimeError(f"left: {group_left(pgid)}") from None
    return f"{said}; port closed, no process left of group {pgid}"


def shutdown(supervisord: subprocess.Popen, port: int) -> str:
    pid = subprocess.run(["pgrep", "-P", str(supervisord.pid)], capture_output=True, text=True).stdout.split()
    groups = {os.getpgid(int(p)) for p in pid}
    supervisord.terminate()
    supervisord.wait(timeout=60)
    left = [line for group in groups for line in group_left(group)]
    if health(port) is not None or left:
        raise RuntimeError(f"still serving or left: {left}")
    return f"supervisord ended ({supervisord.returncode}); port closed, nothing left"


def verify_unit(work: Path, unit: str) -> str:
    analyse = shutil.which("systemd-analyze")
    if analyse is None:
        return "no systemd-analyze here: not verified"
    path = work / f"{PROGRAM}.service"
    path.write_text(unit)
    done = subprocess.run([analyse, "verify", str(path)], capture_output=True, text=True, timeout=120)
    said = [line for line in (done.stdout + done.stderr).splitlines() if str(path) in line or PROGRAM in line]
    if done.returncode != 0 or said:
        raise RuntimeError(f"systemd-analyze verify ({done.returncode}): {said or done.stderr[-500:]}")
    return "systemd-analyze verify: no complaint"


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--user", default=pwd.getpwuid(os.getuid()).pw_name, help="the account the service runs as")
    p.add_argument("--checkout", type=Path, default=ROOT, help="the checkout it runs (its .venv made by --user)")
    args = p.parse_args()
    clean_up_on_sigterm()
    if shutil.which("supervisord") is None:
        sys.exit("error: no supervisord on the PATH (apt install supervisor)")
    work = Path(tempfile.mkdtemp(prefix="service-"))
    state = work / "state"  # the account's lasting folders
    for folder in (state / "home", state / "models", state / "data"):
        folder.mkdir(parents=True)
    account = pwd.getpwnam(args.user)
    shutil.chown(state, account.pw_uid, account.pw_gid)
    for folder in state.iterdir():
        shutil.chown(folder, account.pw_uid, account.pw_gid)
    work.chmod(0o755)
    port, log = free_port(), work / f"{PROGRAM}.log"
    checkout = args.checkout.resolve()
    program = supervisor_program(checkout, args.user, state / "home", state / "models", state / "data", port, log)
    (work / "supervisord.conf").write_text(supervisord_conf(work, program))
    steps = Steps()
    steps.run("systemd_unit", lambda: verify_unit(work, systemd_unit(*README_SERVICE)))  # as the README has it
    supervisord = subprocess.Popen(["supervisord", "-n", "-c", str(work / "supervisord.conf")], start_new_session=True)
    try:
        steps.run("started", lambda: started(port))
        steps.run("page", lambda: page_drawn(port, state / "models", demo=not args.quick))
        steps.run("log", lambda: log_lines(log))
        steps.run("account", lambda: account_of(children(make_pid(work))[0]))
        steps.run("crash", lambda: crash(work, port))
        steps.run("stop", lambda: stop(work, port))
        steps.run("start_again", lambda: control(work, "start", PROGRAM) + "; " + started(port))
        steps.run("shutdown", lambda: shutdown(supervisord, port))
    finally:
        if supervisord.poll() is None:
            os.killpg(supervisord.pid, signal.SIGTERM)
            supervisord.wait(timeout=60)
        said = log.read_text(errors="replace") if log.exists() else ""
        tail = said[-3000:]
        troubles = [line.strip()[:300] for line in said.splitlines() if any(w in line for w in TROUBLE_WORDS)]
        shutil.rmtree(work, ignore_errors=True)
    failed = [name for name, step in steps.results.items() if not step["ok"]]
    if failed:
        print(tail, file=sys.stderr)
    emit(
        {
            "benchmark": "service",
            "supervisord": subprocess.run(["supervisord", "--version"], capture_output=True, text=True).stdout.strip(),
            "user": args.user,
            "steps": steps.results,
            "log_troubles": troubles,  # the service log's lines of warnings and errors, the crash's included
            "failed": failed,
        }
    )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
