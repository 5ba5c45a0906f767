"""End-to-end inference throughput: read, preprocess and classify, patterns per second.

Targets: >= 1,000 patterns/s on the 2-core CPU, >= 100,000 patterns/s on one
H100/H200 (when CUDA is available) at the default input size, one view per pattern
(``--views 1``). The CPU is measured in float32 (and bf16 where it has native bf16), eager and
compiled (what a large scan gets by default: compiled, float32 unless the model passed its bf16
check; the compile seconds are reported apart), and with the test-time views a newly trained model
uses.

``--model models/NAME --scan FILE`` measures a trained model on a labelled scan instead: patterns/s
with one view, with every view for every pattern, and with the other views only for the patterns
whose first view is unsure (``views_below``, what newly trained models do), and how often those
answers agree with every view's. Random weights are never sure, so only a trained model shows it.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time

import numpy as np
import torch
from _common import OUT, emit, parser

from ebsd_core.backbones import create_model, select_device
from ebsd_core.inference import (
    COMPILE_MIN_WORK,
    CompiledForInference,
    cpu_has_native_bf16,
    default_batch_size,
    model_probabilities,
    predict_source,
)
from ebsd_core.io.dataset import Dataset, write_dataset
from ebsd_core.io.readers import open_patterns
from ebsd_core.preprocess import PreprocessConfig
from ebsd_core.store import ModelCard
from ebsd_core.train import TrainConfig

SCAN_PATTERNS = 20_000  # patterns per run without --quick


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_scan(n: int, size: int) -> str:
    path = OUT / f"throughput-{n}-{size}.h5"
    if not path.exists():
        rng = np.random.default_rng(0)
        patterns = rng.integers(0, 255, (n, size, size), dtype=np.uint8)
        write_dataset(Dataset(patterns, np.zeros(n), [225, 229], np.full(n, "x", dtype=object)), path)
    return str(path)


def measure(
    device: str,
    n: int,
    size: int,
    input_size: int,
    batch: int,
    precision: str = "fp32",
    compile: bool = False,
    views: int = 1,
    scatter_views: bool = False,
) -> tuple[float, float]:
    """Patterns/s of one run over ``n`` patterns, and the seconds compiling took before it (0 uncompiled).

    The model is compiled once, on a warm-up batch, as for a scan; frozen weights are not cached on disk,
    so a run pays the compile seconds every time: a scan gains only when it is large (``compile_wanted``).
    ``scatter_views``: each pattern gets views of its own, as on a phase map.
    """
    model = create_model("efficientnet_lite0", 6, pretrained=False).to(device, memory_format=torch.channels_last).eval()
    classes = [221, 223, 225, 227, 229, 230]
    card = ModelCard("efficientnet_lite0", classes, PreprocessConfig(size=input_size), views=views)
    source = open_patterns(make_scan(n, size), lazy=True)
    runner = CompiledForInference(model) if compile else model
    warm_up = source.__class__(**{**source.__dict__, "patterns": source.patterns[:batch]})
    start = time.perf_counter()
    run = dict(batch_size=batch, precision=precision, compile="never", scatter_views=scatter_views)
    predict_source(runner, card, warm_up, **run)
    compile_seconds = time.perf_counter() - start if compile else 0.0
    start = time.perf_counter()
    predict_source(runner, card, source, **run)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start), compile_seconds


def measure_cpu(args) -> dict:
    n_cpu = 4096 if args.quick else SCAN_PATTERNS
    result = {"cpu_patterns": n_cpu}
    native_bf16 = cpu_has_native_bf16()
    result["cpu_native_bf16"] = native_bf16
    # without native bf16 it is emulated (25 patterns/s on a Zen 3) and precision="auto" never picks it
    for precision in ("fp32", "bf16") if native_bf16 else ("fp32",):
        for compile in (False, True):
            speed, seconds = measure("cpu", n_cpu, args.size, args.input_size, 512, precision, compile)
            name = f"cpu_{precision}_{'compiled' if compile else 'eager'}"
            result[f"{name}_patterns_per_s"] = round(speed, 1)
            if compile:
                result[f"{name}_compile_s"] = round(seconds, 1)
            log(f"{name}: {speed:,.0f} patterns/s")
    result["cpu_patterns_per_s"] = result["cpu_fp32_compiled_patterns_per_s"]
    # the patterns from which precision="auto" compiles, with one view per pattern
    result["cpu_compiles_from_patterns"] = math.ceil(COMPILE_MIN_WORK / args.input_size**2)
    # a newly trained model averages TrainConfig.views test-time views per pattern (--views 1 turns them off)
    views = TrainConfig.views
    speed, _ = measure("cpu", n_cpu, args.size, args.input_size, 512, "fp32", True, views)
    result[f"cpu_fp32_compiled_views{views}_patterns_per_s"] = round(speed, 1)
    return result


def measure_views(model_dir: str, scan: str, views_below: float) -> dict:
    """One view, every view and the unsure patterns' views of a trained model on a labelled scan, eager
    float32 (compiling, worth it for large scans, would speed all three alike): patterns/s, accuracy
    and agreement with every view's answers; ``cuts``: the same for other values of ``views_below``, from
    the one-view and every-view probabilities (share of patterns that skip the other views)."""
    from ebsd_core.inference import decide
    from ebsd_core.store import load_model

    model, card = load_model(model_dir)
    source = open_patterns(scan, lazy=False)
    views = max(card.views, TrainConfig.views)
    truth = None
    if source.labels is not None:
        truth = np.array([card.classes.index(source.classes[i]) for i in source.labels])
    result = {"model": model_dir, "scan": scan, "patterns": len(source), "input_size": card.input_size}
    result |= {"views": views, "views_below": views_below}
    runs = {"one_view": (1, None), "every_view": (views, None), "unsure_get_views": (views, views_below)}
    probs = {}
    for name, (n_views, below) in runs.items():
        run_card = dataclasses.replace(card, views=n_views, views_below=below)
        warm_up = dataclasses.replace(source, patterns=source.patterns[:64])
        predict_source(model, run_card, warm_up, compile="never", precision="fp32")
        start = time.perf_counter()
        probs[name] = predict_source(model, run_card, source, compile="never", precision="fp32").probabilities
        result[f"{name}_patterns_per_s"] = round(len(source) / (time.perf_counter() - start), 1)

    def scores(p: np.ndarray) -> dict:
        answer = decide(p, card.unknown_threshold)
        out = {"agreement_with_every_view": round(float((answer == every).mean()), 4)}
        return out | ({} if truth is None else {"accuracy": round(float((answer == truth).mean()), 4)})

    every = decide(probs["every_view"], card.unknown_threshold)
    result |= {name: scores(p) for name, p in probs.items()}
    sure = probs["one_view"].max(axis=1)
    result["cuts"] = {
        f"{cut:g}": {
            "skipped": round(float((sure >= cut).mean()), 4),
            **scores(np.where((sure >= cut)[:, None], probs["one_view"], probs["every_view"])),
        }
        for cut in (0.5, 0.6, 0.7, 0.8, 0.9)
    }
    return result


def model_only(n: int, input_size: int, batch: int, precision: str) -> float:
    """Patterns/s of the network alone on preprocessed patterns already on the GPU: the ceiling."""
    model = create_model("efficientnet_lite0", 6, pretrained=False).to("cuda", memory_format=torch.channels_last).eval()
    x = torch.randn(batch, input_size, input_size, device="cuda")
    model_probabilities(model, x, precision)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n // batch):
        model_probabilities(model, x, precision)
    torch.cuda.synchronize()
    return (n // batch) * batch / (time.perf_counter() - start)


def measure_cuda(args) -> dict:
    """The GPU, most telling first (each figure is logged as it comes, for a run cut short): the defaults of a
    scan, then what a newly trained model and a phase map do (every view, views of each point's own), the
    network alone, eager, and 120 px patterns at a 128 px input in float32 and bf16."""
    n = args.cuda_patterns or (100_000 if args.quick else 500_000)
    result = {"gpu": torch.cuda.get_device_name(0), "cuda_patterns": n}

    def record(key: str, n_run: int, size: int, input_size: int, **run) -> None:
        speed, seconds = measure("cuda", n_run, size, input_size, **run)
        result[f"{key}_patterns_per_s"] = round(speed, 1)
        if run.get("compile"):
            result[f"{key}_compile_s"] = round(seconds, 1)
        log(f"{key}: {speed:,.0f} patterns/s" + (f" (compiled in {seconds:.1f} s)" if run.get("compile") else ""))

    views = TrainConfig.views
    scan = (n, args.size, args.input_size)
    # what a scan gets by default on a GPU at 64 px: float32, compiled, 4096-pattern batches, one view
    record("cuda_fp32_compiled_batch4096", *scan, batch=4096, compile=True)
    result["cuda_patterns_per_s"] = result["cuda_fp32_compiled_batch4096_patterns_per_s"]
    record(f"cuda_fp32_compiled_batch4096_views{views}", *scan, batch=4096, compile=True, views=views)
    record(
        f"cuda_fp32_compiled_batch4096_views{views}_own",
        *scan,
        batch=4096,
        compile=True,
        views=views,
        scatter_views=True,
    )
    for precision in ("fp32", "bf16"):
        speed = model_only(n, args.input_size, 4096, precision)
        result[f"cuda_{precision}_model_only_patterns_per_s"] = round(speed)
        log(f"cuda_{precision}_model_only: {speed:,.0f} patterns/s")
    record("cuda_fp32_eager_batch4096", *scan, batch=4096)
    # bf16 at 64 px and batches of 16,384 were slower or no faster on the H100 (bench/RESULTS.md): not repeated
    # 120 px patterns at a 128 px input, where --precision auto picks bf16 (for models that pass the check)
    large = (max(n // 5, 4096), 2 * args.size, 2 * args.input_size)
    batch = default_batch_size(torch.device("cuda"), (large[1], large[1]))
    result["cuda_patterns_128px"] = large[0]
    for precision in ("fp32", "bf16"):
        record(f"cuda_128px_{precision}_compiled_batch{batch}", *large, batch=batch, precision=precision, compile=True)
    return result


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--size", type=int, default=60)
    p.add_argument("--skip-cpu", action="store_true", help="measure only the GPU (on a GPU machine)")
    p.add_argument("--cuda-patterns", type=int, help="patterns of the GPU runs (default 500,000; 100,000 with --quick)")
    p.add_argument("--model", help="a trained model (models/NAME): measure its test-time views on --scan")
    p.add_argument("--scan", help="with --model: a labelled scan or dataset of the model's classes")
    p.add_argument("--views-below", type=float, default=TrainConfig.views_below, help="with --model")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.model:
        if not args.scan:
            p.error("--model needs --scan")
        emit({"benchmark": "throughput-views", **measure_views(args.model, args.scan, args.views_below)})
        return
    device = select_device()
    result = {"benchmark": "throughput", "pattern_size": args.size, "input_size": args.input_size}
    if not args.skip_cpu:
        result.update(measure_cpu(args))
    if device.type == "cuda":
        result.update(measure_cuda(args))
    result["targets"] = {"cpu": 1000, "cuda": 100000}
    emit(result)


if __name__ == "__main__":
    main()
