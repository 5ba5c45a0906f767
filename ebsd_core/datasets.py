"""Labelled datasets simulated from the phase catalogue."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ebsd_core import __version__
from ebsd_core.errors import PhaseError
from ebsd_core.io.dataset import Dataset
from ebsd_core.phases import (
    DEFAULT_CLASSES,
    PHASE_NAME_HINTS,
    Material,
    catalogue_material,
    get_material,
    materials_for,
    parse_space_group,
    space_group_symbol,
)
from ebsd_core.simulate import DetectorModel, GeometryRanges, simulate_material

Progress = Callable[[float, str], None]


def material_seed(seed: int, material: Material) -> np.random.SeedSequence:
    """A seed per material that does not depend on which other materials are simulated."""
    return np.random.SeedSequence([int(seed), zlib.crc32(material.key.encode())])


def _class_space_group(text: int | str) -> int:
    """A class to simulate, by its space group; a material given instead is told to go to the phases, and a name
    such as ``fcc`` gets the hint a class folder so named gets."""
    try:
        return parse_space_group(text)
    except PhaseError as not_a_group:
        if (found := catalogue_material(str(text))) is not None:
            raise PhaseError(
                f"{str(text).strip()!r} is a material ({found.short_name}, {found.symbol}), and classes are space "
                "groups: give materials as phases (simulate --phases; --classes takes every catalogue material of "
                "each space group)"
            ) from None
        if hint := PHASE_NAME_HINTS.get(str(text).strip().lower()):
            raise PhaseError(f"{not_a_group} ({hint})") from None
        raise


def resolve_materials(
    classes: Sequence[int | str] | str | None = "default",
    phases: Sequence[str] | None = None,
) -> list[Material]:
    """The materials to simulate: explicit phases, or every catalogue material of the classes."""
    if phases:
        return [get_material(p) for p in phases]
    if classes in (None, "default"):
        groups = list(DEFAULT_CLASSES)
    elif isinstance(classes, str):
        groups = [_class_space_group(c) for c in classes.split(",") if c.strip()]
    else:
        groups = [_class_space_group(c) for c in classes]
    materials = [m for sg in groups for m in materials_for(sg)]
    missing = [sg for sg in groups if not materials_for(sg)]
    if missing:
        named = ", ".join(f"{sg} ({space_group_symbol(sg)})" for sg in missing)
        raise PhaseError(
            f"the catalogue has no material of space group{'s' if len(missing) > 1 else ''} {named}: simulate one from "
            "a CIF file instead (--cif FILE, without --classes)"
        )
    return materials


def _split_counts(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


@dataclass(frozen=True)
class SimulationPlan:
    """What :func:`simulate_dataset` will simulate: the classes, and each material's pattern count and split."""

    classes: list[int]
    holdout: set[str]
    runs: list[tuple[Material, int, str]]  # (material, patterns, "train" or "holdout")


def plan_simulation(
    per_class: int,
    classes: Sequence[int | str] | str | None = "default",
    phases: Sequence[str] | None = None,
    holdout_materials: Sequence[str] = (),
    extra_materials: Sequence[Material] = (),
) -> SimulationPlan:
    """Check the choice of classes, materials and held-out materials and share ``per_class`` out among them, at
    once (the dashboard says what is wrong before it queues a simulation).

    Raises
    ------
    PhaseError
        If nothing is chosen, a phase or space group is unknown, a held-out material is of none of the classes, or
        every material of a class is held out.
    """
    materials = resolve_materials(classes, phases) + list(extra_materials)
    if not materials:  # found on review: the Data page with no space group chosen failed in numpy
        raise PhaseError("nothing to simulate: choose at least one space group or material")
    keys = [m.key for m in materials]
    if twice := sorted({key for key in keys if keys.count(key) > 1}):  # a dataset tells its materials apart by name
        sources = " and ".join(m.source for m in materials if m.key == twice[0])
        raise PhaseError(f"two materials are named {twice[0]!r} ({sources}): rename the CIF file, which names it")
    holdout = {get_material(h).key if not any(m.key == h for m in extra_materials) else h for h in holdout_materials}
    class_list = sorted({m.space_group for m in materials})
    for key in sorted(holdout - {m.key for m in materials}):  # held out of --phases: simulated for the test only
        material = get_material(key)
        if material.space_group not in class_list:
            symbols = ", ".join(space_group_symbol(sg) for sg in class_list)
            raise PhaseError(
                f"held-out material {key!r} is {material.symbol}, none of the simulated classes ({symbols})"
            )
        materials.append(material)
    runs: list[tuple[Material, int, str]] = []
    for sg in class_list:
        for split in ("train", "holdout"):
            group = [m for m in materials if m.space_group == sg and (m.key in holdout) == (split == "holdout")]
            if group:
                runs += [(m, n, split) for m, n in zip(group, _split_counts(per_class, len(group))) if n > 0]
    trained = {m.space_group for m, _, split in runs if split == "train"}
    for sg in class_list:
        if sg not in trained:
            held = ", ".join(sorted(m.key for m in materials if m.space_group == sg))
            raise PhaseError(f"every {space_group_symbol(sg)} material is held out ({held}): none is left to train on")
    return SimulationPlan(class_list, holdout, runs)


def simulate_dataset(
    per_class: int,
    classes: Sequence[int | str] | str | None = "default",
    phases: Sequence[str] | None = None,
    holdout_materials: Sequence[str] = (),
    size: int = 60,
    seed: int = 0,
    geometry: GeometryRanges = GeometryRanges(),
    detector: DetectorModel = DetectorModel(),
    extra_materials: Sequence[Material] = (),
    progress: Progress | None = None,
) -> Dataset:
    """Simulate ``per_class`` patterns for every class, spread over its materials (:func:`plan_simulation`).

    Held-out materials get their own ``per_class`` patterns per class, marked
    ``split="holdout"``, for evaluation on materials never seen in training.
    """
    plan = plan_simulation(per_class, classes, phases, holdout_materials, extra_materials)
    class_list, holdout, jobs = plan.classes, plan.holdout, plan.runs
    parts, kinds = [], {}
    total = sum(n for _, n, _ in jobs)
    done = 0
    for material, n, split in jobs:
        if progress:
            progress(done / total, f"simulating {n} {material.name} ({material.symbol}) patterns")
        sim = simulate_material(material, n, size, material_seed(seed, material), geometry, detector)
        kinds[material.key] = sim.master_kind
        parts.append((material, split, sim))
        done += n
    if progress:
        progress(1.0, "done")
    cat = np.concatenate
    return Dataset(
        patterns=cat([s.patterns for _, _, s in parts]),
        labels=cat([np.full(len(s.patterns), class_list.index(m.space_group)) for m, _, s in parts]),
        classes=class_list,
        material=cat([np.full(len(s.patterns), m.key, dtype=object) for m, _, s in parts]),
        split=cat([np.full(len(s.patterns), split, dtype=object) for _, split, s in parts]),
        quaternions=cat([s.quaternions for *_, s in parts]),
        pc=cat([s.pcs for *_, s in parts]),
        detector_tilt=cat([s.detector_tilt for *_, s in parts]),
        sample_tilt=cat([s.sample_tilt for *_, s in parts]),
        provenance={
            "generator": f"ebsd_core {__version__} simulate",
            "seed": seed,
            "per_class": per_class,
            "size": size,
            "materials": {m.key: m.describe() for m, _, _ in parts},
            "master_kinds": kinds,
            "holdout_materials": sorted(holdout),
            "geometry": geometry.__dict__,
            "detector_model": detector.to_dict(),
        },
    )
