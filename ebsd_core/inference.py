"""Batched inference from any pattern source, on CPU or GPU, with an "unknown" decision."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ebsd_core.augment import resample_standardised, scattered_view_grids, view_grids
from ebsd_core.errors import CancelledError, ModelError
from ebsd_core.io.readers import PatternSource
from ebsd_core.preprocess import blank_patterns, checked_batch, image_quality_tensor, preprocess, preprocess_tensor
from ebsd_core.store import ModelCard

UNKNOWN = "unknown"
log = logging.getLogger(__name__)
# Compiling on a CPU imports torch.utils.cpp_extension, which warns "No CUDA runtime is found, using CUDA_HOME=..."
# where a CUDA toolkit is installed without a usable GPU: a microscopist mapping on the CPU read it as a fault. Where a
# GPU cannot be used, the engine says so itself (ebsd_core.backbones.unused_gpu_reason).
logging.getLogger("torch.utils.cpp_extension").addFilter(
    lambda record: not str(record.msg).startswith("No CUDA runtime is found")
)


def autocast_context(device: torch.device, input_size: int):
    """bf16 autocast for training on CUDA from ``GPU_BF16_MIN_INPUT`` pixels on; nothing elsewhere.

    A training step (batch 32, EfficientNet-Lite0) on an H200 took 42.7 ms in bf16 against 18.2 ms in float32
    at 64 px, and 18.8 against 18.1 ms at 128 px; CPU bf16 training is slower too (0.16 vs 0.08 s/step).
    """
    bf16 = device.type == "cuda" and input_size >= GPU_BF16_MIN_INPUT
    return inference_autocast(device, "bf16" if bf16 else "fp32")


PRECISIONS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX), where oneDNN runs it fastest.

    CPUs that only emulate bf16 would run it slower than float32, so they keep float32.
    """
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        flags = Path("/proc/cpuinfo").read_text().split()
    except (AttributeError, RuntimeError, OSError):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


BF16_MIN_AGREEMENT = 0.98  # share of patterns whose class must not change
BF16_MAX_MEAN_SHIFT = 0.02  # mean total-variation distance between the two probability vectors


GPU_BF16_MIN_INPUT = 128  # on an H100, bf16 is slower than float32 (TF32) at 64 px and faster from 128 px


def inference_precision(device: torch.device, precision: str = "auto", card: ModelCard | None = None) -> str:
    """The precision inference runs at.

    ``auto`` means bf16 where it is measured faster and the model passed :func:`bf16_check` when it
    was trained; float32 otherwise. bf16 is faster on CPUs that compute it natively (AVX512-BF16 or
    AMX: about twice as fast) and on a GPU from ``GPU_BF16_MIN_INPUT`` pixels on (H100, network
    alone: 74,000 vs 47,000 patterns/s at 128 px, but 138,000 vs 186,000 at 64 px). A badly
    conditioned model (huge activations) can change its answers in bf16, which is why every model is
    checked once.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        faster = card is not None and card.input_size >= GPU_BF16_MIN_INPUT
    else:
        faster = device.type == "cpu" and cpu_has_native_bf16()
    checked = card is not None and bool(card.training.get("bf16_check", {}).get("passed"))
    return "bf16" if faster and checked else "fp32"


def inference_autocast(device: torch.device, precision: str):
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bf16_check(model: nn.Module, batch: np.ndarray) -> dict:
    """Compare bf16 with float32 predictions on preprocessed patterns; ``passed`` allows bf16 under ``auto``."""
    device = model_device(model)
    if device.type not in ("cuda", "cpu"):
        return {"patterns": 0, "passed": False, "skipped": f"bf16 is not checked on {device.type}"}
    fp32 = predict_tensor(model, batch, "fp32")
    bf16 = predict_tensor(model, batch, "bf16")
    agreement = float((fp32.argmax(1) == bf16.argmax(1)).mean())
    shift = float(np.abs(fp32 - bf16).sum(1).mean() / 2)
    return {
        "patterns": len(batch),
        "agreement": round(agreement, 4),
        "mean_shift": round(shift, 4),
        "passed": agreement >= BF16_MIN_AGREEMENT and shift <= BF16_MAX_MEAN_SHIFT,
    }


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _softmax(model: nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    x = x.contiguous(memory_format=torch.channels_last)  # 2.5x faster on this 2-core CPU too
    step = CPU_MICRO_BATCH if x.device.type == "cpu" else len(x)
    with inference_autocast(x.device, precision):
        logits = torch.cat([model(chunk) for chunk in x.split(max(step, 1))]) if len(x) else model(x)
    return torch.softmax(logits.float(), dim=1)


def model_probabilities(
    model: nn.Module,
    batch: torch.Tensor,
    precision: str = "fp32",
    views: int = 1,
    first_point: int | None = None,
    views_below: float | None = None,
) -> torch.Tensor:
    """Softmax probabilities (N, C), float32 on the model's device, for preprocessed patterns (N, S, S) there.

    ``views > 1`` averages the probabilities of the pattern and of ``views - 1`` re-projections of it
    as if the crystal were turned (by up to ``augment.VIEW_ROTATION`` degrees, every other one
    mirrored): errors that belong to one orientation average out, at ``views`` times the cost.
    The views are the same for every pattern, unless ``first_point`` gives the scan index of the
    first pattern: then every point gets its own (:func:`ebsd_core.augment.scattered_view_grids`).
    ``views_below``: only patterns whose first view's top probability is below it get the other
    views; the others keep their first view's probabilities (None or 1: every pattern gets them all;
    on CUDA every pattern always does).
    """
    x = batch[:, None]
    probs = _softmax(model, x, precision)
    if views <= 1 or not len(x):
        return probs
    unsure = torch.arange(len(x), device=x.device)
    # Not on CUDA: picking the unsure patterns waits for the GPU (it stalls the read-ahead of predict_source),
    # and the compiled model pads every batch to one shape, so a GPU would do the same work, later.
    if views_below is not None and views_below < 1 and x.device.type != "cuda":
        unsure = unsure[probs.max(dim=1).values < views_below]
    if not len(unsure):
        return probs
    x = x[unsure]
    if first_point is None:
        grids = list(view_grids(x.shape[-1], int(views), str(x.device)))
    else:
        points = first_point + unsure.cpu()
        grids = [scattered_view_grids(x.shape[-1], points, v, str(x.device)) for v in range(1, int(views))]
    averaged = probs[unsure]
    for grid in grids:
        averaged += _softmax(model, resample_standardised(x, grid), precision)
    probs[unsure] = averaged / views
    return probs


@torch.inference_mode()
def predict_tensor(
    model: nn.Module,
    batch: np.ndarray,
    precision: str = "fp32",
    views: int = 1,
    views_below: float | None = None,
    first_point: int | None = None,
) -> np.ndarray:
    """Softmax probabilities for preprocessed patterns (N, S, S), in ``"fp32"`` or ``"bf16"``; ``views``,
    ``views_below`` and ``first_point`` as in :func:`model_probabilities`."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(model_device(model), non_blocking=True)
    return model_probabilities(model, x, precision, views, first_point, views_below).cpu().numpy()


CPU_MICRO_BATCH = 64  # activations of 64 patterns stay in cache: 1,650 patterns/s eager vs 1,230 at 256
CPU_BATCH = 256  # patterns read and preprocessed at a time on the CPU
GPU_BATCH = 4096  # on a GPU, for patterns up to 60x60 (H100: 110,700 patterns/s end to end)
GPU_BATCH_PIXELS = GPU_BATCH * 60 * 60  # larger patterns come in smaller batches: bounded GPU memory
#: Compiling takes about 20 s on 2 cores (every run: frozen weights are not cached on disk) and pays off once
#: the model has enough to do, counted in pattern pixels: patterns x input pixels x views every pattern gets.
#: Frozen and compiled, Lite0 ran 1.35x / 1.55x / 1.6x faster than uncompiled at 64 / 128 / 224 px (2-core
#: Zen 3), which breaks even at about 50,000 / 9,500 / 3,000 patterns: some 2e8 pattern pixels at each size.
COMPILE_MIN_WORK = 200_000_000
COMPILE_CHOICES = ("auto", "always", "never")


def can_compile(device: torch.device) -> bool:
    """torch.compile needs a C++ compiler on the CPU and Triton on CUDA; other devices keep eager mode."""
    if device.type == "cuda":
        return importlib.util.find_spec("triton") is not None
    return device.type == "cpu" and any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "c++", "clang++"))


def default_batch_size(device: torch.device, pattern_shape: tuple[int, int] = (60, 60)) -> int:
    """Patterns per batch: ``CPU_BATCH`` on the CPU; on a GPU as many as ``GPU_BATCH_PIXELS`` allows."""
    if device.type == "cpu":
        return CPU_BATCH
    return int(np.clip(GPU_BATCH_PIXELS // max(1, pattern_shape[0] * pattern_shape[1]), 64, GPU_BATCH))


def compile_wanted(choice: str, patterns: int, input_size: int, views: int = 1) -> bool:
    """Whether ``choice`` (auto, always, never) asks to compile for ``patterns`` patterns of ``input_size``
    pixels square, each classified ``views`` times (auto: from :data:`COMPILE_MIN_WORK` pattern pixels on)."""
    if choice not in COMPILE_CHOICES:
        raise ModelError(f"compile must be one of {', '.join(COMPILE_CHOICES)}, not {choice!r}")
    return choice == "always" or (choice == "auto" and patterns * input_size**2 * views >= COMPILE_MIN_WORK)


def views_for_all(card: ModelCard) -> int:
    """The test-time views every pattern is sure to get: all of them, or one when only the unsure get more."""
    return card.views if card.views_below is None or card.views_below >= 1 else 1


class CompiledForInference(nn.Module):
    """A model compiled once for inference; on the CPU with frozen weights (BatchNorm folded into the
    convolutions, weights packed for oneDNN once, ReLU6 and residual sums fused into the convolutions).

    The arithmetic stays float32 (logits within 3e-4 of eager mode). Frozen, Lite0 runs 1.35x faster
    than eager at a 64 px input and 1.6x at 224 px on a 2-core AVX2 CPU (bench/RESULTS.md); on an
    H100, compiled without freezing, 1.8x end to end (4096-pattern batches: 110,700 vs 60,700
    patterns/s). Batches are padded to one fixed shape so the graph compiles only once:
    ``batch_size``, by default the CPU's micro-batch or, on a GPU, the size of the first batch. If
    compiling fails (no working compiler, an unsupported backbone), it logs why and runs the model eagerly.
    """

    def __init__(self, model: nn.Module, batch_size: int | None = None):
        super().__init__()
        self.model = model
        on_cpu = model_device(model).type == "cpu"
        self.batch_size = batch_size or (CPU_MICRO_BATCH if on_cpu else None)
        self.freeze = on_cpu  # on CUDA it stays as measured on the H100 (not frozen)
        self.compiled = torch.compile(model, dynamic=False)
        self.failed = False

    def _run_compiled(self, chunk: torch.Tensor) -> torch.Tensor:
        # Dynamo decides whether to freeze from inductor's global flag when it traces (the first call or a
        # recompile); torch.compile(options={"freezing": True}) comes too late for that and froze nothing.
        from torch._inductor import config as inductor_config  # 2 s to import: only when compiling

        with inductor_config.patch(freezing=self.freeze):
            return self.compiled(chunk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return self.model(x)
        self.batch_size = self.batch_size or len(x)
        out = []
        for chunk in x.split(self.batch_size):
            n = len(chunk)
            if n < self.batch_size:
                chunk = torch.cat([chunk, chunk.new_zeros((self.batch_size - n, *chunk.shape[1:]))])
            chunk = chunk.contiguous(memory_format=torch.channels_last)
            try:
                out.append(self._run_compiled(chunk)[:n])
            except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to the same eager model
                log.warning("compiling failed (%s: %s); running the model without compiling", type(exc).__name__, exc)
                self.failed = True
                return self.model(x)
        return torch.cat(out)


def prepare_for_inference(model: nn.Module, compile: str, patterns: int, input_size: int, views: int = 1) -> nn.Module:
    """``model`` itself, or a :class:`CompiledForInference` wrapper when compiling pays off (:func:`compile_wanted`)."""
    if compile_wanted(compile, patterns, input_size, views) and can_compile(model_device(model)):
        return CompiledForInference(model)
    return model


def predict_patterns(
    model: nn.Module,
    card: ModelCard,
    patterns: np.ndarray,
    static_background: np.ndarray | None = None,
    batch_size: int = CPU_BATCH,
    source: str = "patterns",
    precision: str = "auto",
) -> np.ndarray:
    """Probabilities (N, C) for raw patterns, preprocessed as the model was trained."""
    precision = inference_precision(model_device(model), precision, card)
    out = []
    for start in range(0, len(patterns), batch_size):
        batch = preprocess(patterns[start : start + batch_size], card.preprocess, static_background, source)
        out.append(predict_tensor(model, batch, precision, card.views, card.views_below))
    return np.concatenate(out) if out else np.zeros((0, len(card.classes)), np.float32)


def decide(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Class index per row of ``probabilities`` (N, C), -1 where the top probability is below ``threshold`` or
    every class is equally likely (a blank pattern's, :func:`classify_tensor`: no class to pick at any threshold)."""
    top = probabilities.max(axis=1)
    tied = top == probabilities.min(axis=1)
    return np.where((top >= threshold) & ~tied, probabilities.argmax(axis=1), -1)


class Decisions:
    """Top probability and decided class of every row of ``self.probabilities`` (N, C) at ``self.threshold``.

    Both are worked out once per object (0.6 s for a map of 4 million points, asked for by every figure, fraction and
    score of a page): the probabilities are never changed in place, and ``dataclasses.replace`` makes a new object.
    """

    probabilities: np.ndarray
    threshold: float

    @functools.cached_property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1)

    @functools.cached_property
    def index(self) -> np.ndarray:
        """Class index per row, -1 where the model is not confident enough."""
        return decide(self.probabilities, self.threshold)


@dataclass
class Prediction(Decisions):
    probabilities: np.ndarray  # (N, C)
    classes: list[str]
    threshold: float
    quality: np.ndarray | None = None  # (N,) image quality of each pattern

    @property
    def labels(self) -> list[str]:
        return [self.classes[i] if i >= 0 else UNKNOWN for i in self.index]


def iter_source_batches(source: PatternSource, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, len(source), batch_size):
        yield start, source.run_batch(start, min(len(source), start + batch_size))


@dataclass
class _Launched:
    """One batch whose results are on their way back from the device."""

    start: int
    probabilities: torch.Tensor
    quality: torch.Tensor
    done: torch.cuda.Event | None = None

    def wait(self) -> tuple[np.ndarray, np.ndarray]:
        if self.done is not None:
            self.done.synchronize()
        return self.probabilities.numpy(), self.quality.numpy()


@torch.inference_mode()
def classify_tensor(
    model: nn.Module,
    card: ModelCard,
    raw: torch.Tensor,
    static_background: torch.Tensor | np.ndarray | None = None,
    precision: str = "fp32",
    first_point: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities (N, C) and image quality (N,) of raw patterns already on the model's device.

    ``first_point``: scan index of the first pattern, for views of each point's own (see
    :func:`model_probabilities`); None: the same views for every pattern.
    """
    batch = preprocess_tensor(raw, card.preprocess, static_background)
    probs = model_probabilities(model, batch, precision, card.views, first_point, card.views_below)
    blank = blank_patterns(raw)[:, None]
    # a blank frame holds no evidence: every class equally likely (decided unknown), quality 0
    probs = torch.where(blank, torch.full_like(probs, 1 / probs.shape[1]), probs)
    return probs, torch.where(blank[:, 0], 0.0, image_quality_tensor(batch))


def blank_points(quality: np.ndarray) -> np.ndarray:
    """Which results are of blank patterns: :func:`classify_tensor` gives them quality 0, which no pattern with
    any contrast gets (their probabilities, all equal, do not tell: a weak model can tie too)."""
    return np.asarray(quality) == 0


def _launch(
    model: nn.Module,
    card: ModelCard,
    raw: np.ndarray,
    background,
    source: str,
    precision: str,
    start: int,
    first_point: int | None = None,
) -> _Launched:
    """Queue one batch (``start``: its place in the results) on the model's device; on a GPU this
    returns before the batch is done. ``first_point`` as in :func:`classify_tensor`."""
    device = model_device(model)
    raw_tensor = torch.from_numpy(np.ascontiguousarray(checked_batch(raw, source))).to(device)
    probs, quality = classify_tensor(model, card, raw_tensor, background, precision, first_point)
    if device.type != "cuda":
        return _Launched(start, probs, quality)
    launched = _Launched(start, probs.to("cpu", non_blocking=True), quality.to("cpu", non_blocking=True))
    launched.done = torch.cuda.Event()
    launched.done.record()
    return launched


def predict_source(
    model: nn.Module,
    card: ModelCard,
    source: PatternSource,
    batch_size: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resize: bool = True,
    precision: str = "auto",
    compile: str = "auto",
    scatter_views: bool = False,
) -> Prediction:
    """Classify every pattern of a source in batches with bounded memory.

    ``scatter_views``: every pattern gets test-time views of its own instead of the same ones
    (for maps that the grain clean-up averages; see :func:`model_probabilities`).

    ``batch_size`` defaults to :func:`default_batch_size` (256 on the CPU, up to 4096 on a GPU),
    where preprocessing runs on the GPU too and the next batch is read while the
    GPU works on this one. ``compile``: ``auto`` compiles the model (CPU or CUDA)
    when the source gives it enough to do (:func:`compile_wanted`), ``always`` or
    ``never`` force the choice.
    """
    if not resize and source.pattern_shape != (card.input_size, card.input_size):
        raise ModelError(
            f"patterns are {source.pattern_shape[1]}x{source.pattern_shape[0]} but the model expects "
            f"{card.input_size}x{card.input_size}",
            source.path,
        )
    device = model_device(model)
    batch_size = batch_size or default_batch_size(device, source.pattern_shape)
    precision = inference_precision(device, precision, card)
    background = None if source.static_background is None else torch.as_tensor(source.static_background).to(device)
    probs = np.empty((len(source), len(card.classes)), dtype=np.float32)
    quality = np.empty(len(source), dtype=np.float32)
    runner = prepare_for_inference(model, compile, len(source), card.input_size, views_for_all(card))
    if runner is not model and progress:
        cost = "about 20 s, once per run" if device.type == "cpu" else "once per run"
        progress(0.0, f"compiling the model for the {device.type.upper()} ({cost})")

    def collect(launched: _Launched) -> None:
        stop = launched.start + len(launched.probabilities)
        probs[launched.start : stop], quality[launched.start : stop] = launched.wait()
        if progress:
            progress(stop / len(source), f"{stop:,}/{len(source):,} patterns")

    pending = None
    for start, raw in iter_source_batches(source, batch_size):
        if should_stop and should_stop():
            raise CancelledError("prediction cancelled")
        first_point = start if scatter_views else None
        launched = _launch(runner, card, raw, background, source.path, precision, start, first_point)
        if pending is not None:
            collect(pending)
        pending = launched
    if pending is not None:
        collect(pending)
    return Prediction(probs, card.class_symbols, card.unknown_threshold, quality)


def classify_batch(
    model: nn.Module,
    card: ModelCard,
    raw: np.ndarray,
    static_background: np.ndarray | None = None,
    source: str = "patterns",
    precision: str = "auto",
    first_point: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, C) and image quality (N,) of raw patterns; ``precision`` as in :func:`inference_precision`.

    ``first_point``: the scan index of ``raw[0]``, for views of each point's own (None: shared views).
    """
    precision = inference_precision(model_device(model), precision, card)
    return _launch(model, card, raw, static_background, source, precision, 0, first_point).wait()
