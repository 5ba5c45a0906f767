"""End-to-end workflows shared by the CLI and the dashboard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ebsd_core.io.dataset import Dataset
from ebsd_core.store import resolve_model_dir, save_model
from ebsd_core.train import TrainConfig, TrainProgress, evaluate_split, train_model


def train_evaluate_save(
    dataset: Dataset,
    config: TrainConfig,
    out: str | Path,
    force: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    dataset_path: str | Path | None = None,
) -> dict:
    """Train, evaluate on unseen orientations and held-out materials, save to the store."""
    target = resolve_model_dir(out)
    result = train_model(dataset, config, progress=progress, should_stop=should_stop)
    metrics = {"test": evaluate_split(result.model, result.card, dataset, result.split.test)}
    if len(result.split.holdout):
        metrics["holdout"] = evaluate_split(result.model, result.card, dataset, result.split.holdout)
    result.card.metrics = {"accuracy": metrics["test"].get("accuracy"), **metrics}
    if dataset_path is not None:
        result.card.training["dataset_path"] = str(Path(dataset_path).resolve())
    save_model(result.model, result.card, target, force=force)
    return {
        "model": str(target),
        "seconds": round(result.seconds, 1),
        "best_epoch": result.best_epoch,
        "test_accuracy": metrics["test"].get("accuracy"),
        "holdout_accuracy": metrics.get("holdout", {}).get("accuracy"),
    }
