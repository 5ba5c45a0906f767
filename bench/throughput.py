"""End-to-end inference throughput: read, preprocess and classify, patterns per second.

Targets: >= 1,000 patterns/s on the 2-core CPU, >= 100,000 patterns/s on one
H100/H200 (when CUDA is available) at the default input size. The CPU is measured
in float32 and bf16, eager and compiled (what a scan of 20,000 patterns or more
gets by default: compiled, float32 unless the model passed its bf16 check).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import OUT, emit, parser

from ebsd_core.backbones import create_model, select_device
from ebsd_core.inference import COMPILE_MIN_PATTERNS, inference_precision, predict_source
from ebsd_core.io.dataset import Dataset, write_dataset
from ebsd_core.io.readers import open_patterns
from ebsd_core.preprocess import PreprocessConfig
from ebsd_core.store import ModelCard


def make_scan(n: int, size: int) -> str:
    path = OUT / f"throughput-{n}-{size}.h5"
    if not path.exists():
        rng = np.random.default_rng(0)
        patterns = rng.integers(0, 255, (n, size, size), dtype=np.uint8)
        write_dataset(Dataset(patterns, np.zeros(n), [225, 229], np.full(n, "x", dtype=object)), path)
    return str(path)


def measure(
    device: str, n: int, size: int, input_size: int, batch: int, precision: str = "fp32", compile: str = "never"
) -> float:
    """Patterns/s of one run over ``n`` patterns; compiling (from the on-disk cache after the warm-up) is included."""
    model = create_model("efficientnet_lite0", 6, pretrained=False).to(device, memory_format=torch.channels_last).eval()
    card = ModelCard("efficientnet_lite0", [221, 223, 225, 227, 229, 230], PreprocessConfig(size=input_size))
    source = open_patterns(make_scan(n, size), lazy=True)
    warm_up = source.__class__(**{**source.__dict__, "patterns": source.patterns[:batch]})
    predict_source(model, card, warm_up, precision=precision, compile=compile)
    start = time.perf_counter()
    predict_source(model, card, source, batch_size=batch, precision=precision, compile=compile)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--size", type=int, default=60)
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    device = select_device()
    result = {"benchmark": "throughput", "pattern_size": args.size, "input_size": args.input_size}
    n_cpu = 4096 if args.quick else COMPILE_MIN_PATTERNS
    result["cpu_patterns"] = n_cpu
    for precision in ("fp32", "bf16"):
        for compile in ("never", "always"):
            speed = measure("cpu", n_cpu, args.size, args.input_size, 512, precision, compile)
            result[f"cpu_{precision}_{'compiled' if compile == 'always' else 'eager'}_patterns_per_s"] = round(speed, 1)
    # what a scan of >= 20,000 patterns gets by default: compiled, fp32 unless the model passed its bf16 check
    checked = ModelCard("efficientnet_lite0", [225], PreprocessConfig(), training={"bf16_check": {"passed": True}})
    result["cpu_native_bf16"] = inference_precision(torch.device("cpu"), "auto", checked) == "bf16"
    result["cpu_patterns_per_s"] = result["cpu_fp32_compiled_patterns_per_s"]
    if device.type == "cuda":
        result["cuda_patterns_per_s"] = round(
            measure("cuda", 200_000 if args.quick else 1_000_000, args.size, args.input_size, 4096, "bf16"), 1
        )
    result["targets"] = {"cpu": 1000, "cuda": 100000}
    emit(result)


if __name__ == "__main__":
    main()
