"""Damage every word of an HDF5 file's metadata in turn and read it as a user would: memory and time per case.

HDF5 trusts the sizes its metadata declares (a variable-length string's length made it allocate 4 GB for one
damaged 92 kB file), and the fuzzer's "huge" mutations write only in a file's first 4 kB. Here 0x7fffffff is
written at every ``--step``-th byte outside the datasets' own data (object headers, B-trees, heaps, the
superblock, the variable-length values' lengths), one position per case, for each HDF5 format of the fuzzing
harness. Each case's peak memory is measured on its own (Linux resets the peak when asked, through
/proc/self/clear_refs).

Prints JSON: per format the cases, their outcomes, the largest memory growth of one case, the slowest case,
findings (anything but the project's own error) and refusals that pass on Python's own words (``ValueError: ...``),
still to be put in words a user can act on.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import ROOT, emit, parser

sys.path.insert(0, str(ROOT / "tests"))
from fuzzing import FORMATS, outcome, python_words_summary  # noqa: E402

HDF5_FORMATS = ["project-hdf5", "kikuchipy-h5ebsd", "oxford-h5oina", "edax-oim-h5", "emsoft-h5", "bruker-h5"]
DAMAGE = b"\xff\xff\xff\x7f"


def _peak_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _data_extents(path: Path) -> list[tuple[int, int]]:
    """(start, stop) in the file of every dataset's own data, contiguous or chunk by chunk; not those of
    variable-length datasets, whose data are the values' lengths and addresses."""
    import h5py

    extents = []

    def visit(_name, item):
        if not isinstance(item, h5py.Dataset) or h5py.check_vlen_dtype(item.dtype) or _variable_string(item):
            return
        if (offset := item.id.get_offset()) is not None:
            extents.append((offset, offset + item.id.get_storage_size()))
        elif item.chunks:
            for index in range(item.id.get_num_chunks()):
                chunk = item.id.get_chunk_info(index)
                extents.append((chunk.byte_offset, chunk.byte_offset + chunk.size))

    with h5py.File(path, "r") as file:
        file.visititems(visit)
    return extents


def _variable_string(item) -> bool:
    import h5py

    info = h5py.check_string_dtype(item.dtype)
    return info is not None and info.length is None


def metadata_positions(path: Path, step: int) -> list[int]:
    extents = _data_extents(path)
    size = path.stat().st_size
    return [p for p in range(0, size - len(DAMAGE) + 1, step) if not any(a <= p < b for a, b in extents)]


def sweep_format(name: str, step: int, limit: int | None, folder: Path) -> dict:
    fmt = FORMATS[name]
    (folder / "sample").mkdir(parents=True)
    sample = fmt.make(folder / "sample")
    raw = sample.read_bytes()
    positions = metadata_positions(sample, step)[:limit]
    target = folder / f"case{sample.suffix}"
    counts: Counter = Counter()
    findings: Counter = Counter()
    refusals: Counter = Counter()
    worst = {"growth_mb": 0.0, "position": None}
    slowest = {"seconds": 0.0, "position": None}
    for position in positions:
        damaged = bytearray(raw)
        damaged[position : position + len(DAMAGE)] = DAMAGE
        target.write_bytes(bytes(damaged))
        _reset_peak()
        before, start = _peak_kb(), time.perf_counter()
        try:
            counts[outcome(fmt.read, target, refusals)] += 1
        except Exception as exc:  # a finding: count it and go on
            counts["finding"] += 1
            findings[f"{exc.__class__.__name__}: {str(exc)[:120]}"] += 1
        seconds, growth = time.perf_counter() - start, (_peak_kb() - before) / 1024
        if growth > worst["growth_mb"]:
            worst = {"growth_mb": round(growth, 1), "position": position}
        if seconds > slowest["seconds"]:
            slowest = {"seconds": round(seconds, 2), "position": position}
    shutil.rmtree(folder)
    return {
        "file_bytes": len(raw),
        "cases": len(positions),
        **counts,
        "largest_memory_growth": worst,
        "slowest_case": slowest,
        "findings": dict(findings.most_common(10)),
        **python_words_summary(refusals),
    }


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--step", type=int, default=4, help="bytes between damaged positions (default 4)")
    p.add_argument("--limit", type=int, help="positions per format (default: all)")
    p.add_argument("--formats", help=f"comma-separated (default: {','.join(HDF5_FORMATS)})")
    args = p.parse_args()
    names = args.formats.split(",") if args.formats else HDF5_FORMATS
    if unknown := [name for name in names if name not in HDF5_FORMATS]:
        p.error(f"unknown HDF5 format(s) {', '.join(unknown)}; known: {', '.join(HDF5_FORMATS)}")
    step, limit = (64, 200) if args.quick else (args.step, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: sweep_format(name, step, limit, Path(tmp) / name) for name in names}
    emit({"benchmark": "hdf5_sweep", "step": step, "damage": DAMAGE.hex(), "formats": results})
