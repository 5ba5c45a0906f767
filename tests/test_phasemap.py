"""Map inference: in-process and on a dask cluster, map shape handling, ground truth, bad scans."""

import csv
import json
import os
import re
from collections import Counter

import h5py
import numpy as np
import pytest
import torch
from conftest import (
    KIKUCHIPY_DATA,
    as_hexagonal_grid,
    damage_pixels,
    oim_indexing,
    scan_as_images,
    scan_indexing,
)

from ebsd_core import memory
from ebsd_core.cli import main
from ebsd_core.errors import InputError, ModelError
from ebsd_core.io import images
from ebsd_core.io.dataset import read_dataset, write_dataset
from ebsd_core.io.readers import open_patterns
from ebsd_core.phasemap import MAP_VIEWS, map_scan, map_scan_distributed, map_views, open_cluster, phases_for_model
from ebsd_core.store import load_model

#: Images numbered in scan order (``p1.png``, ... ``p80.png``), as EDAX OIM exports them: their names give no map shape
NUMBERED = "p{number}.png"


@pytest.fixture(scope="module")
def phase_map(map_model, map_scan_file):
    model, card = load_model(map_model)
    return map_scan(model, card, open_patterns(map_scan_file), batch_size=16)


def test_map_has_one_result_per_point(phase_map):
    assert phase_map.nav_shape == (8, 10) and phase_map.size == 80
    np.testing.assert_allclose(phase_map.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert phase_map.quality.shape == (80,) and np.isfinite(phase_map.quality).all()
    assert sum(phase_map.fractions().values()) == pytest.approx(1.0)
    assert [p.name for p in phase_map.phases] == ["Austenite", "Ferrite"]


def test_accuracy_is_scored_against_ground_truth(phase_map):
    truth = phase_map.truth
    assert truth is not None and set(np.unique(truth)) == {0, 1}
    assert phase_map.accuracy() == pytest.approx(float((phase_map.index == truth).mean()))


@pytest.mark.parametrize(
    ("shape", "step"), [((8, 10), 1), ((245, 244), 1), ((1000, 1000), 5), ((2000, 2000), 9), ((3, 100_000), 3)]
)
def test_a_large_map_is_drawn_at_every_few_rows_and_columns(shape, step):
    """At most the points a screen shows, every step-th row and column, the step as small as that allows."""
    from ebsd_core.phasemap import MapPhase, PhaseMap

    n = shape[0] * shape[1]
    phase_map = PhaseMap(shape, [MapPhase("Ni", 225, 3.52, "#1f77b4")], np.ones((n, 1), np.float32), np.ones(n), 0.5)
    rows, cols, found = phase_map.shown_points(60_000)
    assert found == step and len(rows) * len(cols) <= 60_000
    assert rows[0] == cols[0] == 0 and (np.diff(rows) == step).all() and (np.diff(cols) == step).all()
    assert rows[-1] > shape[0] - 1 - step and cols[-1] > shape[1] - 1 - step  # the last rows and columns are reached
    if step > 1:  # one step less would draw too many
        assert -(-shape[0] // (step - 1)) * -(-shape[1] // (step - 1)) > 60_000


def test_crystal_map_has_phases_and_points(phase_map):
    xmap = phase_map.to_crystal_map()
    assert xmap.shape == (8, 10)
    assert [xmap.phases[i].space_group.number for i in (0, 1)] == [225, 229]
    np.testing.assert_array_equal(xmap.get_map_data("phase_id").ravel(), phase_map.index)


def test_distributed_map_matches_in_process(map_model, map_scan_file, phase_map, monkeypatch, tmp_path):
    monkeypatch.setenv("EBSD_MODEL_STORE", str(map_model.parent))
    monkeypatch.chdir(tmp_path)
    with open_cluster("local", workers=1) as client:
        # the workers keep freed memory as this process does (set before they start, where glibc reads it)
        expected = memory.worker_environment().get("MALLOC_MMAP_MAX_")
        assert set(client.run(os.environ.get, "MALLOC_MMAP_MAX_").values()) == {expected}
        distributed = map_scan_distributed(map_model, map_scan_file, client, chunk=32, device="cpu")
        compiled = map_scan_distributed(map_model, map_scan_file, client, chunk=32, device="cpu", compile="always")
        # a model named as in the store, as every other command takes it: was looked for in the working folder
        named = map_scan_distributed(map_model.name, map_scan_file, client, chunk=32, device="cpu")
        hexagonal = KIKUCHIPY_DATA / "edax_binary" / "edax_binary.up2"  # drawn on its grid, in one process
        with pytest.raises(InputError, match=r"hexagonal: a cluster maps square grids, .* \(phasemap --out map.png"):
            map_scan_distributed(map_model, hexagonal, client, chunk=32, device="cpu")
        numbered = scan_as_images(map_scan_file, tmp_path / "numbered", NUMBERED)  # laid out by the indexing's map
        hough = scan_indexing(tmp_path / "hough.ang")
        laid_out = map_scan_distributed(map_model, numbered, client, chunk=32, device="cpu", orientations=hough)
        cut_short = scan_as_images(map_scan_file, tmp_path / "cut", count=60)  # its indexing maps 2 rows more
        cut = map_scan_distributed(map_model, cut_short, client, chunk=32, device="cpu", orientations=hough)
        # a scan too large to decode when opened, here and on the workers, with an image damaged past its header
        monkeypatch.setattr(images, "IN_MEMORY_BYTES", 0)
        client.run(setattr, images, "IN_MEMORY_BYTES", 0)
        damage_pixels(numbered := scan_as_images(map_scan_file, tmp_path / "damaged", NUMBERED) / "p6.png")
        damaged = map_scan_distributed(map_model, numbered.parent, client, chunk=32, device="cpu", orientations=hough)
        # found on review: a worker kept the scan it had read (and its model) for the next run on the same path,
        # after the scan was exported again to it
        scan = read_dataset(map_scan_file)
        write_dataset(scan, tmp_path / "scan.h5")
        first = map_scan_distributed(map_model, tmp_path / "scan.h5", client, (8, 10), 32, "cpu", cleanup=False)
        write_dataset(scan.subset(np.arange(80)[::-1]), tmp_path / "scan.h5")
        again = map_scan_distributed(map_model, tmp_path / "scan.h5", client, (8, 10), 32, "cpu", cleanup=False)
    np.testing.assert_allclose(again.probabilities, first.probabilities[::-1], atol=1e-5)
    assert laid_out.nav_shape == (8, 10) and cut.nav_shape == (8, 10) and (cut.index[60:] == -1).all()
    np.testing.assert_allclose(cut.quality, np.where(np.arange(80) < 60, phase_map.quality, 0), atol=1e-5)
    assert damaged.notes[-1].startswith("1 of 80 images could not be read when the run reached it (index 5; p6.png: ")
    assert damaged.index[5] == -1 and damaged.quality[5] == 0  # unknown, where it stopped the run
    np.testing.assert_allclose(np.delete(damaged.quality, 5), np.delete(phase_map.quality, 5), atol=1e-5)
    np.testing.assert_allclose(laid_out.probabilities, phase_map.probabilities, atol=1e-4)
    np.testing.assert_allclose(distributed.probabilities, phase_map.probabilities, atol=1e-4)
    np.testing.assert_array_equal(named.probabilities, distributed.probabilities)
    np.testing.assert_allclose(distributed.quality, phase_map.quality, atol=1e-5)
    np.testing.assert_allclose(compiled.probabilities, phase_map.probabilities, atol=1e-3)
    np.testing.assert_array_equal(distributed.rotations, phase_map.rotations)  # the scan's, for the exports
    assert distributed.views == phase_map.views  # what Explain gives a point of it


def test_every_map_point_gets_every_view_unless_asked(map_model, map_scan_file, phase_map):
    """The model's views_below is for single patterns: the grain clean-up needs every point's views."""
    model, card = load_model(map_model)
    card.views, card.views_below = 4, 0.999
    source = open_patterns(map_scan_file)
    every = map_scan(model, card, source, batch_size=16)
    assert every.probabilities.shape == phase_map.probabilities.shape
    card.views_below = None
    np.testing.assert_allclose(every.probabilities, map_scan(model, card, source, batch_size=16).probabilities)
    fewer = map_scan(model, card, source, batch_size=16, views_below=0.5)  # asked: the sure points keep one view
    assert not np.allclose(fewer.probabilities, every.probabilities, atol=1e-4)
    assert every.views == {"views": 2, "views_below": None, "own": True}  # recorded for Explain
    assert fewer.views == {"views": 2, "views_below": 0.5, "own": True}


def test_map_views_follow_the_cleanup(map_model):
    _, card = load_model(map_model)
    card.views = 4
    assert map_views(card, cleanup=True) == MAP_VIEWS == 2  # each point's own views, fewer of them
    assert map_views(card, cleanup=False) == 4 and map_views(card, cleanup=True, views=3) == 3
    card.views = 1
    assert map_views(card, cleanup=True) == 1  # never more work than the model asks for


def test_compiled_map_matches_eager(map_model, map_scan_file, phase_map):
    from torch._dynamo.utils import counters

    model, card = load_model(map_model)
    folded = counters["inductor"]["binary_folding_conv"]
    compiled = map_scan(model, card, open_patterns(map_scan_file), batch_size=24, compile="always")
    np.testing.assert_allclose(compiled.probabilities, phase_map.probabilities, atol=1e-3)
    assert compiled.summary()["points"] == phase_map.summary()["points"]
    # the weights were frozen: BatchNorm folded into the convolutions (options={"freezing": True} did not)
    assert counters["inductor"]["binary_folding_conv"] > folded


def test_compile_failure_falls_back_to_eager(map_model, map_scan_file, phase_map, monkeypatch, caplog):
    def broken_compile(model, **kwargs):
        def run(x):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    model, card = load_model(map_model)
    result = map_scan(model, card, open_patterns(map_scan_file), compile="always")
    np.testing.assert_allclose(result.probabilities, phase_map.probabilities, atol=1e-6)
    assert "compiling failed (RuntimeError: no C++ compiler)" in caplog.text
    with pytest.raises(ModelError, match="compile must be one of"):
        map_scan(model, card, open_patterns(map_scan_file), compile="sometimes")


def test_phases_are_named_by_material_only_when_each_class_had_one(map_model):
    _, card = load_model(map_model)
    assert [p.label for p in phases_for_model(card)] == ["Austenite (Fm-3m)", "Ferrite (Im-3m)"]
    card.training["materials"] = ["austenite", "ni", "ferrite"]
    assert [p.label for p in phases_for_model(card)] == ["Fm-3m", "Im-3m"]
    card.training["materials"] = ["my-steel-a", "my-steel-b"]  # class folders of real data
    assert [p.label for p in phases_for_model(card)] == ["Fm-3m", "Im-3m"]


def test_map_shape_problems_are_named(map_model, map_scan_file, tmp_path):
    model, card = load_model(map_model)
    source = open_patterns(map_scan_file)
    with pytest.raises(InputError, match="records its map shape, 8x10; the shape given, 10x8, would scramble it"):
        map_scan(model, card, source, nav_shape=(10, 8))
    source.nav_shape = None  # a file that records no shape takes the one given, when it fits
    with pytest.raises(InputError, match="does not match its 80 patterns"):
        map_scan(model, card, source, nav_shape=(7, 7))
    assert map_scan(model, card, source, nav_shape=(10, 8)).nav_shape == (10, 8)
    source.nav_shape = (80,)
    with pytest.raises(InputError, match="without a 2D map shape"):
        map_scan(model, card, source)
    from PIL import Image

    Image.fromarray(source.batch(0, 1)[0]).save(tmp_path / "one.png")
    with pytest.raises(InputError, match=r"map shape 2x2 does not match its 1 pattern$"):  # not "its 1 patterns"
        map_scan(model, card, open_patterns(tmp_path / "one.png"), nav_shape=(2, 2))


def test_a_scan_exported_as_images_named_by_their_points_is_mapped_as_the_scan(
    phase_map, map_model, map_scan_file, tmp_path
):
    """Images named x{column}_y{row} come column by column in the order of their names: mapped row by row as given,
    the map was scrambled. Their names give the map's shape and order: the map is the scan's."""
    from PIL import Image

    folder = tmp_path / "export"
    folder.mkdir()
    for index, pattern in enumerate(open_patterns(map_scan_file).batch(0, 80)):
        row, column = divmod(index, 10)
        Image.fromarray(pattern).save(folder / f"Map Data 1_x{column}_y{row}.png")
    model, card = load_model(map_model)
    from_images = map_scan(model, card, open_patterns(folder), batch_size=16)
    assert from_images.nav_shape == (8, 10)
    np.testing.assert_array_equal(from_images.index, phase_map.index)
    with pytest.raises(InputError, match="its images' names give its map shape, 8x10; the shape given, 10x8, would"):
        map_scan(model, card, open_patterns(folder), nav_shape=(10, 8))


def test_nan_patterns_are_refused(map_model, map_scan_file, tmp_path):
    scan = read_dataset(map_scan_file)
    scan.patterns = scan.patterns.astype(np.float32)
    scan.patterns[5, 3, 3] = np.nan
    write_dataset(scan, tmp_path / "nan.h5")
    model, card = load_model(map_model)
    with pytest.raises(InputError, match="NaN"):
        map_scan(model, card, open_patterns(tmp_path / "nan.h5"))


def test_truncated_scan_is_named(map_model, map_scan_file, tmp_path):
    broken = tmp_path / "broken.h5"
    data = map_scan_file.read_bytes()
    with h5py.File(map_scan_file) as f:
        offset = f["patterns"].id.get_offset() or len(data) // 2
    broken.write_bytes(data[: offset + 100])
    model, card = load_model(map_model)
    with pytest.raises(InputError, match="broken.h5"):
        map_scan(model, card, open_patterns(broken))


def test_phasemap_command_writes_every_format(map_model, map_scan_file, tmp_path, capsys):
    outs = [tmp_path / f"map{ext}" for ext in (".ang", ".ctf", ".h5", ".csv", ".png")]
    args = ["phasemap", "--model", str(map_model), "--scan", str(map_scan_file), "--scheduler", "none"]
    assert main(args + [x for out in outs for x in ("--out", str(out))]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["points"] == 80 and 0 <= summary["accuracy"] <= 1
    assert all(out.is_file() and out.stat().st_size > 0 for out in outs)
    assert main(args + ["--out", str(tmp_path / "map.txt")]) == 2
    assert "unknown export format" in capsys.readouterr().err
    assert main(args + ["--workers", "8", "--out", str(tmp_path / "again.ang")]) == 2  # not silently one process
    assert "--workers sizes the cluster that --scheduler local starts" in capsys.readouterr().err
    assert main(args + ["--nav-shape", "10x8", "--out", str(tmp_path / "again.ang")]) == 2  # the file says 8x10
    assert "records its map shape, 8x10; the shape given, 10x8, would scramble it" in capsys.readouterr().err
    # another unknown threshold than the model's, as the Phase map page sets: its points unknown in the exports
    assert main(args + ["--unknown-threshold", "0.99", "--out", str(tmp_path / "sure.csv")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unknown_threshold"] == 0.99 and summary["fractions"]["unknown"] > 0.5
    with open(tmp_path / "sure.csv") as table:
        phases = [row["phase"] for row in csv.DictReader(table)]
    assert round(phases.count("unknown") / len(phases), 4) == summary["fractions"]["unknown"]
    with pytest.raises(SystemExit):
        main(args + ["--unknown-threshold", "2", "--out", str(tmp_path / "x.csv")])
    assert "unknown threshold must be a number from 0 to 1, not '2'" in capsys.readouterr().err


def _angles_deg(a, b):
    from orix.quaternion import Rotation

    return np.rad2deg((~Rotation(np.asarray(a, dtype=float)) * Rotation(np.asarray(b, dtype=float))).angle)


def test_a_map_keeps_the_scans_orientations_through_save_and_export(phase_map, map_scan_file, tmp_path):
    from orix import io as orix_io

    from ebsd_core.map_export import export_map
    from ebsd_core.phasemap import load_phase_map, save_phase_map, saved_map_header

    truth = read_dataset(map_scan_file).quaternions.reshape(-1, 4)
    assert phase_map.orientations_from == "simulation (true orientations)"
    assert phase_map.summary()["orientations"] == "simulation (true orientations)"
    reloaded = load_phase_map(save_phase_map(phase_map, tmp_path / "map.npz"))
    assert saved_map_header(tmp_path / "map.npz")["nav_shape"] == [8, 10] and saved_map_header(map_scan_file) is None
    assert _angles_deg(reloaded.rotations, truth).max() < 0.01
    xmap = orix_io.load(str(export_map(reloaded, tmp_path / "map.ctf")))
    indexed = phase_map.index >= 0
    assert _angles_deg(xmap.rotations.data[indexed], truth[indexed]).max() < 0.01


def test_images_numbered_in_scan_order_take_their_map_shape_from_the_scans_indexing(
    map_model, map_scan_file, tmp_path, capsys, caplog
):
    """Found on review: images numbered in scan order (EDAX OIM's export) with the scan's .ang beside them needed
    ``--nav-shape`` as well, though the .ang records the map: without it the command refused the folder."""
    folder = scan_as_images(map_scan_file, tmp_path / "numbered", NUMBERED)
    args = ["phasemap", "--model", str(map_model), "--scan", str(folder), "--cleanup", "none"]
    assert main([*args, "--out", str(tmp_path / "none.png")]) == 2
    assert (
        "numbered: the folder holds 80 patterns without a 2D map shape; give one (ROWSxCOLS), or the scan's indexing "
        "file (.ang, .ctf, .h5oina), whose map gives it"
    ) in capsys.readouterr().err
    hough = scan_indexing(tmp_path / "hough.ang")
    assert main([*args, "--orientations", str(hough), "--out", str(tmp_path / "map.ang")]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["nav_shape"] == [8, 10] and summary["orientations"] == "hough.ang"
    model, card = load_model(map_model)
    expected = map_scan(model, card, open_patterns(map_scan_file), cleanup=False)
    from orix import io as orix_io

    xmap = orix_io.load(str(tmp_path / "map.ang"))
    assert xmap.shape == (8, 10)
    in_ang = np.where(expected.index >= 0, expected.index + 1, -1)  # an .ang counts phases from 1
    np.testing.assert_array_equal(xmap.get_map_data("phase_id").ravel(), in_ang)
    # a shape given that the indexing contradicts is still refused, naming both
    assert main([*args, "--orientations", str(hough), "--nav-shape", "10x8", "--out", str(tmp_path / "m.png")]) == 2
    assert "its map is 8x10 points but the scan is 10x8" in capsys.readouterr().err


def test_the_ang_of_a_map_made_with_the_scans_own_ang_is_that_file_with_the_models_phases(
    map_model, map_scan_file, tmp_path, capsys
):
    """The .ang of a map made with the scan's own .ang (--orientations) was one orix wrote: the .ang's orientations
    and the model's phases, but the patterns' quality as its image quality and none of its header (the pattern centre,
    the operator). It is now that .ang with the model's phases, every other byte its own; without one, orix's."""
    from ebsd_core.io.orientations import _orix_load

    places = np.column_stack(np.divmod(np.arange(80), 10))  # 8 rows of 10
    hough = oim_indexing(tmp_path / "hough.ang", places, hexagonal=False, newline="\r\n")
    args = ["phasemap", "--model", str(map_model), "--scan", str(map_scan_file), "--cleanup", "none"]
    assert main([*args, "--orientations", str(hough), "--out", str(tmp_path / "map.ang")]) == 0
    capsys.readouterr()
    before, after = hough.read_bytes().split(b"\r\n"), (tmp_path / "map.ang").read_bytes().split(b"\r\n")
    assert after[:6] == before[:6] and b"# x-star                0.501900" in after  # its pattern centre
    assert "# OPERATOR: \tJ. Müller".encode("cp1252") in after and b"# MaterialName  \tNickel" not in after
    points, its_points = after[-81:-1], before[-81:-1]
    assert [p.split()[:6] + p.split()[8:] for p in points] == [p.split()[:6] + p.split()[8:] for p in its_points]
    model, card = load_model(map_model)
    expected = map_scan(model, card, open_patterns(map_scan_file), cleanup=False)
    assert [int(p.split()[7]) for p in points] == np.where(expected.index >= 0, expected.index + 1, 0).tolist()
    mapped, indexing = _orix_load(tmp_path / "map.ang"), _orix_load(hough)
    assert mapped.shape == (8, 10)
    np.testing.assert_array_equal(mapped.rotations.data, indexing.rotations.data)
    assert main([*args, "--out", str(tmp_path / "plain.ang")]) == 0  # the scan's own orientations: orix writes it
    assert b"# OPERATOR: orix" in (tmp_path / "plain.ang").read_bytes()


def test_a_scan_named_by_points_whose_last_rows_were_not_exported_is_mapped_on_its_indexings_map(
    map_model, map_scan_file, tmp_path, capsys, caplog
):
    """Found on review: a scan exported as images named by their points, whose export stopped before its last rows
    (a disk full), made a map of the rows it had; its .ang, of the whole scan, was then refused ("holds 80 points but
    the scan has 60 patterns"). The .ang's map is now the map's: the rows without images are blank, read as unknown,
    said so; the orientations are the .ang's."""
    folder = scan_as_images(map_scan_file, tmp_path / "exported", count=60)
    hough = scan_indexing(tmp_path / "hough.ang")
    args = ["phasemap", "--model", str(map_model), "--scan", str(folder), "--orientations", str(hough)]
    assert main([*args, "--cleanup", "none", "--out", str(tmp_path / "map.ang")]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["nav_shape"] == [8, 10] and summary["orientations"] == "hough.ang"
    assert (
        f"{folder}: its images' names give the first 6 of the 8 rows that hough.ang maps (an export cut short?): the "
        "last 2 rows are drawn blank, read as unknown"
    ) in caplog.text
    model, card = load_model(map_model)
    expected = map_scan(model, card, open_patterns(map_scan_file), cleanup=False)
    from orix import io as orix_io

    xmap = orix_io.load(str(tmp_path / "map.ang"))
    phases = xmap.get_map_data("phase_id").ravel()
    np.testing.assert_array_equal(phases[:60], np.where(expected.index >= 0, expected.index + 1, -1)[:60])
    assert (phases[60:] == -1).all()
    assert summary["notes"][-1].startswith("20 of 80 points have no image (index 60, 61, 62, 63, 64, ...)")
    # of the points with a pattern: a blank one's tie (0.5 of two classes) read as doubt (found with this test)
    assert summary["mean_confidence"] == pytest.approx(expected.confidence[:60].mean(), abs=1e-3)
    source = open_patterns(folder)
    assert source.nav_shape == (6, 10) and source.laid_on((8, 10)).nav_shape == (8, 10)
    assert source.laid_on((8, 11)) is source and source.laid_on((5, 10)) is source  # not its columns; fewer rows
    # images named from a later row (a region of a scan, stage coordinates) are not taken for its first rows
    later = tmp_path / "later"
    later.mkdir()
    for image in folder.iterdir():
        x, y = (int(part[1:]) for part in image.stem.split("_"))
        (later / f"x{x}_y{y + 2}.png").hardlink_to(image)
    assert main([*args[:4], str(later), *args[5:], "--out", str(tmp_path / "later.png")]) == 2
    assert "hough.ang: holds 80 points but the scan has 60 patterns" in capsys.readouterr().err


def test_phasemap_command_takes_orientations_from_a_hough_indexing_file(map_model, map_scan_file, tmp_path, capsys):
    from orix import io as orix_io
    from orix.quaternion import Rotation

    hough = Rotation.random(80)
    scan_indexing(tmp_path / "hough.ang", hough)
    args = ["phasemap", "--model", str(map_model), "--scan", str(map_scan_file), "--cleanup", "none"]
    args += ["--orientations", str(tmp_path / "hough.ang"), "--out", str(tmp_path / "map.ang")]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["orientations"] == "hough.ang"
    xmap = orix_io.load(str(tmp_path / "map.ang"))
    indexed = xmap.phase_id >= 0
    assert indexed.any() and _angles_deg(xmap.rotations.data[indexed], hough.data[indexed]).max() < 0.01
    before = (tmp_path / "hough.ang").read_bytes()
    over = args[:-1] + [str(tmp_path / "hough.ang")]  # the microscope's own indexing was replaced by the export
    assert main(over) == 2
    assert "hough.ang: is the --orientations file, which this command reads" in capsys.readouterr().err
    assert (tmp_path / "hough.ang").read_bytes() == before
    args[args.index("--orientations") + 1] = str(map_scan_file)  # a pattern file orix cannot read
    assert main(args[:-2] + ["--out", str(tmp_path / "other.ang")]) == 2
    assert "duplex_scan.h5: orix cannot read a crystal map" in capsys.readouterr().err


def test_a_real_scans_own_indexing_reaches_the_export(map_model, tmp_path):
    import kikuchipy as kp
    from conftest import REAL_NI, shared_file
    from orix import io as orix_io

    from ebsd_core.map_export import export_map

    path = shared_file(REAL_NI)
    model, card = load_model(map_model)
    phase_map = map_scan(model, card, open_patterns(path), cleanup=False, allow_resize=True)
    assert phase_map.orientations_from == "the scan's own indexing"
    recorded = kp.load(str(path), lazy=True).xmap.rotations.data
    assert _angles_deg(phase_map.rotations, recorded).max() < 0.01
    export_map(phase_map, tmp_path / "ni.ctf")
    xmap = orix_io.load(str(tmp_path / "ni.ctf"))
    indexed = xmap.phase_id >= 0
    assert _angles_deg(xmap.rotations.data[indexed], recorded[indexed]).max() < 0.01


def test_blank_frames_are_unknown_and_named(map_model, map_scan_file, tmp_path):
    """Dropped frames (NORDIF writes zeros) or a saturated camera hold no evidence: whatever the model
    answered for them was its bias, and their image quality came out as the best of the map (1.0)."""
    scan = read_dataset(map_scan_file)
    blank = [3, 40, 41]
    scan.patterns[3] = 0
    scan.patterns[40:42] = scan.patterns.max()
    write_dataset(scan, tmp_path / "dropped.h5")
    model, card = load_model(map_model)
    for cleanup in (False, True):
        blanked = map_scan(model, card, open_patterns(tmp_path / "dropped.h5"), batch_size=16, cleanup=cleanup)
        raw = blanked.raw_probabilities if cleanup else blanked.probabilities
        np.testing.assert_array_equal(raw[blank], 0.5)
        np.testing.assert_array_equal(np.flatnonzero(blanked.quality == 0), blank)
        assert (blanked.quality < 1).all()
        assert any("3 of 80 patterns hold one value everywhere (index 3, 40, 41)" in n for n in blanked.notes)
        assert (blanked.index[blank] == -1).all()  # the clean-up too: a blank correlates with no neighbour


def test_a_hexagonal_scan_is_classified_but_not_mapped(map_model, tmp_path, capsys):
    hexagonal = KIKUCHIPY_DATA / "edax_binary" / "edax_binary.up2"
    model, card = load_model(map_model)
    with pytest.raises(InputError, match="hexagonal grid"):
        map_scan(model, card, open_patterns(hexagonal), nav_shape=(2, 5))
    assert (
        main(["predict", "--model", str(map_model), "--input", str(hexagonal), "--out", str(tmp_path / "p.csv")]) == 0
    )
    assert json.loads(capsys.readouterr().out)["patterns"] == 10


def test_a_scan_of_images_named_by_points_of_a_hexagonal_grid_is_classified_and_drawn_on_it_not_mapped(
    map_model, map_scan_file, tmp_path, capsys, caplog
):
    """Found on review: they were mapped as a checkerboard of every other point blank (a hexagonal grid's rows are
    offset by half a step: on a grid of half steps, each row takes every other column). No square map is made of
    them; `phasemap` draws their phases on their grid as a PNG, and refuses a square map's formats before any work."""
    from PIL import Image

    from ebsd_core.io.point_names import HEXAGONAL_NAMES

    folder = as_hexagonal_grid(scan_as_images(map_scan_file, tmp_path / "hexagonal"))
    model, card = load_model(map_model)
    with pytest.raises(InputError, match=re.escape(f"hexagonal: {HEXAGONAL_NAMES}")):
        map_scan(model, card, open_patterns(folder))
    phasemap = ["phasemap", "--model", str(map_model), "--scan", str(folder), "--out"]
    assert main([*phasemap, str(tmp_path / "m.png"), "--out", str(tmp_path / "m.ctf")]) == 2
    assert "m.ctf: the scan's grid is hexagonal: its phases are drawn as .png, written into its own .ang" in (
        capsys.readouterr().err
    )
    assert main([*phasemap, str(tmp_path / "m.png"), "--out", str(tmp_path / "m.ang")]) == 2
    assert "m.ang: the scan's grid is hexagonal: its .ang is its own (OIM's indexing of it, on that grid) with" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "m.png").exists()  # refused before any work
    assert main([*phasemap, str(tmp_path / "m.png")]) == 0
    assert json.loads(capsys.readouterr().out)["grain_cleanup"]  # over each point's six neighbours, by default
    assert main([*phasemap, str(tmp_path / "own.png"), "--cleanup", "none"]) == 0
    drawn = json.loads(capsys.readouterr().out)
    assert drawn["written"] == [str(tmp_path / "own.png")] and drawn["grid"] == "hexagonal" and drawn["points"] == 40
    assert not drawn["grain_cleanup"]
    assert HEXAGONAL_NAMES in drawn["notes"]
    with Image.open(tmp_path / "m.png") as image:
        assert image.format == "PNG" and image.height > 100
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(map_model), "--input", str(folder), "--out", str(out)]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["patterns"] == 40 and HEXAGONAL_NAMES in caplog.text  # the warning
    assert said["predictions"] == {k: v for k, v in drawn["predictions"].items() if v}  # the same classes
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["path"].split("::")[-1] for r in rows[:6]] == [f"x{c}_y0.png" for c in (0, 2, 4, 6, 8)] + ["x1_y1.png"]


def test_a_hexagonal_scan_is_written_into_its_own_ang_with_the_models_phases(map_model, tmp_path, capsys):
    """A scan on a hexagonal grid had no .ang: no square map is made of it. Given its own (OIM's indexing of it, on
    that grid), ``phasemap --out map.ang`` writes that file again with the model's phases, points and orientations
    unchanged; an .ang of points elsewhere is refused before any work."""
    from ebsd_core.io.orientations import _orix_load

    hexagonal = KIKUCHIPY_DATA / "edax_binary" / "edax_binary.up2"  # rows of 3, 4 and 3 points
    places = open_patterns(hexagonal).hexagonal_places
    indexing = oim_indexing(tmp_path / "hough.ang", places, newline="\r\n")
    phasemap = ["phasemap", "--model", str(map_model), "--scan", str(hexagonal), "--orientations", str(indexing)]
    out = [*phasemap, "--out", str(tmp_path / "m.ang"), "--out", str(tmp_path / "m.png"), "--cleanup", "none"]
    assert main(out) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["written"] == [str(tmp_path / "m.ang"), str(tmp_path / "m.png")]
    assert said["orientations"] == "hough.ang" and said["grid"] == "hexagonal"
    hough, mapped = _orix_load(indexing), _orix_load(tmp_path / "m.ang")
    np.testing.assert_array_equal(mapped.rotations.data, hough.rotations.data)
    np.testing.assert_array_equal(mapped.x, hough.x)
    np.testing.assert_array_equal(mapped.prop["iq"], hough.prop["iq"])
    names = [mapped.phases[int(i)].name.lower() if i >= 0 else "unknown" for i in mapped.phase_id]
    counts = {label: names.count(name) for label, name in (("Fm-3m", "austenite"), ("Im-3m", "ferrite"))}
    assert counts == {k: v for k, v in said["predictions"].items() if k != "unknown"}
    assert names.count("unknown") == said["predictions"]["unknown"]

    elsewhere = oim_indexing(tmp_path / "other.ang", places[::-1])  # the rows read from the last
    other = ["phasemap", "--model", str(map_model), "--scan", str(hexagonal), "--orientations", str(elsewhere)]
    assert main([*other, "--out", str(tmp_path / "o.ang")]) == 2
    assert "other.ang: its points do not lie where the scan's do, in its order: point 0 is at row 2" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "o.ang").exists()

    cut = tmp_path / "cut.up2"  # a count its header's rows and columns do not give: its points' places unknown
    cut.write_bytes(hexagonal.read_bytes()[: 42 + 9 * 60 * 60 * 2])
    assert main(["phasemap", "--model", str(map_model), "--scan", str(cut), "--out", str(tmp_path / "c.png")]) == 2
    assert "cut.up2: the scan was recorded on a hexagonal grid and is read as one line" in capsys.readouterr().err
    laid_out = oim_indexing(tmp_path / "cut.ang", places[:9])
    cut_map = ["phasemap", "--model", str(map_model), "--scan", str(cut), "--orientations", str(laid_out)]
    assert main([*cut_map, "--out", str(tmp_path / "c.png"), "--out", str(tmp_path / "c.ang")]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["points"] == 9 and (tmp_path / "c.png").exists() and (tmp_path / "c.ang").exists()
    assert "its file does not say where its points lie on its hexagonal grid: cut.ang lays them out" in said["notes"]


def test_a_hexagonal_scans_phases_after_the_clean_up_are_written_as_predicts_csv(map_model, tmp_path, capsys):
    """Found on review: the Phase map page gave a hexagonal scan's CSV after the grain clean-up, and ``phasemap``
    refused ``.csv`` for it, pointing to ``predict``, which classifies each pattern on its own. It now writes the
    page's CSV; of a scan whose points' places are unknown, without the clean-up (no neighbours known)."""
    hexagonal = KIKUCHIPY_DATA / "edax_binary" / "edax_binary.up2"  # rows of 3, 4 and 3 points
    phasemap = ["phasemap", "--model", str(map_model), "--scan", str(hexagonal), "--out", str(tmp_path / "m.csv")]
    assert main([*phasemap, "--out", str(tmp_path / "m.png")]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["written"] == [str(tmp_path / "m.csv"), str(tmp_path / "m.png")] and said["grain_cleanup"]
    with open(tmp_path / "m.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["index"] for row in rows] == [str(i) for i in range(10)]
    assert list(rows[0]) == ["path", "index", "prediction", "confidence", "p_Fm-3m", "p_Im-3m"]  # predict's columns
    assert Counter(row["prediction"] for row in rows) == {k: v for k, v in said["predictions"].items() if v}
    assert (
        main(["predict", "--model", str(map_model), "--input", str(hexagonal), "--out", str(tmp_path / "p.csv")]) == 0
    )
    capsys.readouterr()
    with open(tmp_path / "p.csv") as f:
        assert list(next(csv.reader(f))) == list(rows[0])

    cut = tmp_path / "cut.up2"  # a count its header's rows and columns do not give: its points' places unknown
    cut.write_bytes(hexagonal.read_bytes()[: 42 + 9 * 60 * 60 * 2])
    cut_map = ["phasemap", "--model", str(map_model), "--scan", str(cut), "--out", str(tmp_path / "c.csv")]
    assert main(cut_map) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["points"] == 9 and not said["grain_cleanup"]
    assert any("is read as one line" in note for note in said["notes"])
    assert main([*cut_map, "--out", str(tmp_path / "c.png")]) == 2  # a drawing needs the places
    assert "cut.up2: the scan was recorded on a hexagonal grid and is read as one line" in capsys.readouterr().err


def test_two_maps_of_a_scan_differ_where_a_point_gets_another_space_group(phase_map):
    import dataclasses

    from ebsd_core.errors import InputError

    unsure = dataclasses.replace(phase_map, threshold=0.99)  # its unsure points unknown
    changed = unsure.changed_since(phase_map)
    assert changed.tolist() == ((phase_map.index >= 0) & (unsure.index < 0)).tolist() and changed.any()
    assert not phase_map.changed_since(phase_map).any()
    assert unsure.space_groups()[unsure.index < 0].tolist() == [0] * int((unsure.index < 0).sum())
    other = dataclasses.replace(phase_map, nav_shape=(phase_map.nav_shape[1], phase_map.nav_shape[0]))
    with pytest.raises(InputError, match="not of one scan"):
        phase_map.changed_since(other)
