from conftest import REAL_NI, shared_file

from ebsd_core.calibration import indexed_scans, realism_against_scan


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
