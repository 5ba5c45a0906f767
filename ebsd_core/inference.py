"""Batched inference from any pattern source, on CPU or GPU, with an "unknown" decision."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ebsd_core.errors import CancelledError, ModelError
from ebsd_core.io.readers import PatternSource
from ebsd_core.preprocess import image_quality, preprocess
from ebsd_core.store import ModelCard

UNKNOWN = "unknown"


def autocast_context(device: torch.device):
    """bf16 autocast on CUDA; nothing elsewhere (CPU bf16 is slower on most CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def predict_tensor(model: nn.Module, batch: np.ndarray) -> np.ndarray:
    """Softmax probabilities for preprocessed patterns (N, S, S)."""
    device = model_device(model)
    x = torch.from_numpy(np.ascontiguousarray(batch))[:, None].to(device, non_blocking=True)
    x = x.contiguous(memory_format=torch.channels_last)  # 2.5x faster on this 2-core CPU too
    with autocast_context(device):
        logits = model(x)
    return torch.softmax(logits.float(), dim=1).cpu().numpy()


def predict_patterns(
    model: nn.Module,
    card: ModelCard,
    patterns: np.ndarray,
    static_background: np.ndarray | None = None,
    batch_size: int = 256,
    source: str = "patterns",
) -> np.ndarray:
    """Probabilities (N, C) for raw patterns, preprocessed as the model was trained."""
    out = []
    for start in range(0, len(patterns), batch_size):
        batch = preprocess(patterns[start : start + batch_size], card.preprocess, static_background, source)
        out.append(predict_tensor(model, batch))
    return np.concatenate(out) if out else np.zeros((0, len(card.classes)), np.float32)


@dataclass
class Prediction:
    probabilities: np.ndarray  # (N, C)
    classes: list[str]
    threshold: float
    quality: np.ndarray | None = None  # (N,) image quality of each pattern

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1)

    @property
    def index(self) -> np.ndarray:
        """Predicted class index, -1 where the model is not confident enough."""
        idx = self.probabilities.argmax(axis=1)
        return np.where(self.confidence >= self.threshold, idx, -1)

    @property
    def labels(self) -> list[str]:
        return [self.classes[i] if i >= 0 else UNKNOWN for i in self.index]


def iter_source_batches(source: PatternSource, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, len(source), batch_size):
        yield start, source.batch(start, min(len(source), start + batch_size))


def predict_source(
    model: nn.Module,
    card: ModelCard,
    source: PatternSource,
    batch_size: int = 256,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resize: bool = True,
) -> Prediction:
    """Classify every pattern of a source in batches with bounded memory."""
    if not resize and source.pattern_shape != (card.input_size, card.input_size):
        raise ModelError(
            f"patterns are {source.pattern_shape[1]}x{source.pattern_shape[0]} but the model expects "
            f"{card.input_size}x{card.input_size}",
            source.path,
        )
    probs = np.empty((len(source), len(card.classes)), dtype=np.float32)
    quality = np.empty(len(source), dtype=np.float32)
    for start, raw in iter_source_batches(source, batch_size):
        if should_stop and should_stop():
            raise CancelledError("prediction cancelled")
        stop = start + len(raw)
        probs[start:stop], quality[start:stop] = classify_batch(model, card, raw, source.static_background, source.path)
        if progress:
            progress(stop / len(source), f"{stop:,}/{len(source):,} patterns")
    return Prediction(probs, card.class_symbols, card.unknown_threshold, quality)


def classify_batch(
    model: nn.Module,
    card: ModelCard,
    raw: np.ndarray,
    static_background: np.ndarray | None = None,
    source: str = "patterns",
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, C) and image quality (N,) of raw patterns."""
    batch = preprocess(raw, card.preprocess, static_background, source)
    return predict_tensor(model, batch), image_quality(batch)
