from conftest import REAL_NI, shared_file

from ebsd_core.calibration import realism_against_scan


def test_simulation_matches_real_nickel_patterns():
    result = realism_against_scan(shared_file(REAL_NI), "ni")
    assert result.ncc.size == 9  # "Scan 2" of the file repeats "Scan 1" exactly: counted once
    assert result.ncc.mean() >= 0.45  # EMsoft's master pattern reaches about 0.44 here
    assert result.real.shape == result.simulated.shape == (9, 60, 60)
