"""The benchmark scripts as `make bench` starts them: ``bench/NAME.py --quick`` and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Runs each script as __main__ up to its parse_args, which then stops it: what the command line asks of it, without
# the benchmark's work. A script that needs more than --quick ends in argparse's exit 2 and its message.
PARSE_ONLY = """
import argparse, contextlib, io, json, runpy, sys

class Parsed(Exception):
    pass

parse_args = argparse.ArgumentParser.parse_args

def parse_then_stop(self, *args, **kwargs):
    parse_args(self, *args, **kwargs)
    raise Parsed

argparse.ArgumentParser.parse_args = parse_then_stop
sys.path.insert(0, "bench")  # as python puts a script's folder first: they import _common
outcome = {}
for script in sys.argv[1:]:
    sys.argv = [script, "--quick"]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            runpy.run_path(script, run_name="__main__")
        outcome[script] = "never parsed its arguments"
    except Parsed:
        outcome[script] = "ok"
    except SystemExit as exit:
        outcome[script] = f"exit {exit.code}: {stderr.getvalue().strip().splitlines()[-1:]}"
print(json.dumps(outcome))
"""


def test_every_benchmark_starts_with_quick_alone():
    scripts = sorted(str(path) for path in (ROOT / "bench").glob("[!_]*.py"))
    assert len(scripts) >= 15
    run = subprocess.run(
        [sys.executable, "-c", PARSE_ONLY, *scripts], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-2000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome == dict.fromkeys(scripts, "ok")


def test_the_readmes_nginx_site_is_the_one_the_proxy_benchmark_checks(monkeypatch):
    """bench/proxy.py --proxy nginx drives a browser through this site; the README's copy must not drift from it."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from proxy import nginx_site

    readme = (ROOT / "README.md").read_text()
    start = readme.index("  map $http_upgrade $connection_upgrade {")
    block = readme[start : readme.index("  ```", start)]
    lines = [line[2:].split("  #")[0].rstrip() for line in block.splitlines()]  # the list's indent; comments
    certificate, key = Path("/etc/ssl/lab.example.pem"), Path("/etc/ssl/lab.example.key")
    assert "\n".join(lines) + "\n" == nginx_site(443, 8501, certificate, key)


@pytest.mark.parametrize("start", ["  [Unit]\n", "  [program:ebsd-fewshot]\n"])
def test_the_readmes_service_files_are_the_ones_the_service_benchmark_checks(monkeypatch, start):
    """bench/service.py runs this supervisord program (with its own checkout, account and folders) and verifies this
    systemd unit; the README's copies must not drift from them."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from service import README_LOG, README_SERVICE, supervisor_program, systemd_unit

    readme = (ROOT / "README.md").read_text()
    begin = readme.index(start)
    block = readme[begin : readme.index("  ```", begin)]
    text = "\n".join(line[2:] for line in block.splitlines()) + "\n"  # the list's indent
    expected = systemd_unit(*README_SERVICE) if "Unit" in start else supervisor_program(*README_SERVICE, README_LOG)
    assert text == expected
