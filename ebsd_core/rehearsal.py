"""Rehearsal: few-shot training that keeps seeing the simulated materials of the model it starts from: an EBSD
prior, or a model trained on simulated patterns alone (of a scan's phases, fine-tuned on labelled regions of the
scan: with 4 grains of each phase of a simulated scan of a real duplex steel's map, 0.864 of the map right without
rehearsal, 0.999 with it; bench/RESULTS.md).

Fine-tuned on a few patterns of a few materials, a network learns to call a new material like
the known one it resembles most. Kept in training alongside the shots, the prior's patterns
(other materials of the same space groups) make it keep what tells the space groups apart across
materials. Measured at 240 px, 20 shots, 3 seeds (bench/RESULTS.md): held-out materials 0.82 -> 0.97,
Cu3Au (L1_2) 0.00 -> 0.97, unseen orientations 0.975, from a prior with L1_2 phases and its own
materials; 0.954 and 0.983 from a prior without them, rehearsing the catalogue's (``source="catalogue"``).

The rehearsal patterns are simulated (seconds) at the pattern size and seed the prior's card
records. They come from the prior's own materials (``source="prior"``) or from every catalogue
material of the dataset's space groups (``source="catalogue"``, the prior's first), which adds
superlattice phases the prior may lack, but also phases the prior was told not to see.
Materials the few-shot dataset names, held-out ones included, are left out so that they are still
judged unseen; a dataset of real patterns usually names none (its class folders), so the catalogue's
simulated versions of its own phases join it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebsd_core.datasets import simulate_dataset
from ebsd_core.errors import ModelError
from ebsd_core.io.dataset import Dataset
from ebsd_core.phases import get_material, materials_for
from ebsd_core.store import META, read_card, resolve_model_dir

#: Rehearsal patterns per space group that the dashboard uses (80: as many as 20 shots x 4 repeats).
REHEARSAL_PER_CLASS = 80
#: Where rehearsal materials come from: the prior's card, or the whole catalogue (the prior's included).
REHEARSAL_SOURCES = ("prior", "catalogue")


@dataclass
class Rehearsal:
    """Labelled patterns that join every epoch, with the prior they come from."""

    dataset: Dataset  # labels index the few-shot dataset's classes
    prior: str
    materials: list[str]
    source: str = "prior"

    def summary(self) -> dict:
        return {"prior": self.prior, "source": self.source, "materials": self.materials, "patterns": len(self.dataset)}


def prior_record(weights_file: str | Path | None) -> dict:
    """What the model to start from was trained on (``materials``, ``settings``): an EBSD prior's record, or for a
    model trained on simulated patterns alone (of a scan's phases, say, fine-tuned then on labelled regions of the
    scan) its catalogue materials and pattern size.

    Raises
    ------
    ModelError
        If ``weights_file`` is neither.
    """
    folder = resolve_model_dir(weights_file) if weights_file and not Path(weights_file).is_file() else None
    if folder is None or not (folder / META).is_file():
        raise ModelError("rehearsal needs a saved model to start from (train --weights models/PRIOR)")
    card = read_card(folder)
    if not card.simulated_materials:
        raise ModelError(
            f"{weights_file}: is neither an EBSD prior nor a model trained on simulated patterns of catalogue "
            "materials; rehearsal needs one"
        )
    if card.is_prior:
        return card.training["prior"]
    return {"materials": card.simulated_materials, "settings": {"pattern_size": card.training.get("pattern_size")}}


def rehearsal_materials(record: dict, dataset: Dataset, source: str = "prior") -> list[str]:
    """The materials to rehearse: ``source``'s materials of ``dataset``'s classes that ``dataset`` does not name."""
    return materials_left(record["materials"], {str(m) for m in dataset.material}, dataset.classes, source)


def materials_left(learnt: list[str], present: set[str], classes: list[int], source: str = "prior") -> list[str]:
    """Of the materials a start model ``learnt`` (and with ``source="catalogue"`` every catalogue material of
    ``classes``), those of ``classes`` that the dataset's materials (``present``) do not name."""
    if source not in REHEARSAL_SOURCES:
        raise ModelError(f"unknown rehearsal source {source!r}: use one of {', '.join(REHEARSAL_SOURCES)}")
    candidates = list(learnt)
    if source == "catalogue":
        candidates += [m.key for sg in classes for m in materials_for(sg)]
    return [key for key in dict.fromkeys(candidates) if key not in present and get_material(key).space_group in classes]


def rehearsal_for(weights_file: str | Path, dataset: Dataset, per_class: int, source: str = "prior") -> Rehearsal:
    """``per_class`` simulated patterns per space group of ``source``'s materials, for ``dataset``'s classes.

    Materials that ``dataset`` contains, and space groups it does not, are left out.
    """
    record = prior_record(weights_file)
    settings = record.get("settings", {})
    materials = rehearsal_materials(record, dataset, source)
    if not materials:
        raise ModelError(f"{weights_file}: no {source} material is left to rehearse for this dataset's classes")
    simulated = simulate_dataset(
        per_class=per_class,
        phases=materials,
        size=int(settings.get("pattern_size") or dataset.patterns.shape[-1]),
        seed=int(settings.get("seed", 0)),
    )
    labels = np.array([dataset.classes.index(simulated.classes[label]) for label in simulated.labels])
    simulated.labels, simulated.classes = labels, list(dataset.classes)
    return Rehearsal(simulated, str(weights_file), materials, source)


def repeats_for(shots: int, rehearsal_patterns: int) -> int:
    """How often the shots are repeated so that they weigh as much as the rehearsal patterns."""
    return max(1, round(rehearsal_patterns / max(shots, 1)))
