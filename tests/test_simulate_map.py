"""Simulated multi-phase scans: Voronoi and real layouts, ground truth, the simulate-map command."""

import json

import numpy as np
import pytest
from conftest import SDSS_LAYOUT, shared_file

from ebsd_core.cli import main
from ebsd_core.errors import InputError, PhaseError
from ebsd_core.io.readers import open_patterns
from ebsd_core.phases import get_material
from ebsd_core.simulate_map import layout_from_ang, parse_shape, simulate_scan, voronoi_layout


def test_voronoi_layout_is_deterministic_and_has_every_phase():
    materials = [get_material("ni"), get_material("ni3al")]
    first = voronoi_layout(materials, (20, 30), grain_size=5, seed=4)
    again = voronoi_layout(materials, (20, 30), grain_size=5, seed=4)
    assert first.shape == (20, 30) and first.quaternions.shape == (20, 30, 4)
    np.testing.assert_array_equal(first.phase, again.phase)
    assert set(np.unique(first.phase)) == {0, 1}
    np.testing.assert_allclose(np.linalg.norm(first.quaternions, axis=-1), 1.0, atol=1e-6)


def test_phases_of_one_space_group_are_refused():
    with pytest.raises(PhaseError, match="share a space group"):
        voronoi_layout([get_material("ni"), get_material("cu")], (5, 5))


@pytest.mark.parametrize("text", ["10", "0x5", "ax3", "3000x3000"])
def test_bad_shapes(text):
    with pytest.raises(InputError):
        parse_shape(text)


def test_scan_labels_follow_the_layout():
    materials = [get_material("austenite"), get_material("ferrite")]
    layout = voronoi_layout(materials, (6, 7), grain_size=3, seed=1)
    scan = simulate_scan(layout, size=32, seed=0)
    assert scan.nav_shape == (6, 7) and scan.patterns.shape == (42, 32, 32)
    sg = np.array(scan.classes)[scan.labels]
    expected = np.array([m.space_group for m in materials])[layout.phase.ravel()]
    np.testing.assert_array_equal(sg, expected)
    # the projection centre drifts with the beam, as on a microscope
    assert scan.pc[0, 0] > scan.pc[6, 0]


def test_real_layout_gives_real_fractions_and_step():
    layout = layout_from_ang(shared_file(SDSS_LAYOUT))
    assert layout.shape == (100, 117) and layout.step_um == 1.5
    assert [m.key for m in layout.materials] == ["austenite", "ferrite"]
    assert (layout.phase == 0).mean() == pytest.approx(0.484, abs=0.002)


def test_layout_phase_names_must_be_known(tmp_path):
    src = shared_file(SDSS_LAYOUT).read_text().replace("austenite/austenite", "gamma/gamma")
    path = tmp_path / "renamed.ang"
    path.write_text(src)
    with pytest.raises(PhaseError, match="gamma"):
        layout_from_ang(path)
    assert [m.key for m in layout_from_ang(path, ["ni", "ferrite"]).materials] == ["ni", "ferrite"]


def test_simulate_map_command(tmp_path, capsys):
    out = tmp_path / "scan.h5"
    assert main(["simulate-map", "--phases", "ni,ni3al", "--shape", "4x5", "--size", "32", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["nav_shape"] == [4, 5] and summary["patterns"] == 20
    source = open_patterns(out)
    assert source.nav_shape == (4, 5) and source.labelled
    other = tmp_path / "other.h5"
    assert main(["simulate-map", "--phases", "ni", "--shape", "4x5", "--out", str(other)]) == 2
    assert "--phases needs at least two phases" in capsys.readouterr().err
    # a real layout brings its own shape and step: the Voronoi options are refused, not ignored
    layout = ["simulate-map", "--layout", "map.ang", "--shape", "4x5", "--step", "0.5", "--out", str(other)]
    assert main(layout) == 2
    assert "--layout takes the map's shape, grains and step from map.ang: leave out --shape, --step" in (
        capsys.readouterr().err
    )
