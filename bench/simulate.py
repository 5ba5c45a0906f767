"""Simulation speed: patterns per second (projection + detector model) at 60x60 and 120x120.

Target: >= 1,000 patterns/s at 60x60 on the 2-core CPU, detector model included.
"""

from __future__ import annotations

import time

from _common import emit, parser

from ebsd_core.phases import get_material
from ebsd_core.simulate import simulate_material


def rate(material, n: int, size: int) -> float:
    simulate_material(material, 32, size, seed=99)  # warm-up: master load, numba compile
    start = time.perf_counter()
    simulate_material(material, n, size, seed=1)
    return n / (time.perf_counter() - start)


def main() -> None:
    args = parser(__doc__).parse_args()
    n = 2000 if args.quick else 10000
    material = get_material("ni")
    results = {
        f"patterns_per_s_{size}": round(rate(material, n if size == 60 else n // 4, size), 1) for size in (60, 120)
    }
    emit({"benchmark": "simulate", "patterns": n, **results, "target_60": 1000})


if __name__ == "__main__":
    main()
