"""Helpers shared by the benchmark scripts: argument parsing, machine info, JSON output, timed steps."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("EBSD_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "bench" / "out"

from ebsd_core.memory import keep_freed_memory  # noqa: E402  (needs ROOT on the path)

keep_freed_memory()  # as the command line does: EBSD_KEEP_FREED_MEMORY=0 measures without it


def clean_up_on_sigterm() -> None:
    """End on SIGTERM (``timeout``, ``kill``) through the script's ``finally`` clean-up, as on Ctrl-C: the servers and
    proxies it started are stopped, not left serving (the signal's default left them running)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a run of under about 2 minutes")
    return p


def machine() -> dict:
    import torch

    info = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def emit(result: dict) -> None:
    """Print the result as one JSON object on the last line."""
    print(json.dumps({"machine": machine(), **result}))


class Steps:
    """Runs the steps in turn; one that fails is recorded with what the page showed, and the rest still run."""

    def __init__(self) -> None:
        self.results: dict[str, dict] = {}

    def run(self, name: str, step, page=None) -> None:
        start = time.perf_counter()
        try:
            seen = step()
            self.results[name] = {"ok": True, "seconds": round(time.perf_counter() - start, 1), "seen": seen}
        except Exception as exc:  # a failed step is a finding: record it and go on
            shown = ""
            if page is not None:
                try:
                    shown = page.inner_text("body")[-1500:]
                except Exception:  # the page itself may be gone
                    shown = "(the page could not be read)"
            self.results[name] = {
                "ok": False,
                "seconds": round(time.perf_counter() - start, 1),
                "error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
                "page": shown,
            }
