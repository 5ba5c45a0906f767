"""Simulated datasets: held-out materials."""

import pytest

from ebsd_core.datasets import plan_simulation, resolve_materials, simulate_dataset
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


def test_two_materials_of_one_name_are_refused(tmp_path):
    """A dataset tells its materials apart by name: a CIF named cu.cif beside the catalogue's Cu would mix them."""
    from test_phases import CIF_TEMPLATE

    from ebsd_core.phases import phase_from_cif

    path = tmp_path / "cu.cif"
    path.write_text(CIF_TEMPLATE.format(name="cu", a=3.615, hm="F m -3 m", number=225, sites="Cu1 Cu 0 0 0 1.0"))
    mine = phase_from_cif(path)
    with pytest.raises(PhaseError, match=r"two materials are named 'cu' \(catalogue and cif:cu.cif\): rename the CIF"):
        plan_simulation(10, None, ["ni", "cu"], extra_materials=[mine])
    assert plan_simulation(10, None, ["ni"], extra_materials=[mine]).classes == [225]


def test_space_groups_the_catalogue_lacks_are_named_with_the_way_to_add_one():
    """Found on review: the message printed a Python list ("space group(s) [222, 224]")."""
    with pytest.raises(PhaseError, match=r"space groups 222 \(Pn-3n\), 224 \(Pn-3m\): simulate one from a CIF file"):
        simulate_dataset(per_class=1, classes="222,224,225")


@pytest.mark.parametrize(
    ("classes", "told"),
    [
        ("ni,ni3al", "'ni' is a material (Ni, Fm-3m), and classes are space groups: give materials as phases"),
        ("fcc", "unknown space group 'fcc': use a number 221-230 or a symbol such as Pm-3m, Pm-3n, Fm-3m, Fd-3m, "
         "Im-3m, Ia-3d (an FCC metal is Fm-3m (225),"),
    ],
)  # fmt: skip
def test_classes_given_as_materials_or_lattices_are_told_what_to_give(classes, told):
    with pytest.raises(PhaseError) as raised:
        resolve_materials(classes)
    assert str(raised.value).startswith(told)
