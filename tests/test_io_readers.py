import json
import shutil
import struct
import zipfile

import h5py
import numpy as np
import pytest
from conftest import KIKUCHIPY_DATA, REAL_FE, REAL_NI, REAL_SI, shared_file
from PIL import Image

from ebsd_core.errors import InputError
from ebsd_core.io.readers import open_patterns


def _write_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def _class_folder(root, size=20):
    rng = np.random.default_rng(0)
    for name in ("Fm-3m", "229_ferrite"):
        for i in range(3):
            _write_png(root / name / f"p{i}.png", rng.integers(0, 255, (size, size), dtype=np.uint8))
    return root


def test_real_kikuchipy_scan_with_static_background():
    source = open_patterns(shared_file(REAL_NI))
    assert source.kind == "kikuchipy"
    assert len(source) == 9 and source.pattern_shape == (60, 60)
    assert source.nav_shape == (3, 3)
    assert source.static_background is not None
    assert source.batch(0, 4).shape == (4, 60, 60)


def test_real_si_and_fe():
    assert open_patterns(shared_file(REAL_SI)).pattern_shape == (480, 480)
    fe = open_patterns(shared_file(REAL_FE))
    assert fe.kind == "image" and fe.pattern_shape == (1200, 1600)


def test_class_folders_are_labelled(tmp_path):
    source = open_patterns(_class_folder(tmp_path / "data"))
    assert source.classes == [225, 229]
    by_name = dict(zip(source.names, source.labels))
    assert by_name["Fm-3m/p0.png"] == 0 and by_name["229_ferrite/p2.png"] == 1
    assert sorted(source.labels) == [0, 0, 0, 1, 1, 1]
    assert source.patterns.dtype == np.uint8  # as recorded: a quarter of the memory of float32


def test_rgb_16bit_and_mixed_sizes(tmp_path):
    root = tmp_path / "mixed"
    _write_png(root / "a.png", np.zeros((20, 20, 3), dtype=np.uint8))
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(root / "b.png")
    _write_png(root / "c.png", np.zeros((30, 30), dtype=np.uint8))
    source = open_patterns(root)
    assert source.labels is None and len(source) == 3
    assert source.pattern_shape == (20, 20)
    assert source.batch(1, 2).max() == 40000
    assert source.patterns.dtype == np.float32  # 8- and 16-bit images together
    assert any("resized" in w for w in source.warnings)


def test_zip_of_class_folders(tmp_path):
    folder = _class_folder(tmp_path / "top")
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.rglob("*.png"):
            zf.write(path, path.relative_to(tmp_path))
    source = open_patterns(archive)
    assert source.classes == [225, 229] and len(source) == 6


def test_unreadable_images_in_a_folder_are_left_out_and_named(tmp_path):
    root = _class_folder(tmp_path / "data")
    (root / "Fm-3m" / "p1.png").write_bytes(b"\x89PNG truncated")
    source = open_patterns(root)
    assert len(source) == 5 and "Fm-3m/p1.png" not in source.names
    assert dict(zip(source.names, source.labels))["229_ferrite/p0.png"] == 1
    assert any("could not be read" in w and "p1.png" in w for w in source.warnings)


def test_a_folder_of_only_unreadable_images_is_an_error(tmp_path):
    (tmp_path / "scan").mkdir()
    (tmp_path / "scan" / "a.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(InputError, match="its one image cannot be read: a.png: ") as info:
        open_patterns(tmp_path / "scan")
    assert "a.png" in str(info.value)


def test_images_beside_folders_that_are_not_classes_are_read(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "scan"
    for name in ("x0.png", "x1.png", "thumbnails/t.png"):
        _write_png(root / name, rng.integers(0, 255, (20, 20), dtype=np.uint8))
    source = open_patterns(root)
    assert source.labels is None and source.names == ["x0.png", "x1.png"]
    assert source.warnings == ["1 sub-folder not read, as it does not name a space group: thumbnails"]
    with pytest.raises(InputError, match="'thumbnails' does not name a space group"):
        open_patterns(root, labelled=True)  # as the dataset and evaluate commands read labelled data


def test_images_beside_class_folders_are_reported(tmp_path):
    root = _class_folder(tmp_path / "data")
    _write_png(root / "loose.png", np.zeros((20, 20), np.uint8))
    source = open_patterns(root)
    assert source.classes == [225, 229] and len(source) == 6
    assert source.warnings == ["1 image beside the class folders was not read (e.g. loose.png)"]


@pytest.mark.parametrize("member", ["../evil.png", "/abs/evil.png"])
def test_zip_path_traversal_refused(tmp_path, member):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(member, b"x")
    with pytest.raises(InputError, match="outside the archive"):
        open_patterns(archive)


def test_zip_bomb_refused(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Fm-3m/a.png", b"\0" * 50_000_000)
    with pytest.raises(InputError, match="zip bomb"):
        open_patterns(archive)


def _zip_of(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize(
    "setup,match",
    [
        (lambda p: p.mkdir(), "no images"),
        (
            lambda p: (
                p.mkdir(),
                (p / "notaclass").mkdir(),
                _write_png(p / "notaclass" / "a.png", np.zeros((9, 9), np.uint8)),
            ),
            "does not name a space group",
        ),
        (lambda p: p.with_suffix(".txt").write_text("hi"), "unsupported file type"),
        (lambda p: p.with_suffix(".ang").write_text("# header"), "orientations, not its patterns"),
        (lambda p: p.with_suffix(".cif").write_text("data_ni"), "holds a crystal structure, not patterns: simulate"),
        (lambda p: (p.mkdir(), (p / "model.json").write_text("{}")), "is a saved model, not patterns"),
        (
            lambda p: (p.mkdir(), (p / "scan.ang").write_text("# header"), (p / "notes.txt").write_text("hi")),
            r"holds no patterns, only a scan's orientations \(scan.ang\): give it with the scan's pattern file",
        ),
        (
            lambda p: (p.mkdir(), (p / "b.up2").write_bytes(b"x"), (p / "a.h5").write_bytes(b"x")),
            r"holds 2 scan files \(a.h5, b.up2\) and no images: give one scan file at a time",
        ),
        (
            lambda p: _zip_of(p.with_suffix(".zip"), {"scans/a.h5": b"x", "scans/._a.h5": b"x", "notes.txt": b"x"}),
            r"holds 1 scan file \(scans/a.h5\) and no images: a scan is read from its own file, never from a zip",
        ),
        (
            lambda p: _zip_of(p.with_suffix(".zip"), {"Fm-3m.zip": b"x", "._Fm-3m.zip": b"x", "Im-3m.zip": b"x"}),
            r"holds 2 zips \(Fm-3m.zip, Im-3m.zip\) and no images: a zip inside a zip is not read: unpack it",
        ),
        (lambda p: p.with_suffix(".png").write_bytes(b"\x89PNG broken"), "cannot read this image"),
        (lambda p: p.with_suffix(".h5").write_bytes(b"\x89HDF\r\n\x1a\n junk"), "kikuchipy cannot read"),
    ],
)
def test_bad_inputs_are_named(tmp_path, setup, match):
    base = tmp_path / "input"
    setup(base)
    target = next(p for p in tmp_path.iterdir())
    with pytest.raises(InputError, match=match) as info:
        open_patterns(target)
    assert target.name in str(info.value)


def test_scans_and_zips_beside_images_are_named_as_not_read(tmp_path):
    """Found on review: a zip inside a folder or zip of images was passed over without a word (scan files were
    named)."""
    folder = tmp_path / "patterns"
    _write_png(folder / "p1.png", np.zeros((20, 20), np.uint8))
    (folder / "more.zip").write_bytes(b"x")
    assert open_patterns(folder).warnings == [
        "1 zip here was not read, only the images: more.zip; give a zip by itself"
    ]
    (folder / "scan.up2").write_bytes(b"x")
    _zip_of(tmp_path / "patterns.zip", {name: (folder / name).read_bytes() for name in ("p1.png", "more.zip")})
    assert open_patterns(folder).warnings == [
        "1 scan file and 1 zip here were not read, only the images: scan.up2, more.zip; give a scan file (or zip) "
        "by itself"
    ]
    assert open_patterns(tmp_path / "patterns.zip").warnings == [
        "1 zip here was not read, only the images: more.zip; give a zip by itself"
    ]


def test_a_scan_cut_short_or_not_what_its_name_says_is_named_so(tmp_path):
    """Where no kikuchipy reader recognised a file, the message asked the user to report an error in RosettaSciIO;
    a copy of a scan cut short read as HDF5's "truncated file: eof = 20024, sblock->base_addr = 0, ..." or as
    "mmap length is greater than file size"; a file of another layout or format, as IndexError: index 0 is out of
    bounds."""
    import h5py
    import kikuchipy as kp

    kp.signals.EBSD(np.zeros((3, 4, 20, 20), dtype=np.uint8)).save(str(tmp_path / "whole.h5"))
    whole = (tmp_path / "whole.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "word.h5").write_bytes(b"a Word document, renamed" * 40)
    with h5py.File(tmp_path / "keras.h5", "w") as file:
        file.create_dataset("model_weights/dense/kernel", data=np.zeros((3, 3)))
    (tmp_path / "word.ebsp").write_bytes(b"a Word document, renamed" * 40)
    expected = {
        "cut.h5": r"cut.h5: it is cut short: 20 kB of its 40 kB are here, of a copy or upload that did not finish$",
        "word.h5": r"word.h5: it is not an HDF5 file: another format under this name, or damaged$",
        "keras.h5": r"keras.h5: kikuchipy cannot read this file \(an HDF5 file, but not laid out as the EBSD files it "
        r"reads are: h5ebsd of EDAX, Bruker or kikuchipy, Oxford H5OINA, EMsoft, or this tool's datasets\)",
        "word.ebsp": r"word.ebsp: kikuchipy cannot read this file \(its header cannot be read: damaged, cut short, or "
        r"another format under this name\)",
    }
    for name, match in expected.items():
        with pytest.raises(InputError, match=match):
            open_patterns(tmp_path / name)


def test_missing_path():
    with pytest.raises(InputError, match="no such file"):
        open_patterns("/nonexistent/scan.h5")


def test_h5ebsd_declaring_billions_of_patterns_is_refused(tmp_path):
    """Found by fuzzing: kikuchipy would zero-pad the declared (268435458, 3) scan until memory runs out."""
    import h5py
    import kikuchipy as kp

    path = tmp_path / "scan.h5"
    kp.signals.EBSD(np.zeros((2, 3, 16, 16), np.uint8)).save(str(path))
    with h5py.File(path, "a") as f:
        header = f["Scan 1/EBSD/Header"]
        del header["n_rows"]
        header["n_rows"] = 268435458
    with pytest.raises(InputError, match="declares more patterns than the file holds") as info:
        open_patterns(path)
    assert "scan.h5" in str(info.value)


def test_a_zip_names_its_unreadable_images_as_the_zip_does(tmp_path):
    archive = tmp_path / "scan.zip"
    good = tmp_path / "good.png"
    _write_png(good, np.zeros((20, 20), np.uint8))
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(good, "good.png")
        zf.writestr("bad.png", b"\x89PNG truncated")
    source = open_patterns(archive)
    assert len(source) == 1
    assert any("bad.png: cannot read this image" in w for w in source.warnings)
    assert not any("ebsd-zip-" in w for w in source.warnings)  # not the temporary folder it was unpacked to


def test_a_file_of_several_scans_says_which_was_read_and_how_to_read_another(tmp_path, monkeypatch):
    """Found on review: kikuchipy reads the first scan of an h5ebsd file; the others went unmentioned."""
    import kikuchipy as kp

    rng = np.random.default_rng(0)
    path = tmp_path / "two_scans.h5"
    kp.signals.EBSD(rng.integers(0, 255, (2, 3, 16, 16), dtype=np.uint8)).save(str(path))
    kp.signals.EBSD(rng.integers(0, 255, (1, 2, 16, 16), dtype=np.uint8)).save(str(path), add_scan=True, scan_number=2)
    source = open_patterns(path)
    assert len(source) == 6
    assert len(source.warnings) == 1
    assert source.warnings[0].startswith("holds 2 scans (Scan 1, Scan 2); the first, Scan 1, was read. To read")
    # the advice, as written, saves the second scan on its own
    advice = source.warnings[0].partition("with kikuchipy: ")[2]
    assert advice == "kikuchipy.load('two_scans.h5', scan_group_names='Scan 2').save('scan_2.h5')"
    monkeypatch.chdir(tmp_path)
    eval(advice, {"kikuchipy": kp})
    assert len(open_patterns(tmp_path / "scan_2.h5")) == 2  # the second scan's 1 x 2 patterns
    single = tmp_path / "one_scan.h5"
    kp.signals.EBSD(rng.integers(0, 255, (2, 2, 16, 16), dtype=np.uint8)).save(str(single))
    assert open_patterns(single).warnings == []
    # EDAX writes its file's keys with a leading space (" Manufacturer"): its second scan went unmentioned
    import h5py

    edax = tmp_path / "edax_two_scans.h5"
    shutil.copyfile(KIKUCHIPY_DATA / "edax_h5ebsd/patterns.h5", edax)
    with h5py.File(edax, "r+") as file:
        file.copy("Scan 1", "Scan 2")
    assert open_patterns(edax).warnings[0].startswith("holds 2 scans (Scan 1, Scan 2); the first, Scan 1, was read")


def test_vendor_files_kikuchipy_ships_are_read():
    """Found by reading every vendor example kikuchipy ships: an EMsoft file was said to hold 4 scans (its top
    groups), and a hexagonal EDAX grid was read as a line without a word."""
    expected = {
        "edax_binary/edax_binary.up1": (9, (9,)),  # version 1 records no grid: the map asks for one
        "edax_h5ebsd/patterns.h5": (9, (3, 3)),
        "oxford_binary/patterns.ebsp": (9, (3, 3)),
        "emsoft_ebsd/EBSD_TEST_Ni.h5": (1, (1,)),
        "emsoft_ebsd/simulated_ebsd.h5": (10, (10,)),
    }
    for relative, (count, nav_shape) in expected.items():
        source = open_patterns(KIKUCHIPY_DATA / (relative))
        assert (len(source), source.nav_shape, source.warnings) == (count, nav_shape, []), relative
        assert not source.hexagonal_grid
    assert open_patterns(KIKUCHIPY_DATA / ("emsoft_ebsd/EBSD_TEST_Ni.h5")).pattern_shape == (480, 640)


def test_bruker_files_made_by_kikuchipys_test_writers_are_read(tmp_path):
    dummy = pytest.importorskip("kikuchipy.data._dummy_files.bruker_h5ebsd")
    dummy.create_dummy_bruker_h5ebsd_file(tmp_path / "full.h5")
    dummy.create_dummy_bruker_h5ebsd_roi_file(tmp_path / "roi.h5")
    dummy.create_dummy_bruker_h5ebsd_nonrectangular_roi_file(tmp_path / "outline.h5")
    assert open_patterns(tmp_path / "full.h5").nav_shape == (3, 3)
    assert open_patterns(tmp_path / "roi.h5").nav_shape == (3, 2)  # a rectangular region of the scan
    with pytest.raises(InputError, match="outline.h5: kikuchipy cannot read .*Only a rectangular region"):
        open_patterns(tmp_path / "outline.h5")
    dummy.create_dummy_bruker_h5ebsd_file(tmp_path / "hexagonal.h5")
    _grid_type(tmp_path / "hexagonal.h5", "Scan 0", b"hexagonal")  # Bruker calls its square grid "isometric"
    hexagonal = open_patterns(tmp_path / "hexagonal.h5")  # refused by kikuchipy: read as a line, as its .up2
    assert hexagonal.hexagonal_grid and len(hexagonal) == 9 and hexagonal.nav_shape == (9,)
    np.testing.assert_array_equal(hexagonal.batch(0, 9), open_patterns(tmp_path / "full.h5").batch(0, 9))
    assert hexagonal.hexagonal_places is None  # its sample positions are all one point
    placed = shutil.copy(tmp_path / "hexagonal.h5", tmp_path / "placed.h5")  # the first is open, read lazily
    with h5py.File(placed, "r+") as file:  # rows of 3, 2, 3 and 1 points, µm on the stage
        file["Scan 0/EBSD/Data/X SAMPLE"][...] = [0, 2, 4, 1, 3, 0, 2, 4, 1]
        file["Scan 0/EBSD/Data/Y SAMPLE"][...] = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3]) * 2 * np.sqrt(3) / 2
    placed = open_patterns(placed)
    assert placed.hexagonal_places.tolist() == [[0, 0], [0, 2], [0, 4], [1, 1], [1, 3], [2, 0], [2, 2], [2, 4], [3, 1]]


def _grid_type(path, scan: str, grid: bytes) -> None:
    """Write ``grid`` as the grid type of an h5ebsd file's ``scan``."""
    with h5py.File(path, "r+") as file:
        del file[f"{scan}/EBSD/Header/Grid Type"]
        file[f"{scan}/EBSD/Header/Grid Type"] = [grid]


def test_a_hexagonal_grid_is_named(recwarn):
    from ebsd_core.io.readers import HEXAGONAL_GRID_PLACED

    source = open_patterns(KIKUCHIPY_DATA / ("edax_binary/edax_binary.up2"))
    assert len(source) == 10 and source.hexagonal_grid and source.warnings == [HEXAGONAL_GRID_PLACED]
    assert not [w for w in recwarn if "hexagonal" in str(w.message)]  # said once, in the note
    # its header's 3 columns and 3 rows, and 10 patterns: rows of 3, 4 and 3, the longer half a step out
    assert source.hexagonal_places.tolist() == [[0, 1], [0, 3], [0, 5], *[[1, c] for c in range(0, 8, 2)]] + [
        [2, 1],
        [2, 3],
        [2, 5],
    ]
    assert source.step_um == pytest.approx(3.14159265)  # its header's step along a row (kikuchipy's line: the rows')


@pytest.mark.parametrize(
    ("patterns", "rows"),
    [(8, [[0, 2, 4], [1, 3], [0, 2, 4]]), (10, [[1, 3, 5], [0, 2, 4, 6], [1, 3, 5]]), (9, None), (7, None)],
)
def test_an_edax_binary_file_of_a_hexagonal_grid_is_laid_out_where_its_count_fits_its_header(
    tmp_path, capsys, patterns, rows
):
    """OIM's rows alternate between its header's columns and one fewer (NCOLS_ODD, NCOLS_EVEN of its .ang);
    kikuchipy's example has one more. Rows all of the header's columns do not say which way the second is offset,
    and another count is a file cut short: neither is laid out, and the reading note says no map is drawn."""
    from ebsd_core.io.readers import HEXAGONAL_GRID, HEXAGONAL_GRID_PLACED

    whole = (KIKUCHIPY_DATA / "edax_binary" / "edax_binary.up2").read_bytes()
    path = tmp_path / "hexagonal.up2"
    path.write_bytes(whole[: 42 + patterns * 60 * 60 * 2])
    source = open_patterns(path)
    assert len(source) == patterns and source.hexagonal_grid
    if rows is None:
        assert source.hexagonal_places is None and source.warnings[0] == HEXAGONAL_GRID
    else:
        assert source.warnings == [HEXAGONAL_GRID_PLACED] and source.hexagonal_note == HEXAGONAL_GRID_PLACED
        assert source.hexagonal_places.tolist() == [[row, c] for row, cs in enumerate(rows) for c in cs]
    from ebsd_core.cli import main

    assert main(["info", str(path)]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["hexagonal_grid"] and said.get("hexagonal_rows") == (None if rows is None else [len(r) for r in rows])
    assert said["step_um"] == pytest.approx(3.14159265)  # its header's, which its PNG's scale bar takes


@pytest.mark.parametrize("lazy", [False, True])
def test_an_edax_h5_of_a_hexagonal_grid_is_read_as_a_line_of_patterns(tmp_path, recwarn, lazy):
    """Found on review: kikuchipy refuses an OIM .h5 of a hexagonal grid ("Only square grids are supported"), and so
    did this tool, although it classifies the patterns of an EDAX .up2 of one (read as a line). Its patterns are now
    read as a line in the file's order too, said so, without the orientations no square map can carry."""
    from ebsd_core.io import readers
    from ebsd_core.io.readers import HEXAGONAL_GRID

    square = KIKUCHIPY_DATA / "edax_h5ebsd" / "patterns.h5"
    path = tmp_path / "hexagonal.h5"
    shutil.copy(square, path)
    _grid_type(path, "Scan 1", b"HexGrid")
    source = readers._read_kikuchipy(path, lazy)
    assert source.hexagonal_grid and source.nav_shape == (9,) and source.warnings == [HEXAGONAL_GRID]
    assert source.step_um == 1.5 and source.quaternions is None
    assert source.hexagonal_places is None  # its stage positions are of a square grid: not laid out
    np.testing.assert_array_equal(source.batch(0, 9), open_patterns(square).batch(0, 9))
    assert not [w for w in recwarn if "hexagonal" in str(w.message)]  # said once, in the note
    other = tmp_path / "other.h5"
    shutil.copy(square, other)
    _grid_type(other, "Scan 1", b"TriangleGrid")  # no grid read as a line but a hexagonal one
    with pytest.raises(InputError, match="kikuchipy reads scans of a square grid only, and this one's grid is 'Tri"):
        open_patterns(other)


def test_an_edax_h5_of_a_hexagonal_grid_is_laid_out_by_its_stage_positions(tmp_path):
    """OIM's X and Y Position of each point place it on its grid: rows of 3 and 2 points, sqrt(3)/2 steps apart, the
    second half a step in. A point OIM could not place (-1111111) leaves the scan without a layout."""
    from ebsd_core.io.readers import HEXAGONAL_GRID, HEXAGONAL_GRID_PLACED

    path = tmp_path / "hexagonal.h5"
    shutil.copy(KIKUCHIPY_DATA / "edax_h5ebsd" / "patterns.h5", path)
    _grid_type(path, "Scan 1", b"HexGrid")
    x = [0, 1.5, 3, 0.75, 2.25, 0, 1.5, 3, 0.75]
    y = [0, 0, 0, 1.299, 1.299, 2.598, 2.598, 2.598, 3.897]
    with h5py.File(path, "r+") as file:
        file["Scan 1/EBSD/Data/X Position"][...] = x
        file["Scan 1/EBSD/Data/Y Position"][...] = y
    unplaced = shutil.copy(path, tmp_path / "unplaced.h5")
    with h5py.File(unplaced, "r+") as file:
        file["Scan 1/EBSD/Data/X Position"][-1] = -1111111.0
    source = open_patterns(path)
    assert source.warnings == [HEXAGONAL_GRID_PLACED]
    assert source.hexagonal_places.tolist() == [
        [0, 0], [0, 2], [0, 4], [1, 1], [1, 3], [2, 0], [2, 2], [2, 4], [3, 1]
    ]  # fmt: skip
    failed = open_patterns(unplaced)
    assert failed.hexagonal_places is None and failed.warnings == [HEXAGONAL_GRID]


def test_an_edax_binary_file_cut_short_says_so(tmp_path):
    """Found on review: an .up1 (or a hexagonal .up2) cut part-way through a pattern read as a smaller scan without
    a word, as kikuchipy counts their patterns from the file's size; cut within its header, the user was shown
    Python's own words ("not enough values to unpack", "float division by zero")."""
    for name in ("edax_binary.up1", "edax_binary.up2"):
        whole = (KIKUCHIPY_DATA / "edax_binary" / name).read_bytes()
        cut = tmp_path / name
        cut.write_bytes(whole[: len(whole) // 2])
        source = open_patterns(cut)
        assert len(source) == 4
        assert source.warnings[-1] == (
            "the file ends part-way through pattern 5 (a copy or upload that did not finish?): the 4 whole "
            "patterns before it were read"
        )
        for size in (8, 20, 40):
            cut.write_bytes(whole[:size])
            with pytest.raises(InputError, match=rf"{name}: kikuchipy cannot read this file \(its header cannot be"):
                open_patterns(cut)
    assert open_patterns(KIKUCHIPY_DATA / "edax_binary" / "edax_binary.up1").warnings == []


def test_binary_headers_of_nonsense_are_put_in_words(tmp_path):
    """Found by fuzzing (bench/fuzz.py counts refusals in Python's own words): Oxford .ebsp files whose patterns
    are compressed, whose offsets point before the file or whose sizes do not fit; an .up1 whose patterns start
    past its end."""
    ebsp = bytearray((KIKUCHIPY_DATA / "oxford_binary" / "patterns.ebsp").read_bytes())
    first_pattern = 80  # the first pattern's header: is_compressed, rows, columns, bytes (int32 each)
    cases = {
        "compressed.ebsp": (first_pattern, 1, r"its patterns are compressed, which kikuchipy cannot read: export"),
        "version.ebsp": (0, 7, r"its header cannot be read: damaged, cut short, or another format"),  # EINVAL
        "offset.ebsp": (8, 1, r"its header cannot be read"),  # cannot reshape
    }
    for name, (at, value, match) in cases.items():
        damaged = bytearray(ebsp)
        damaged[at : at + 4] = struct.pack("<i", value)
        (tmp_path / name).write_bytes(damaged)
        with pytest.raises(InputError, match=rf"{name}: kikuchipy cannot read this file \({match}"):
            open_patterns(tmp_path / name)
    up1 = bytearray((KIKUCHIPY_DATA / "edax_binary" / "edax_binary.up1").read_bytes())
    up1[12:16] = struct.pack("<I", len(up1) + 100)  # where its patterns start
    (tmp_path / "past.up1").write_bytes(up1)
    with pytest.raises(InputError, match=r"past.up1: kikuchipy cannot read this file \(it is shorter than its header"):
        open_patterns(tmp_path / "past.up1")
    up1[:16] = struct.pack("<4I", 2, 60, 60, 16)  # version 2, which kikuchipy refuses
    (tmp_path / "version2.up1").write_bytes(up1)
    with pytest.raises(InputError, match=r"\(it is an EDAX file of version 2, which kikuchipy does not read \(it"):
        open_patterns(tmp_path / "version2.up1")


def test_a_master_pattern_is_named_as_such():
    with pytest.raises(InputError, match="holds an EBSD master pattern .* not the patterns of a scan"):
        open_patterns(KIKUCHIPY_DATA / ("emsoft_ebsd_master_pattern/master_patterns.h5"))


def test_a_zip_member_without_a_name_is_passed_over(tmp_path):
    """Found by fuzzing: zipfile cuts a name at its first NUL, and ZipInfo.is_dir() of an empty name raised
    IndexError."""
    import io

    path = tmp_path / "classes.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("Fm-3m/0.png", "Fm-3m/1.png", "Im-3m/0.png", "Im-3m/1.png"):
            image = io.BytesIO()
            Image.fromarray(np.random.default_rng(len(name)).integers(0, 255, (16, 16), np.uint8)).save(image, "PNG")
            archive.writestr(name, image.getvalue())
    data = path.read_bytes()
    directory = data.rindex(b"Fm-3m/1.png")  # its entry in the central directory, not its local header
    path.write_bytes(data[:directory] + b"\0" + data[directory + 1 :])
    source = open_patterns(path)
    assert len(source) == 3 and source.classes == [225, 229]


def test_scans_read_at_once_in_two_threads_keep_their_own_grid():
    """kikuchipy says a grid is hexagonal with a warning, caught around its read; warnings.catch_warnings swaps the
    process's handler, so another thread's read caught it instead: a hexagonal scan was read as square, a square
    one as hexagonal (2-4 of 80 reads with two threads)."""
    import threading

    hexagonal, square = KIKUCHIPY_DATA / "edax_binary/edax_binary.up2", KIKUCHIPY_DATA / "kikuchipy_h5ebsd/patterns.h5"
    assert open_patterns(hexagonal).hexagonal_grid and not open_patterns(square).hexagonal_grid
    read = []

    def read_many(path) -> None:
        read.extend((path, open_patterns(path).hexagonal_grid) for _ in range(30))

    threads = [threading.Thread(target=read_many, args=(path,)) for path in (hexagonal, square)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read) == 60 and all(grid == (path == hexagonal) for path, grid in read)


def test_a_folder_of_sample_folders_given_as_one_source_is_told_to_give_one_at_a_time(tmp_path, map_scan_file):
    """Found on review: ``explain --input real/`` (fe/p.tif, ni/scan.h5) said "class folder 'fe' does not name a space
    group", as if labels were asked for; where they are (a dataset of class folders), that is still what is said."""
    (tmp_path / "fe").mkdir()
    (tmp_path / "ni").mkdir()
    _write_png(tmp_path / "fe" / "p.png", np.full((20, 20), 9, np.uint8))
    shutil.copy(map_scan_file, tmp_path / "ni" / "scan.h5")
    with pytest.raises(InputError, match=r"2 scans or folders of patterns in its sub-folders \(fe, ni/scan.h5\): give"):
        open_patterns(tmp_path)
    with pytest.raises(InputError, match="class folder 'fe' does not name a space group"):
        open_patterns(tmp_path, labelled=True)


def test_a_pattern_of_a_folder_is_found_by_its_images_name(tmp_path):
    """As the Explain page picks it, and `explain --index p3.png`: with its folder, or without where it is the only one
    of that name."""
    for folder, names in (("Fm-3m", ["p0.png", "p1.png"]), ("Im-3m", ["p0.png", "p2.png"])):
        (tmp_path / "set" / folder).mkdir(parents=True)
        for name in names:
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "set" / folder / name)
    source = open_patterns(tmp_path / "set")
    assert [source.index_of_file(name) for name in ("Fm-3m/p0.png", "Im-3m/p0.png", "p1.png", "p2.png")] == [0, 2, 1, 3]
    with pytest.raises(InputError, match=r"set: 2 images are named 'p0.png' \(Fm-3m/p0.png, Im-3m/p0.png\): give its"):
        source.index_of_file("p0.png")
