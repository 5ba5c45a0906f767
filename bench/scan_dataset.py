"""A labelled dataset from two full single-phase scans: time, peak memory and file size, with and without the cap.

Writes two kikuchipy h5ebsd scans of ``--count`` patterns of ``--size`` px (uniform noise, with a static
background, so the patterns are stored background-subtracted as float32, as a real scan's are) under bench/out, then
runs ``python -m ebsd_core dataset --scan A=Fm-3m --scan B=Im-3m`` in a fresh process each way:

- ``per-scan 1000``: the default, 1,000 patterns spread over each scan (``ebsd_core.assemble.PER_SCAN``);
- ``per-scan 0``: every pattern (what every scan got before the cap).

Reports seconds, the process's peak resident memory and the dataset file's size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import OUT, ROOT, emit, parser

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would report this process's peak
CHILD = (
    "import re, sys; from ebsd_core.cli import main; code = main(sys.argv[1:]); "
    "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
    "print(f'peak_kb={hwm}', file=sys.stderr); sys.exit(code)"
)


def make_scan(name: str, count: int, size: int, seed: int) -> Path:
    """A kikuchipy h5ebsd scan of ``count`` noise patterns (rows of 100) with a static background."""
    import kikuchipy as kp

    path = OUT / f"scan-{name}-{count}-{size}.h5"
    if not path.exists():
        rows = max(1, count // 100)
        patterns = np.random.default_rng(seed).integers(20, 255, (rows, count // rows, size, size), dtype=np.uint8)
        signal = kp.signals.EBSD(patterns)
        signal.static_background = np.full((size, size), 10, np.uint8)
        signal.save(str(path) + ".part.h5")
        Path(str(path) + ".part.h5").rename(path)
    return path


def make_dataset(scans: list[Path], per_scan: int, out: Path) -> dict:
    args = ["dataset", "--scan", f"{scans[0]}=Fm-3m", "--scan", f"{scans[1]}=Im-3m", "--per-scan", str(per_scan)]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args, "--out", str(out), "--force"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr)
    peak_kb = int(next(line for line in done.stderr.splitlines() if line.startswith("peak_kb="))[8:])
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "per_scan": per_scan,
        "patterns": summary["patterns"],
        "seconds": round(seconds, 1),
        "peak_memory_mb": round(peak_kb / 1024),
        "file_mb": round(out.stat().st_size / 2**20, 1),
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=40_000, help="patterns per scan")
    p.add_argument("--size", type=int, default=120, help="pattern size (px)")
    args = p.parse_args()
    count = 2_000 if args.quick else args.count
    OUT.mkdir(parents=True, exist_ok=True)
    scans = [make_scan(name, count, args.size, seed) for seed, name in enumerate(("a", "b"))]
    out = OUT / "scan-dataset.h5"
    runs = [make_dataset(scans, per_scan, out) for per_scan in (1000, 0)]
    out.unlink()
    emit({"benchmark": "scan_dataset", "scans": 2, "patterns_per_scan": count, "size": args.size, "runs": runs})


if __name__ == "__main__":
    main()
