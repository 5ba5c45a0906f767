"""Few-shot splits: k patterns per class for training, the rest for validation and testing.

Within the training materials, patterns are split by orientation (every pattern
has its own random orientation, so disjoint pattern sets are disjoint
orientations). Patterns of held-out materials (``split == "holdout"``) are never
trained on and form their own test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebsd_core.errors import InputError
from ebsd_core.io.dataset import Dataset, check_two_classes
from ebsd_core.phases import space_group_symbol
from ebsd_core.wording import counted

SHOT_CHOICES = (1, 5, 10, 20, 50, 100, 400)


@dataclass
class FewShotSplit:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray  # unseen orientations of the training materials
    holdout: np.ndarray  # held-out materials

    def sizes(self) -> dict[str, int]:
        return {k: int(len(getattr(self, k))) for k in ("train", "val", "test", "holdout")}


def check_shots(
    labels: np.ndarray,
    split: np.ndarray | None,
    classes: Sequence[int],
    shots: int,
    path: str | Path | None = None,
    tested: bool = False,
) -> None:
    """Refuse ``shots`` per class that the labelled patterns cannot give (before any training starts).

    ``tested``: each class must also keep a pattern to test on (a few-shot curve scores every run).

    Raises
    ------
    InputError
        If fewer than two classes are labelled, or a class has fewer than ``shots + 1`` patterns of its
        training materials (``split != "holdout"``): one more than the shots is kept to validate on
        (``shots + 2`` when ``tested``).
    """
    if shots < 1:
        raise InputError(f"shots per class must be at least 1, not {shots}", path)
    check_two_classes(labels, classes, path)
    labels, seen = np.asarray(labels), _training_materials(labels, split)
    needed, why = (shots + 2, "two more to validate and test on") if tested else (shots + 1, "one more to validate on")
    for label in sorted({int(label) for label in labels if label >= 0}):
        count = int((seen == label).sum())
        if count < needed:
            raise InputError(
                f"class {space_group_symbol(classes[label])} has {counted(count, 'pattern')} of its training "
                f"materials; {needed} are needed for {counted(shots, 'shot')} per class ({why}): "
                "choose fewer shots or add patterns",
                path,
            )


def _training_materials(labels: np.ndarray, split: np.ndarray | None) -> np.ndarray:
    """The labels of the patterns shots can be drawn from: all but the held-out materials'."""
    labels = np.asarray(labels)
    return labels if split is None else labels[np.asarray(split) != "holdout"]


def suggested_shots(labels: np.ndarray, split: np.ndarray | None, preferred: int = 10) -> int:
    """``preferred`` shots per class, or fewer when a class of the training materials (``split != "holdout"``)
    has too few patterns to keep one to validate on and one to test on after them (never under 1)."""
    seen = _training_materials(labels, split)
    counts = np.bincount(seen[seen >= 0]) if len(seen) else np.zeros(0, int)
    smallest = int(counts[counts > 0].min()) if (counts > 0).any() else preferred + 2
    return max(1, min(preferred, smallest - 2))


def few_shot_split(
    dataset: Dataset,
    shots: int,
    seed: int = 0,
    val_per_class: int = 10,
    test_per_class: int | None = None,
) -> FewShotSplit:
    """Sample ``shots`` training patterns per class (seeded), then validation and test.

    Raises
    ------
    InputError
        If the dataset has fewer than two classes, or a class has too few
        patterns for the requested shots plus at least one validation pattern.
    """
    check_shots(dataset.labels, dataset.split, dataset.classes, shots)
    present = sorted({int(label) for label in dataset.labels if label >= 0})
    rng = np.random.default_rng(seed)
    seen = np.flatnonzero(dataset.split != "holdout")
    train, val, test = [], [], []
    for label in present:
        members = rng.permutation(seen[dataset.labels[seen] == label])
        n_val = min(val_per_class, max(1, (len(members) - shots) // 2))
        train.append(members[:shots])
        val.append(members[shots : shots + n_val])
        rest = members[shots + n_val :]
        test.append(rest if test_per_class is None else rest[:test_per_class])
    holdout = np.flatnonzero(dataset.split == "holdout")
    return FewShotSplit(np.concatenate(train), np.concatenate(val), np.concatenate(test), holdout)
