"""EBSD priors: ImageNet weights trained further to tell space groups apart on simulated patterns.

Fine-tuned from ImageNet alone, a 20-shot model has seen 20 orientations per phase and little
else, and it misses whole grains of orientations it never saw. A prior is trained once on many
simulated patterns of the *other* catalogue materials of the six cubic space groups (the
phases to be told apart are left out), so it already knows what band geometry and
superlattice bands look like; a few-shot training then starts from it
(``train --weights models/PRIOR``). On development maps this lifted 20-shot phase maps from
0.860 to 0.938 of points before the grain clean-up, and from 0.978 to 0.993 after it (bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ebsd_core.backbones import DEFAULT_FINETUNE_LR
from ebsd_core.datasets import resolve_materials, simulate_dataset
from ebsd_core.errors import PhaseError
from ebsd_core.phases import get_material
from ebsd_core.preprocess import input_size_for
from ebsd_core.store import check_can_save
from ebsd_core.train import TrainConfig, TrainProgress
from ebsd_core.workflows import cancellable, job_progress, train_evaluate_save

#: Priors were measured with this rate (150 patterns per class); the few-shot default of Lite0 is higher.
PRIOR_LR = DEFAULT_FINETUNE_LR


@dataclass(frozen=True)
class PriorSettings:
    """How a prior is trained; the defaults take about 4 minutes on a 2-core CPU."""

    per_class: int = 150  # simulated patterns per space group, spread over its materials
    val_per_class: int = 10  # as many again are kept for the test accuracy in the card
    pattern_size: int = 120
    input_size: int = 128
    epochs: int = 20
    seed: int = 11
    backbone: str = "efficientnet_lite0"

    @property
    def shots(self) -> int:
        return self.per_class - 2 * self.val_per_class

    def to_dict(self) -> dict:
        return asdict(self)


def prior_materials(exclude: Sequence[str]) -> list[str]:
    """Catalogue materials of the six default space groups, without ``exclude`` (keys or names)."""
    left_out = {get_material(name).key for name in exclude}
    keep = [m for m in resolve_materials("default") if m.key not in left_out]
    if len({m.space_group for m in keep}) < 2:
        raise PhaseError("excluding these materials leaves fewer than two space groups to train a prior on")
    return [m.key for m in keep]


def build_prior(
    exclude: Sequence[str],
    out: str | Path,
    settings: PriorSettings = PriorSettings(),
    force: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Simulate patterns of the prior's materials, train on them and save the prior to the store.

    Parameters
    ----------
    exclude
        Materials the prior must not see, normally the phases the few-shot model will tell apart,
        so that it still learns them from its few shots alone.
    out
        ``models/NAME`` or a bare store name; never overwritten unless ``force``.
    """
    target = check_can_save(out, force)  # before the minutes of simulation, not after them
    materials = prior_materials(exclude)
    dataset = simulate_dataset(
        per_class=settings.per_class,
        phases=materials,
        size=settings.pattern_size,
        seed=settings.seed,
        progress=cancellable(should_stop, "cancelled while simulating the prior's patterns"),
    )
    config = TrainConfig(
        backbone=settings.backbone,
        input_size=settings.input_size,
        shots=settings.shots,
        epochs=settings.epochs,
        patience=settings.epochs,
        lr=PRIOR_LR,
        seed=settings.seed,
        val_per_class=settings.val_per_class,
        views=1,
    )
    excluded = sorted({get_material(name).key for name in exclude})
    notes = {"prior": {"materials": materials, "excluded": excluded, "settings": settings.to_dict()}}
    return train_evaluate_save(dataset, config, target, force, progress, should_stop, training_notes=notes)


#: What the dashboard builds priors with, at the size of the dataset's patterns (:func:`settings_for`).
PAGE_SETTINGS = PriorSettings()
#: Larger patterns get a prior simulated at this size: their network input stops at 224 px anyway.
MAX_PRIOR_PATTERN_SIZE = 240


def settings_for(pattern_shape: tuple[int, int], base: PriorSettings | None = None) -> PriorSettings:
    """``base`` (default :data:`PAGE_SETTINGS`) simulated at the dataset's pattern size (at most
    :data:`MAX_PRIOR_PATTERN_SIZE`) and trained at the input size a few-shot model of it gets by default.

    Prior and few-shot model then see the same detail. With 240 px patterns, a 224 px input and a
    prior built that way (of 8 materials, without the L1_2 phases Pt3Fe and Al3Sc), 20 shots per class reached
    0.989 on unseen orientations (3 seeds), against 0.931 with 120 px patterns and a 120 px prior
    (bench/RESULTS.md).
    """
    side = min(int(v) for v in pattern_shape)
    size = min(side, MAX_PRIOR_PATTERN_SIZE)
    return replace(base or PAGE_SETTINGS, pattern_size=size, input_size=input_size_for(pattern_shape))


def minutes_on_two_cores(settings: PriorSettings) -> int:
    """Rough build time on a 2-core CPU, fitted to two builds: 4 minutes at a 128 px input, 10 at 224 px
    (the input's side to the power 1.6; linear in patterns and epochs)."""
    scale = (settings.input_size / 128) ** 1.6 * settings.per_class / 150 * settings.epochs / 20
    return max(1, round(4 * scale))


def prior_job(context, params: dict) -> dict:
    """Job body of the Train page's "Build an EBSD prior": ``params`` has ``exclude``, ``name`` and
    ``settings`` (a :class:`PriorSettings` dict, from :func:`settings_for`; :data:`PAGE_SETTINGS` when absent)."""
    name = params["name"]
    context.report(0.0, "simulating the prior's patterns")
    progress = job_progress(context, name)
    settings = PriorSettings(**params["settings"]) if "settings" in params else PAGE_SETTINGS
    summary = build_prior(params["exclude"], name, settings, progress=progress, should_stop=context.should_stop)
    return {"runs": [{"run": name, **summary}], "model_name": name}
