"""Simulated datasets: held-out materials."""

import pytest

from ebsd_core.datasets import simulate_dataset
from ebsd_core.errors import PhaseError


def test_a_material_held_out_of_named_phases_is_simulated_for_the_test():
    """README's `simulate --phases ni,ni3al --holdout-materials cu3au` used to leave the held-out split empty."""
    ds = simulate_dataset(per_class=1, phases=["ni", "ni3al"], holdout_materials=["cu3au"], size=16)
    assert set(ds.material[ds.split == "holdout"]) == {"cu3au"}
    assert set(ds.material[ds.split == "train"]) == {"ni", "ni3al"}
    assert ds.provenance["holdout_materials"] == ["cu3au"]


@pytest.mark.parametrize(
    "holdout, message",
    [
        ("w", "held-out material 'w' is Im-3m, none of the simulated classes (Pm-3m, Fm-3m)"),
        ("ni", "every Fm-3m material is held out (ni): none is left to train on"),
    ],
)
def test_held_out_materials_that_leave_a_class_untrainable_are_refused(holdout, message):
    with pytest.raises(PhaseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        simulate_dataset(per_class=1, phases=["ni", "ni3al"], holdout_materials=[holdout], size=16)
