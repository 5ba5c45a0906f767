"""Rehearsal: few-shot training that keeps seeing the simulated materials of its EBSD prior.

Fine-tuned on a few patterns of a few materials, a network learns to call a new material like
the known one it resembles most. Kept in training alongside the shots, the prior's patterns
(other materials of the same space groups) make it keep what tells the space groups apart across
materials. Measured at 240 px, 20 shots, 3 seeds (bench/RESULTS.md): held-out materials 0.82 -> 0.97,
Cu3Au (L1_2) 0.00 -> 0.97; unseen orientations 0.975 (0.989 without rehearsal, from a prior without
L1_2 phases).

The rehearsal patterns are simulated again, seeded as the prior's own (seconds), from the
materials and settings its card records; materials of the few-shot dataset itself, held-out ones
included, are left out so that they are still judged unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebsd_core.datasets import simulate_dataset
from ebsd_core.errors import ModelError
from ebsd_core.io.dataset import Dataset
from ebsd_core.phases import get_material
from ebsd_core.store import META, read_card, resolve_model_dir

#: Rehearsal patterns per space group that the dashboard uses (80: as many as 20 shots x 4 repeats).
REHEARSAL_PER_CLASS = 80


@dataclass
class Rehearsal:
    """Labelled patterns that join every epoch, with the prior they come from."""

    dataset: Dataset  # labels index the few-shot dataset's classes
    prior: str
    materials: list[str]

    def summary(self) -> dict:
        return {"prior": self.prior, "materials": self.materials, "patterns": len(self.dataset)}


def prior_record(weights_file: str | Path | None) -> dict:
    """What a prior's card says it was trained on (``materials``, ``settings``).

    Raises
    ------
    ModelError
        If ``weights_file`` is not a saved EBSD prior.
    """
    folder = resolve_model_dir(weights_file) if weights_file and not Path(weights_file).is_file() else None
    if folder is None or not (folder / META).is_file():
        raise ModelError("rehearsal needs an EBSD prior to start from (train --weights models/PRIOR)")
    record = read_card(folder).training.get("prior")
    if not record or not record.get("materials"):
        raise ModelError(
            f"{weights_file}: is not an EBSD prior (its card names no prior materials); rehearsal needs one"
        )
    return record


def rehearsal_for(weights_file: str | Path, dataset: Dataset, per_class: int) -> Rehearsal:
    """``per_class`` simulated patterns per space group of the prior's materials, for ``dataset``'s classes.

    Materials that ``dataset`` contains, and space groups it does not, are left out.
    """
    record = prior_record(weights_file)
    settings = record.get("settings", {})
    present = {str(m) for m in dataset.material}
    materials = [
        key for key in record["materials"] if key not in present and get_material(key).space_group in dataset.classes
    ]
    if not materials:
        raise ModelError(
            f"{weights_file}: none of the prior's materials is left to rehearse for this dataset's classes"
        )
    simulated = simulate_dataset(
        per_class=per_class,
        phases=materials,
        size=int(settings.get("pattern_size", dataset.patterns.shape[-1])),
        seed=int(settings.get("seed", 0)),
    )
    labels = np.array([dataset.classes.index(simulated.classes[label]) for label in simulated.labels])
    simulated.labels, simulated.classes = labels, list(dataset.classes)
    return Rehearsal(simulated, str(weights_file), materials)


def repeats_for(shots: int, rehearsal_patterns: int) -> int:
    """How often the shots are repeated so that they weigh as much as the rehearsal patterns."""
    return max(1, round(rehearsal_patterns / max(shots, 1)))
