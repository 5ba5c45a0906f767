import numpy as np
import pytest
from test_phases import CIF_TEMPLATE

from ebsd_core.errors import InputError
from ebsd_core.masters import (
    PACKAGE_MASTER_DIR,
    build_master,
    default_dmin,
    load_master,
    master_path,
    read_master,
    save_master,
    user_master_dir,
)
from ebsd_core.phases import CATALOGUE, get_material, phase_from_cif


def test_every_catalogue_phase_ships_a_dynamical_master():
    missing = [k for k in CATALOGUE if not (PACKAGE_MASTER_DIR / f"{k}.h5").exists()]
    assert not missing, f"rebuild with 'python -m ebsd_core masters build --missing-only': {missing}"
    total = sum((PACKAGE_MASTER_DIR / f"{k}.h5").stat().st_size for k in CATALOGUE)
    assert total < 25e6


def test_shipped_master_is_normalised_lambert():
    master = load_master(get_material("ni"))
    assert master.kind == "dynamical"
    assert master.lambert.shape == (2, 401, 401)
    assert 0.0 <= master.lambert.min() < 0.05 and 0.95 < master.lambert.max() <= 1.0
    # m-3m is centrosymmetric: the south hemisphere mirrors the north one
    assert np.corrcoef(master.lambert[0].ravel(), master.lambert[1][::-1, ::-1].ravel())[0, 1] > 0.9


def test_save_and_read_roundtrip(tmp_path):
    master = load_master(get_material("ferrite"))
    path = save_master(master, tmp_path / "fe.h5")
    again = read_master(path, master.material)
    assert np.abs(again.lambert - master.lambert).max() < 1e-4
    assert again.kind == master.kind


def test_unreadable_master_file_is_named(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="bad.h5"):
        read_master(bad, get_material("ni"))


def test_kinematical_fallback_for_user_phase():
    master = build_master(get_material("ni"), npx=40, kind="kinematical")
    assert master.kind == "kinematical"
    assert master.lambert.shape == (2, 81, 81)
    assert master.lambert.std() > 0.01


def test_dmin_grows_with_cell_size():
    assert default_dmin(get_material("ni")) == pytest.approx(0.05)
    assert default_dmin(get_material("yag")) == pytest.approx(0.15)


def test_building_an_unknown_phase_names_it_before_building_anything():
    from ebsd_core.masters import build_catalogue

    with pytest.raises(InputError, match="unknown phase 'kryptonite'"):
        build_catalogue(["ni", "kryptonite"])


def test_a_cif_named_like_a_catalogue_material_gets_a_master_of_its_own(tmp_path):
    """Found on review: ``cu.cif`` was simulated with the shipped Cu master whatever the CIF held, and a CIF edited
    since its first use kept the master cached under its name."""
    path = tmp_path / "cu.cif"
    path.write_text(CIF_TEMPLATE.format(name="cu", a=3.615, hm="F m -3 m", number=225, sites="Cu1 Cu 0 0 0 1.0"))
    mine = phase_from_cif(path)
    assert mine.key == "cu" and master_path(mine).parent == user_master_dir()
    assert master_path(mine) != master_path(get_material("cu"))
    path.write_text(CIF_TEMPLATE.format(name="cu", a=3.70, hm="F m -3 m", number=225, sites="Cu1 Cu 0 0 0 1.0"))
    assert master_path(phase_from_cif(path)) != master_path(mine)
    assert master_path(phase_from_cif(path)) == master_path(phase_from_cif(path))  # the same CIF: its cache again
