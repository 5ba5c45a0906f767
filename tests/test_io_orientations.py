"""Orientations of a scan's own indexing: read, checked, and carried into the phase map's exports."""

import json
import shutil
import warnings

import numpy as np
import pytest
from orix import io as orix_io
from orix.crystal_map import CrystalMap
from orix.quaternion import Rotation

from ebsd_core.cli import main
from ebsd_core.errors import InputError
from ebsd_core.io.orientations import from_crystal_map, known, read_orientations
from ebsd_core.simulate_map import layout_from_ang


def _ang(path, rotations, shape=(2, 3)):
    rows, cols = shape
    yy, xx = np.divmod(np.arange(rows * cols), cols)
    xmap = CrystalMap(rotations=rotations, x=xx.astype(float), y=yy.astype(float))
    orix_io.save(str(path), xmap)
    return path


def _hexagonal_ang(path, grid="HexGrid"):
    """An EDAX .ang of 5 points on a hexagonal grid: rows of 3 and 2, the second shifted half a step."""
    square = _ang(path, Rotation.random(6)).read_text().splitlines()
    header = [line.replace("SqrGrid", grid).replace("NCOLS_EVEN: 3", "NCOLS_EVEN: 2") for line in square if "#" in line]
    points = [(0, 0), (1, 0), (2, 0), (0.5, 0.866), (1.5, 0.866)]
    path.write_text("\n".join(header + [f"0.1 0.2 0.3 {x} {y} 0 0 1 0 0" for x, y in points]) + "\n")
    return path


def test_identity_and_nan_are_not_orientations():
    assert not known(None) and not known(np.full((4, 4), np.nan))
    assert not known(Rotation.identity(4).data)
    assert known(Rotation.random(4).data)


def test_reading_an_ang_file_keeps_the_point_order(tmp_path):
    rotations = Rotation.random(6)
    quaternions = read_orientations(_ang(tmp_path / "hough.ang", rotations), 6, (2, 3))
    angles = (~Rotation(quaternions) * rotations).angle
    assert quaternions.shape == (6, 4) and np.rad2deg(angles).max() < 0.01


def test_orientation_files_that_do_not_fit_are_named(tmp_path):
    path = _ang(tmp_path / "hough.ang", Rotation.random(6))
    with pytest.raises(InputError, match="hough.ang: holds 6 points but the scan has 8 patterns"):
        read_orientations(path, 8)
    with pytest.raises(InputError, match="its map is 2x3 points but the scan is 3x2"):
        read_orientations(path, 6, (3, 2))
    with pytest.raises(InputError, match="holds no orientations"):
        read_orientations(_ang(tmp_path / "empty.ang", Rotation.identity(6)), 6)
    (tmp_path / "notes.ang").write_text("not an ang file\n")
    with pytest.raises(InputError, match="notes.ang: orix cannot read"):
        read_orientations(tmp_path / "notes.ang", 6)
    (tmp_path / "map.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="map.png: not an orientation file"):
        read_orientations(tmp_path / "map.png", 6)


def test_an_indexing_file_that_cannot_be_read_is_said_why(tmp_path):
    """orix's own words were "IndexError: tuple index out of range" for an .ang cut short or empty, and an
    AttributeError on 'NoneType' for an HDF5 file of another layout; h5py's, "truncated file: eof = ..."."""
    import h5py

    from ebsd_core.wording import byte_size

    whole = _ang(tmp_path / "whole.ang", Rotation.random(6)).read_text()
    (tmp_path / "cut.ang").write_text(whole[: whole.index("# NCOLS_ODD")])  # the header cut short, no points
    (tmp_path / "nothing.ang").write_text("")
    with h5py.File(tmp_path / "weights.h5", "w") as file:
        file.create_dataset("model_weights/dense/kernel", data=np.zeros((3, 3)))
    whole = (tmp_path / "weights.h5").read_bytes()
    (tmp_path / "cut.h5oina").write_bytes(whole[: len(whole) // 2])
    expected = {
        "cut.ang": "its header or columns are not those of an EDAX OIM .ang: damaged, cut short, or another format",
        "nothing.ang": "orix cannot read a crystal map from it (the file is empty)",
        "weights.h5": "an HDF5 file, but not of a layout orix reads: h5ebsd of EDAX or Bruker, or orix's own .h5",
        "cut.h5oina": f"its indexing cannot be read (it is cut short: {byte_size(len(whole) // 2)} of its "
        f"{byte_size(len(whole))} are here, of a copy or upload that did not finish)",
    }
    for name, words in expected.items():
        with pytest.raises(InputError) as info:
            read_orientations(tmp_path / name, 6)
        assert str(info.value).startswith(f"{tmp_path / name}: ") and words in str(info.value)


def test_a_crystal_map_of_another_size_gives_none():
    xmap = CrystalMap(rotations=Rotation.random(4))
    assert from_crystal_map(xmap, 5) is None and from_crystal_map(None, 4) is None
    assert from_crystal_map(xmap, 4).shape == (4, 4)


def test_a_hexagonal_grid_is_named_not_misread(tmp_path):
    # orix reads EDAX's hexagonal grid into a 2x5 map of 5 points: its orientations would land on wrong pixels
    hexagonal = _hexagonal_ang(tmp_path / "hex.ang")
    for read in (lambda: read_orientations(hexagonal, 5), lambda: layout_from_ang(hexagonal, ["ni", "ni3al"])):
        with pytest.raises(InputError, match="hex.ang: its 5 points lie on a hexagonal grid, .* convert it"):
            read()
    with pytest.raises(InputError, match="odd.ang: its 5 points do not fill its 2x5 grid"):
        read_orientations(_hexagonal_ang(tmp_path / "odd.ang", grid="SqrGrid"), 5)


def test_the_places_of_a_hexagonal_scans_own_ang_are_read_and_a_file_that_cannot_give_them_is_named(tmp_path):
    from conftest import oim_indexing

    from ebsd_core.io.hex_grid import up2_places
    from ebsd_core.io.orientations import hexagonal_ang_places

    places = up2_places(4, 3, 11)  # rows of 4, 3 and 4 points, the second half a step in
    indexing = oim_indexing(tmp_path / "scan.ang", places, step=0.15, newline="\r\n")
    np.testing.assert_array_equal(hexagonal_ang_places(indexing, 11), places)
    with pytest.raises(InputError, match="scan.ang: holds 11 points but the scan has 12 patterns"):
        hexagonal_ang_places(indexing, 12)
    square = _ang(tmp_path / "square.ang", Rotation.random(6))
    with pytest.raises(InputError, match="square.ang: the scan's grid is hexagonal, and so must its indexing be: an"):
        hexagonal_ang_places(square, 6)
    with pytest.raises(InputError, match="none.ang: no such orientation file"):
        hexagonal_ang_places(tmp_path / "none.ang", 6)
    short = tmp_path / "short.ang"  # its points cut to their first five columns
    lines = indexing.read_text(encoding="cp1252").splitlines()
    short.write_text("\n".join(line if line.startswith("#") else " ".join(line.split()[:5]) for line in lines))
    with pytest.raises(InputError, match="short.ang: its points are not an EDAX .ang's columns"):
        hexagonal_ang_places(short, 11)
    with pytest.raises(InputError, match="hex.ang: its points' x and y do not lie on a hexagonal grid, as its header"):
        hexagonal_ang_places(_square_points_said_hexagonal(tmp_path / "hex.ang"), 6)


def _square_points_said_hexagonal(path):
    """An .ang whose header says ``GRID: HexGrid`` over points of a square grid."""
    square = _ang(path, Rotation.random(6)).read_text()
    path.write_text(square.replace("SqrGrid", "HexGrid"))
    return path


def _h5oina(path):
    """kikuchipy's own H5OINA test file: 3x3 Ni patterns of two grains, AZtec's Euler angles in radians."""
    dummy = pytest.importorskip("kikuchipy.data._dummy_files.oxford_h5ebsd")
    dummy.create_dummy_oxford_h5ebsd_file(path)
    return path


def test_an_h5oina_files_own_indexing_is_read(tmp_path, capsys):
    """kikuchipy reads H5OINA patterns with an empty crystal map and orix does not read the format: an Oxford
    scan's phase map exported identities where AZtec had indexed every point."""
    import h5py

    from ebsd_core.io.readers import open_patterns

    path = _h5oina(tmp_path / "scan.h5oina")
    with h5py.File(path, "r+") as file:
        file["1/EBSD/Data/Phase"][4] = 0  # AZtec indexed nothing there
    grain = Rotation([0.9542, -0.0183, -0.2806, 0.1018])  # the dummy's first grain, at points 0, 3, 6
    source = open_patterns(path)
    assert source.orientations_from == "the scan's own indexing" and source.static_background is None
    # the dummy's patterns are kikuchipy's Ni patterns with the static background removed, which its header still holds
    assert [w.split(",")[0] for w in source.warnings] == ["carries a static background"]
    quaternions = read_orientations(path, 9, (3, 3))
    np.testing.assert_array_equal(quaternions, source.quaternions)
    assert np.rad2deg((~Rotation(quaternions[[0, 3, 6]]) * grain).angle).max() < 0.01
    assert np.isnan(quaternions[4]).all() and np.isfinite(np.delete(quaternions, 4, axis=0)).all()
    with pytest.raises(InputError, match="its map is 3x3 points but the scan is 1x9"):
        read_orientations(path, 9, (1, 9))
    capsys.readouterr()  # kikuchipy's test writer, with HyperSpy 2.2, prints a progress bar
    assert main(["info", str(path)]) == 0  # info says what a phase map's exports would keep
    assert json.loads(capsys.readouterr().out)["orientations"] == "the scan's own indexing"
    degrees = _h5oina(tmp_path / "degrees.h5oina")  # the unit as bytes, as h5py may give it
    with h5py.File(degrees, "r+") as file:
        euler = file["1/EBSD/Data/Euler"]
        euler[...], euler.attrs["Unit"] = np.rad2deg(euler[()]), np.bytes_(b"deg")
    assert np.rad2deg((~Rotation(read_orientations(degrees, 9)[[0, 3, 6]]) * grain).angle).max() < 0.01
    broken = _h5oina(tmp_path / "broken.h5oina")
    with h5py.File(broken, "r+") as file:
        del file["1/EBSD/Data/Euler"]
        file["1/EBSD/Data/Euler"] = ["not", "angles"]
    with pytest.raises(InputError, match="broken.h5oina: its indexing cannot be read"):
        read_orientations(broken, 9)
    assert "its indexing cannot be read" in open_patterns(broken).warnings[-1]


def test_an_edax_h5_files_own_indexing_is_read(tmp_path):
    """kikuchipy reads OIM's HDF5 patterns with an empty crystal map, and orix does not read the file."""
    import h5py
    from conftest import KIKUCHIPY_DATA

    from ebsd_core.io.readers import open_patterns

    path = tmp_path / "oim.h5"
    shutil.copyfile(KIKUCHIPY_DATA / "edax_h5ebsd/patterns.h5", path)
    rotations = Rotation.random(9)
    with h5py.File(path, "r+") as file:
        data = file["Scan 1/EBSD/Data"]
        for name, angles in zip(("Phi1", "Phi", "Phi2"), rotations.to_euler().T, strict=True):
            data[name][...] = np.append(angles[:8], 4 * np.pi)  # OIM's angles of a point it did not index
        data["CI"][...] = [0.2] * 8 + [-1]  # and its mark of it
    with warnings.catch_warnings():
        # orix warned of the 4 pi as angles given in degrees (a UserWarning); not the DeprecationWarning that orix's
        # use of diffpy.structure 3.5 (Python 3.12 on) gives, which no user sees
        warnings.simplefilter("error", UserWarning)
        source = open_patterns(path)
    assert source.orientations_from == "the scan's own indexing" and source.warnings == []
    quaternions = read_orientations(path, 9, (3, 3))
    np.testing.assert_array_equal(quaternions, source.quaternions)
    assert np.rad2deg((~Rotation(quaternions[:8]) * rotations[:8]).angle).max() < 0.01
    assert np.isnan(quaternions[8]).all()
    hexagonal = shutil.copyfile(path, tmp_path / "oim_hex.h5")
    with h5py.File(hexagonal, "r+") as file:  # as OIM records a hexagonal scan
        del file["Scan 1/EBSD/Header/Grid Type"]
        file["Scan 1/EBSD/Header/Grid Type"] = [b"HexGrid"]
    with pytest.raises(InputError, match="oim_hex.h5: its 9 points lie on a hexagonal grid"):
        read_orientations(hexagonal, 9)
