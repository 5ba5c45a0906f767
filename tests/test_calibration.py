import numpy as np
from conftest import REAL_NI, shared_file

from ebsd_core.calibration import indexed_scans, master_fits, realism_against_scan
from ebsd_core.phases import get_material


def test_simulation_matches_real_nickel_patterns():
    result = realism_against_scan(shared_file(REAL_NI), "ni")
    assert result.ncc.size == 9  # "Scan 2" of the file repeats "Scan 1" exactly: counted once
    assert result.ncc.mean() >= 0.45  # EMsoft's master pattern reaches about 0.44 here
    assert result.real.shape == result.simulated.shape == (9, 60, 60)


def test_an_indexed_scan_gives_each_pattern_its_orientation_and_projection_centre():
    (scan,) = indexed_scans(shared_file(REAL_NI))  # the repeated second scan is left out
    assert scan.patterns.shape == (9, 60, 60) and scan.size == 60
    assert scan.quaternions.shape == (9, 4) and scan.pcs.shape == (9, 3)
    assert scan.static_background.shape == (60, 60)


def test_master_fits_compare_every_master_at_the_recorded_geometry():
    fits = master_fits(shared_file(REAL_NI), [get_material("ni"), get_material("ferrite")])
    assert set(fits) == {"ni", "ferrite"} and fits["ni"].shape == fits["ferrite"].shape == (9,)
    assert np.allclose(fits["ni"], realism_against_scan(shared_file(REAL_NI), "ni").ncc)
    assert (fits["ni"] > fits["ferrite"] + 0.2).all()  # a bcc master fits these fcc patterns at about 0.15
