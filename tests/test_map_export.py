"""Exports round-trip through orix's readers; a failed export leaves nothing behind."""

import csv
import dataclasses

import numpy as np
import pytest
from orix import io as orix_io

from ebsd_core import map_export
from ebsd_core.errors import InputError
from ebsd_core.io.orientations import _orix_load
from ebsd_core.map_export import ctf_text, export_bytes, export_map
from ebsd_core.phasemap import MapPhase, PhaseMap


@pytest.fixture
def small_map():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1], size=12).astype(np.float32)
    probs[3] = [0.5, 0.5]  # below a 0.6 threshold: not indexed
    phases = [MapPhase("austenite", 225, 3.595, "#1f77b4"), MapPhase("ferrite", 229, 2.867, "#ff7f0e")]
    return PhaseMap(
        (3, 4),
        phases,
        probs,
        rng.random(12).astype(np.float32),
        threshold=0.6,
        step_um=1.5,
        truth=rng.integers(0, 2, 12),
        source="scan.h5",
    )


def _ids_after_reading(path):
    xmap = orix_io.load(str(path))
    names = {pid: phase.name for pid, phase in xmap.phases}
    return xmap, [names.get(int(i), "not indexed") if i >= 0 else "not indexed" for i in xmap.phase_id]


@pytest.mark.parametrize("suffix", [".ang", ".ctf", ".h5"])
def test_roundtrip_through_orix(small_map, tmp_path, suffix):
    path = export_map(small_map, tmp_path / f"map{suffix}")
    xmap, read_names = _ids_after_reading(path)
    assert xmap.shape == (3, 4) and xmap.dx == pytest.approx(1.5)
    expected = [small_map.phases[i].name if i >= 0 else "not indexed" for i in small_map.index]
    assert read_names == expected
    if suffix != ".ang":  # .ang keeps only the point group
        assert sorted(p.space_group.number for _, p in xmap.phases if p.space_group) == [225, 229]


@pytest.mark.parametrize("shape", [(1, 200), (200, 1)])
def test_the_png_of_a_line_scan_is_drawn_stretched(small_map, shape):
    """Square points drew a 1 x 200 map 5 px tall, and would have drawn a 200 x 1 one 800 inches (80,000 px) tall."""
    import struct

    probs = np.random.default_rng(1).dirichlet([1, 1], size=200).astype(np.float32)
    line = dataclasses.replace(small_map, nav_shape=shape, probabilities=probs, quality=np.ones(200), truth=None)
    width, height = struct.unpack(">II", export_bytes(line, ".png")[16:24])
    assert 80 <= height <= 1400 and width <= 1800, (width, height)


def test_ctf_marks_unindexed_points_with_phase_zero(small_map):
    data_lines = ctf_text(small_map).splitlines()[16:]
    assert len(data_lines) == 12 and data_lines[3].split("\t")[0] == "0"


def test_csv_and_png(small_map, tmp_path):
    rows = list(csv.DictReader(export_map(small_map, tmp_path / "map.csv").read_text().splitlines()))
    assert len(rows) == 12 and rows[3]["phase"] == "unknown" and rows[0]["true_phase"]
    assert float(rows[5]["x_um"]) == pytest.approx(1.5) and rows[5]["row"] == "1"
    assert export_bytes(small_map, ".png")[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_export_leaves_no_file(small_map, tmp_path, monkeypatch):
    def boom(phase_map, path):
        path.write_text("half")
        raise OSError("disk full")

    monkeypatch.setitem(map_export.WRITERS, ".csv", boom)
    with pytest.raises(OSError):
        export_map(small_map, tmp_path / "map.csv")
    assert list(tmp_path.iterdir()) == []


def test_bad_exports_are_refused(small_map, tmp_path):
    with pytest.raises(InputError, match="unknown export format"):
        export_map(small_map, tmp_path / "map.xlsx")
    empty = PhaseMap((0, 0), small_map.phases, np.zeros((0, 2), np.float32), np.zeros(0, np.float32), 0.5)
    with pytest.raises(InputError, match="empty"):
        export_map(empty, tmp_path / "map.csv")


def _angle_deg(a, b):
    """Angle between rotations given as orix quaternions (no crystal symmetry)."""
    from orix.quaternion import Rotation

    return np.rad2deg((~Rotation(a) * Rotation(b)).angle)


@pytest.mark.parametrize("suffix", [".ang", ".ctf", ".h5"])
def test_exports_keep_the_scans_orientations(small_map, tmp_path, suffix):
    from orix.quaternion import Rotation

    small_map.rotations = Rotation.random(12).data.astype(np.float32)
    small_map.rotations[5] = np.nan  # unknown: exported as the identity
    xmap = orix_io.load(str(export_map(small_map, tmp_path / f"map{suffix}")))
    indexed = small_map.index >= 0
    indexed[5] = False
    assert _angle_deg(xmap.rotations.data[indexed], small_map.rotations[indexed]).max() < 0.01
    assert _angle_deg(xmap.rotations.data[[5]], np.array([[1.0, 0, 0, 0]])).max() < 0.01


def _reshaped(phase_map, shape):
    size = shape[0] * shape[1]
    return dataclasses.replace(
        phase_map,
        nav_shape=shape,
        probabilities=phase_map.probabilities[:size],
        quality=phase_map.quality[:size],
        truth=phase_map.truth[:size],
    )


@pytest.mark.parametrize("shape", [(1, 1), (3, 1)])
def test_a_map_of_one_column_is_exported_in_every_format_but_ang(small_map, tmp_path, shape):
    """Found on review: the .ang of a one-pattern scan failed inside orix (on the command line, with a traceback),
    and a one-column map's .ang put every point at x = y = 0 (orix writes every one-dimensional map as a row)."""
    column = _reshaped(small_map, shape)
    with pytest.raises(InputError, match=r"map of one column cannot be written as .ang \(orix.*; export .ctf") as info:
        export_map(column, tmp_path / "map.ang")
    assert "map.ang" in str(info.value) and not list(tmp_path.iterdir())
    assert map_export.unwritable_reason(column, ".ang") and map_export.unwritable_reason(column, ".ctf") is None
    points = [line.split("\t") for line in export_map(column, tmp_path / "map.ctf").read_text().splitlines()[16:]]
    assert [(float(p[1]), float(p[2])) for p in points] == [(0, 1.5 * row) for row in range(shape[0])]
    for suffix in (".h5", ".csv", ".png"):
        assert export_map(column, tmp_path / f"map{suffix}").stat().st_size > 0


def test_a_map_of_one_row_is_exported_as_ang(small_map, tmp_path):
    xmap = orix_io.load(str(export_map(_reshaped(small_map, (1, 4)), tmp_path / "map.ang")))
    assert xmap.size == 4 and xmap.x.tolist() == pytest.approx([0, 1.5, 3, 4.5])


@pytest.mark.parametrize("suffix", [".ang", ".ctf"])
def test_an_indexing_file_written_on_windows_is_read(small_map, tmp_path, suffix):
    """Found on review: OIM and CHANNEL5 write their text files in the Windows code page, so a sample's or operator's
    name, a "µm" or a project's path (a .ctf's Prj line) were bytes orix could not read as UTF-8, and the file was
    refused as "damaged, cut short, or another format"."""
    from ebsd_core.io.orientations import load_crystal_map

    lines = export_map(small_map, tmp_path / f"utf8{suffix}").read_text().splitlines(keepends=True)
    note = "# Info Probe von J. Müller, 1.5 µm\n" if suffix == ".ang" else "Prj\tC:\\Users\\Jürgen\\Probe µm.cpr\n"
    lines.insert(1, note)
    path = tmp_path / f"windows{suffix}"
    path.write_bytes("".join(lines).encode("cp1252"))
    xmap = load_crystal_map(path)
    assert xmap.shape == (3, 4)
    assert _ids_after_reading(tmp_path / f"utf8{suffix}")[1] == [
        dict(xmap.phases)[int(i)].name if i >= 0 else "not indexed" for i in xmap.phase_id
    ]


def test_the_maps_of_both_grids_carry_a_scale_bar_of_their_step(small_map):
    """The PNG of a scan on a hexagonal grid had none: its bar is of its step along a row, its image's columns being
    half steps."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    from ebsd_core.figures import pyplot
    from ebsd_core.inference import Prediction
    from ebsd_core.io.hex_grid import up2_places
    from ebsd_core.predictions import grid_points

    probabilities = np.random.default_rng(2).dirichlet([1, 1], size=100 * 40 - 20).astype(np.float32)
    points = grid_points(Prediction(probabilities, ["Fm-3m", "Im-3m"], 0.5), up2_places(100, 40, 100 * 40 - 20))

    def bar(fig) -> tuple[str, float]:  # its words, and its length in the image's units
        (found,) = [a for a in fig.axes[0].artists if isinstance(a, AnchoredSizeBar)]
        return found.txt_label.get_text(), found.size_bar.get_children()[0].get_width()

    with pyplot() as plt:
        square = map_export.map_figure(small_map)  # 4 columns 1.5 µm apart: a bar of 1 µm
        hexagonal = map_export.grid_map_figure(points, small_map.phases, "hex.up2", step_um=2.5)  # 250 µm wide
        try:
            assert bar(square) == ("1 µm", pytest.approx(1 / 1.5))
            assert bar(hexagonal) == ("50 µm", pytest.approx(50 / 1.25))  # in half steps of 1.25 µm
        finally:
            plt.close(square)
            plt.close(hexagonal)


def test_a_hexagonal_scans_phases_are_written_into_its_own_ang_and_nothing_else_of_it_changes(small_map, tmp_path):
    """No square map is made of a scan on a hexagonal grid; its own .ang (OIM's, on that grid) is written again with
    the model's phases (not indexed, CI -1, where it is unknown): its header's phases are the model's classes, and
    every other byte is its own (orientations, places, image quality, OIM's CI where the model decides, its header's
    other lines, a Windows user's name and line endings)."""
    from conftest import oim_indexing

    from ebsd_core.inference import Prediction
    from ebsd_core.io.hex_grid import up2_places
    from ebsd_core.predictions import grid_points

    places = up2_places(4, 3, 11)  # rows of 4, 3 and 4 points
    indexing = oim_indexing(tmp_path / "scan.ang", places, newline="\r\n", phases=2)
    probabilities = np.random.default_rng(3).dirichlet([1, 1], size=11).astype(np.float32)
    probabilities[4] = [0.5, 0.5]  # unknown at 0.6
    points = grid_points(Prediction(probabilities, ["Fm-3m", "Im-3m"], 0.6), places)
    out = map_export.write_hexagonal_ang(points, small_map.phases, indexing, tmp_path / "phases.ang")
    before, after = indexing.read_bytes().split(b"\r\n"), out.read_bytes().split(b"\r\n")
    assert b"\n" not in out.read_bytes().replace(b"\r\n", b"")
    first_phase, data = before.index(b"# Phase 1"), _first_point(before)
    assert after[:first_phase] == before[:first_phase]
    grid, its_grid = after.index(b"# GRID: HexGrid"), before.index(b"# GRID: HexGrid")
    ours = after[first_phase:grid]
    assert after[grid : _first_point(after)] == before[its_grid:data]
    assert b"# MaterialName  \taustenite" in ours and b"# MaterialName  \tferrite" in ours and b"# Phase 2" in ours
    assert not [line for line in ours if b"Nickel" in line or b"hklFamilies" in line]  # the file's phase: gone
    assert "# OPERATOR: \tJ. Müller".encode("cp1252") in after  # as it was, not re-encoded
    new_points, old_points = after[_first_point(after) :], before[data:]
    assert [len(line) for line in new_points] == [len(line) for line in old_points]  # its columns stay aligned
    assert len(new_points) == 12 and new_points[-1] == b""  # 11 points, each line ended as before
    for new, old, index in zip(new_points, old_points, points.index):
        new, old = new.split(), old.split()
        assert new[:6] + new[8:] == old[:6] + old[8:]
        expected = (b"-1.000", b"0") if index < 0 else (old[6], str(index + 1).encode())  # OIM's CI where decided
        assert (new[6], new[7]) == expected
    xmap = _orix_load(out)  # a Windows user's name in its header: read through a UTF-8 copy, as scans are
    names = [xmap.phases[int(i)].name.lower() if i >= 0 else "not indexed" for i in xmap.phase_id]
    assert names == [small_map.phases[i].name if i >= 0 else "not indexed" for i in points.index]
    assert names[4] == "not indexed" and {"austenite", "ferrite"} <= set(names)


def _first_point(lines: list[bytes]) -> int:
    return next(i for i, line in enumerate(lines) if not line.startswith(b"#"))


def test_a_hexagonal_ang_of_other_points_than_those_classified_leaves_nothing(small_map, tmp_path):
    from conftest import oim_indexing

    from ebsd_core.inference import Prediction
    from ebsd_core.io.hex_grid import up2_places
    from ebsd_core.predictions import grid_points

    probabilities = np.full((11, 2), 0.5, np.float32)
    points = grid_points(Prediction(probabilities, ["Fm-3m", "Im-3m"], 0.6), up2_places(4, 3, 11))
    places = up2_places(4, 3, 11)
    for count, words in ((10, "holds 10 points, not the 11"), (12, "holds 12 points, not the 11")):
        changed_places = places[:count] if count < 11 else np.vstack([places, [[3, 0]]])
        changed = oim_indexing(tmp_path / f"changed{count}.ang", changed_places)
        with pytest.raises(InputError, match=f"changed{count}.ang: {words} of the scan classified: changed since"):
            map_export.write_hexagonal_ang(points, small_map.phases, changed, tmp_path / "phases.ang")
        assert not (tmp_path / "phases.ang").exists() and not list(tmp_path.glob(".phases*"))


@pytest.mark.parametrize("suffix", [".ang", ".ctf"])
def test_a_map_made_with_the_scans_own_indexing_exports_that_file_with_the_models_phases(small_map, tmp_path, suffix):
    """Its .ang and .ctf were new files (orix's, this tool's): the indexing's orientations and the model's phases,
    but the patterns' quality as image quality or band contrast, and none of the vendor's header (pattern centre,
    project, magnification). They are now the vendor's own file with the model's phases, every other byte its own."""
    from conftest import oim_indexing, oxford_indexing

    if suffix == ".ang":
        places = np.column_stack(np.divmod(np.arange(12), 4))
        own = oim_indexing(tmp_path / "hough.ang", places, hexagonal=False, newline="\r\n")
    else:
        own = oxford_indexing(tmp_path / "hough.ctf", 3, 4)
    mapped = dataclasses.replace(small_map, indexing=str(own))
    before, after = own.read_bytes().split(b"\r\n"), export_map(mapped, tmp_path / f"map{suffix}").read_bytes()
    after = after.split(b"\r\n")
    first, last = (b"# Phase 1", b"# GRID: SqrGrid") if suffix == ".ang" else (b"Phases\t2", b"Phase\tX\tY")
    starts = [[i for i, line in enumerate(lines) if line.startswith(first)][0] for lines in (before, after)]
    ends = [[i for i, line in enumerate(lines) if line.startswith(last)][0] for lines in (before, after)]
    assert after[: starts[1]] == before[: starts[0]] and after[ends[1] : -13] == before[ends[0] : -13]  # the rest
    split = b" " if suffix == ".ang" else b"\t"
    points = [line.split() if suffix == ".ang" else line.split(split) for line in after[-13:-1]]
    kept = [line.split() if suffix == ".ang" else line.split(split) for line in before[-13:-1]]
    phase, changed = (7, {6, 7}) if suffix == ".ang" else (0, {0, 4})
    for new, old, index in zip(points, kept, small_map.index):
        assert [v for i, v in enumerate(new) if i not in changed] == [v for i, v in enumerate(old) if i not in changed]
        assert int(new[phase]) == (index + 1 if index >= 0 else 0)
        not_indexed = b"3" if suffix == ".ctf" else b"-1.000"  # no solution, or CI -1, where the model says unknown
        assert new[4 if suffix == ".ctf" else 6] == (old[4 if suffix == ".ctf" else 6] if index >= 0 else not_indexed)
    assert b"Nickel" not in b"".join(after) and b"austenite" in b"".join(after)
    assert suffix == ".ang" or b"Probe 1.cpr" in after[1]  # the project AZtec saved it in
    xmap = _orix_load(tmp_path / f"map{suffix}")
    assert xmap.shape == (3, 4)
    names = [xmap.phases[int(i)].name.lower() if i >= 0 else "not indexed" for i in xmap.phase_id]
    assert names == [small_map.phases[i].name if i >= 0 else "not indexed" for i in small_map.index]
    without = export_map(small_map, tmp_path / f"plain{suffix}").read_bytes()  # no indexing file: written anew
    assert b"Nickel" not in without and b"\r\n" not in without


@pytest.mark.parametrize("suffix", [".ang", ".ctf"])
def test_an_own_indexing_file_with_a_point_cut_short_is_named_and_leaves_nothing(small_map, tmp_path, suffix):
    from conftest import oim_indexing, oxford_indexing

    if suffix == ".ang":
        own = oim_indexing(tmp_path / "hough.ang", np.column_stack(np.divmod(np.arange(12), 4)), hexagonal=False)
    else:
        own = oxford_indexing(tmp_path / "hough.ctf", 3, 4, newline="\n")
    lines = own.read_bytes().split(b"\n")
    lines[-3] = lines[-3][:12]  # a point's line cut after its first columns
    own.write_bytes(b"\n".join(lines))
    with pytest.raises(InputError, match=f"hough{suffix}: a point of it has [0-9] columns"):
        export_map(dataclasses.replace(small_map, indexing=str(own)), tmp_path / f"map{suffix}")
    assert not (tmp_path / f"map{suffix}").exists() and not list(tmp_path.glob(".map*"))
