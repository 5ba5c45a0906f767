"""Fuzz every reader with N mutated files per format (default 1,000) and count the outcomes.

A case is "read" (the mutation left a valid file), "refused" (the project's own error with a
message) or a finding: any other exception or a hang, listed with its type and message. Refusals
that pass on Python's own words (``ValueError: ...``) are counted and listed apart, as messages
still to be put in words a user can act on.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import ROOT, emit, parser

sys.path.insert(0, str(ROOT / "tests"))
from fuzzing import FORMATS, case_file, outcome, python_words_summary  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402


def fuzz_format(name: str, cases: int, folder: Path) -> dict:
    fmt = FORMATS[name]
    (folder / "sample").mkdir(parents=True)
    sample = fmt.make(folder / "sample")
    target, strategy = case_file(name, sample, folder / "case")
    counts: Counter = Counter()
    findings: Counter = Counter()
    refusals: Counter = Counter()

    @settings(
        max_examples=cases, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(strategy)
    def case(data):
        target.write_bytes(data)
        try:
            counts[outcome(fmt.read, target, refusals)] += 1
        except Exception as exc:  # a finding: count it and go on
            counts["finding"] += 1
            findings[f"{exc.__class__.__name__}: {str(exc)[:120]}"] += 1

    start = time.perf_counter()
    case()
    return {
        "cases": sum(counts.values()),
        **counts,
        "seconds": round(time.perf_counter() - start, 1),
        "findings": dict(findings.most_common(10)),
        **python_words_summary(refusals),
    }


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--formats", help=f"comma-separated (default: all of {', '.join(FORMATS)})")
    args = p.parse_args()
    cases = 100 if args.quick else args.cases
    names = args.formats.split(",") if args.formats else list(FORMATS)
    if unknown := [name for name in names if name not in FORMATS]:
        p.error(f"unknown format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: fuzz_format(name, cases, Path(tmp) / name) for name in names}
    emit({"benchmark": "fuzz", "cases_per_format": cases, "formats": results})
