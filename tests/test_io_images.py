"""Folders and zips of images: decoded at once when they fit in memory, image by image when they do not."""

import re
import zipfile

import numpy as np
import pytest
from conftest import damage_pixels
from PIL import Image

from ebsd_core.errors import InputError, PhaseError
from ebsd_core.io import images
from ebsd_core.io.readers import open_patterns


def _class_folder(root, count=4, size=20):
    rng = np.random.default_rng(0)
    for name in ("Fm-3m", "229_ferrite"):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / name / f"p{i}.png")
    return root


def _zip(folder, archive, top="", images="*.png"):
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob(images)):
            zf.write(path, top + str(path.relative_to(folder)))
    return archive


@pytest.fixture
def streamed(monkeypatch):
    """Every folder and zip is larger than the memory allowed for decoding it at once."""
    monkeypatch.setattr(images, "IN_MEMORY_BYTES", 0)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header survives, the pixels do not


def test_a_large_folder_is_decoded_batch_by_batch_with_the_same_patterns(tmp_path, monkeypatch):
    root = _class_folder(tmp_path / "data")
    eager = open_patterns(root)
    assert isinstance(eager.patterns, np.ndarray)
    monkeypatch.setattr(images, "IN_MEMORY_BYTES", 0)
    lazy = open_patterns(root)
    assert isinstance(lazy.patterns, images.ImageStack)
    assert (lazy.names, lazy.classes) == (eager.names, eager.classes)
    np.testing.assert_array_equal(lazy.labels, eager.labels)
    assert lazy.patterns.dtype == np.uint8 and len(lazy) == 8
    np.testing.assert_array_equal(lazy.batch(0, 8), eager.patterns)
    np.testing.assert_array_equal(lazy.batch(3, 5), eager.patterns[3:5])
    np.testing.assert_array_equal(lazy.patterns[[6, 1]], eager.patterns[[6, 1]])
    np.testing.assert_array_equal(lazy.patterns[-1], eager.patterns[-1])
    np.testing.assert_array_equal(np.asarray(lazy.patterns), eager.patterns)


def test_lazy_false_decodes_even_a_large_folder(tmp_path, streamed):
    source = open_patterns(_class_folder(tmp_path / "data"), lazy=False)
    assert isinstance(source.patterns, np.ndarray) and source.patterns.shape == (8, 20, 20)


def test_an_image_damaged_past_its_header_is_left_out_when_decoded_at_once(tmp_path):
    root = _class_folder(tmp_path / "data")
    _truncate(root / "Fm-3m" / "p2.png")
    source = open_patterns(root)
    assert len(source) == 7 and "Fm-3m/p2.png" not in source.names
    assert any("could not be read" in w and "p2.png" in w for w in source.warnings)


@pytest.mark.parametrize("name", ["p2.png", "p2.tif", "p2.bmp", "p2.jpg"])
def test_an_image_cut_short_is_left_out_before_a_streamed_folder_is_read(tmp_path, streamed, name):
    """Found on review: a folder too large to decode at once read its images' headers alone, so the last image of an
    export that did not finish (its header whole, its pixels cut short) stopped a phase map of thousands of patterns at
    its very end. PNG, TIFF and BMP headers say how far their data runs: such an image is left out when the folder is
    opened, as when it is decoded at once."""
    root = _class_folder(tmp_path / "data")
    if name != "p2.png":
        Image.open(root / "Fm-3m" / "p2.png").save(root / "Fm-3m" / name)
        (root / "Fm-3m" / "p2.png").unlink()
    data = (root / "Fm-3m" / name).read_bytes()
    (root / "Fm-3m" / name).write_bytes(data[:-30])  # its header whole, the end of its data gone
    for source in (open_patterns(root), open_patterns(_zip(root, tmp_path / "export.zip", images="*.*"))):
        assert len(source) == 7 and f"Fm-3m/{name}" not in source.names
        assert source.batch(0, 7).shape == (7, 20, 20)
        assert len(source.warnings) == 1 and source.warnings[0].startswith(
            f"1 image could not be read and was left out ({name}); the first, Fm-3m/{name}: cannot read this image (it "
            "is cut short: a copy or upload that did not finish, or damaged)"
        )


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("p2.png", lambda data: data + b"bytes some writers leave after the last chunk"),
        ("p2.png", lambda data: data[:-12]),  # its last chunk, IEND, alone missing: PIL decodes it whole
        ("p2.jpg", lambda data: data + b"metadata a camera appends"),
    ],
)
def test_an_image_whose_whole_data_is_there_is_not_taken_for_cut_short(tmp_path, streamed, name, change):
    root = _class_folder(tmp_path / "data")
    if name != "p2.png":
        Image.open(root / "Fm-3m" / "p2.png").save(root / "Fm-3m" / name)
        (root / "Fm-3m" / "p2.png").unlink()
    (root / "Fm-3m" / name).write_bytes(change((root / "Fm-3m" / name).read_bytes()))
    source = open_patterns(root)
    assert len(source) == 8 and not source.warnings
    assert source.batch(0, 8).shape == (8, 20, 20)


def test_an_image_that_may_be_cut_short_is_decoded_once_when_the_folder_is_decoded_at_once(tmp_path, monkeypatch):
    """Found on review: such an image (a JPEG with metadata a camera appends after its end marker, so every image of
    such a camera) was decoded when its header was read, to be found at once, then again with the folder: twice the
    time (2,000 of 120x120 px: 0.58 s, now 0.37 s). Read batch by batch, it is still decoded when the folder is opened
    (above)."""
    from PIL import ImageFile

    folder = tmp_path / "camera"
    folder.mkdir()
    for index in range(6):
        Image.fromarray(np.full((20, 20), index, np.uint8)).save(folder / f"p{index}.jpg")
        (folder / f"p{index}.jpg").write_bytes((folder / f"p{index}.jpg").read_bytes() + b"metadata a camera appends")
    decoded = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda img: decoded.append(bool(img.tile)) or load(img))
    source = open_patterns(folder)
    assert isinstance(source.patterns, np.ndarray) and len(source) == 6 and not source.warnings
    assert sum(decoded) == 6  # each once
    _truncate(folder / "p3.jpg")
    assert "p3.jpg" not in open_patterns(folder).names  # found when decoded with the others, as before


def test_an_image_damaged_past_its_header_is_named_when_streamed(tmp_path, streamed):
    """Damage that leaves a file's length whole is found, and named, when it is decoded."""
    root = _class_folder(tmp_path / "data")
    damage_pixels(root / "Fm-3m" / "p2.png")
    source = open_patterns(root)
    assert len(source) == 8  # only its header was read
    assert source.batch(0, 2).shape == (2, 20, 20)
    # in words a user can act on, not PIL's "OSError: broken data stream when reading image file"
    damaged = r"cannot read this image \(its image data is damaged: the header reads, the pixels do not\)"
    with pytest.raises(InputError, match=damaged) as info:
        source.batch(0, 8)
    assert str(root / "Fm-3m" / "p2.png") in str(info.value)
    (root / "Fm-3m" / "p2.png").write_text("a text file under an image's name")  # not PIL's "cannot identify"
    with pytest.raises(InputError, match=r"\(not an image in a format that is read: another format under this name"):
        open_patterns(root / "Fm-3m" / "p2.png")


def test_an_image_that_cannot_be_decoded_when_a_run_reaches_it_is_blank_in_that_run(tmp_path, streamed):
    """Found on review: one image damaged past its header (its length whole) in a folder too large to decode when
    opened stopped a run of thousands where it reached it. A run now reads it as a blank pattern and keeps why; a
    block none of whose images can be read (the folder gone) still stops it, naming the first."""
    root = _class_folder(tmp_path / "data")
    damage_pixels(root / "Fm-3m" / "p2.png")
    for source in (open_patterns(root), open_patterns(_zip(root, tmp_path / "scan.zip"))):
        index = source.names.index("Fm-3m/p2.png")
        block = source.run_batch(0, 8)
        assert block.shape == (8, 20, 20) and not block[index].any() and block[index - 1].any()
        assert source.unread == {
            index: "Fm-3m/p2.png: cannot read this image (its image data is damaged: the header reads, the pixels do "
            "not)"
        }
        readable = open_patterns(root, lazy=False)  # decoded when opened: the damaged image left out
        np.testing.assert_array_equal(np.delete(block, index, axis=0), readable.batch(0, 7))
    source = open_patterns(root)
    assert source.names[0] == "229_ferrite/p0.png"
    for image in (root / "229_ferrite").iterdir():
        image.unlink()
    with pytest.raises(InputError, match="cannot read this image") as info:
        source.run_batch(0, 4)
    assert str(info.value).startswith(str(root / "229_ferrite" / "p0.png"))


def test_a_zip_is_read_in_place_below_its_top_folder(tmp_path, streamed):
    archive = _zip(_class_folder(tmp_path / "data"), tmp_path / "scan.zip", top="export/")
    source = open_patterns(archive)
    assert source.kind == "zip" and source.classes == [225, 229]
    index = source.names.index("Fm-3m/p0.png")
    with Image.open(tmp_path / "data" / "Fm-3m" / "p0.png") as image:
        np.testing.assert_array_equal(source.batch(index, index + 1)[0], np.asarray(image))


def test_a_zip_member_damaged_past_its_header_is_named_with_the_zip(tmp_path, streamed):
    """Found when decoded (its length whole)."""
    root = _class_folder(tmp_path / "data")
    damage_pixels(root / "Fm-3m" / "p1.png")
    archive = _zip(root, tmp_path / "scan.zip")
    source = open_patterns(archive)
    with pytest.raises(InputError, match="cannot read this image") as info:
        source.batch(0, 8)
    message = str(info.value)
    assert message.startswith(f"{archive}: Fm-3m/p1.png: ") and message.endswith("(inside the zip)")


def test_a_zip_member_failing_its_checksum_is_left_out(tmp_path, streamed):
    archive = _zip(_class_folder(tmp_path / "data"), tmp_path / "scan.zip")
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        member = zf.getinfo("Fm-3m/p1.png")
    start = member.header_offset + 30 + len(member.filename) + 40  # inside the stored PNG's pixel data
    data[start : start + 8] = b"\xff" * 8
    archive.write_bytes(bytes(data))
    source = open_patterns(archive)
    assert len(source) == 7 and "Fm-3m/p1.png" not in source.names
    assert any("Fm-3m/p1.png: cannot be read from the zip (BadZipFile: Bad CRC-32" in w for w in source.warnings)


def test_a_zip_header_beyond_the_first_bytes_is_read_from_the_whole_member(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "HEADER_BYTES", 16)  # a PNG's size is at bytes 16-24
    archive = _zip(_class_folder(tmp_path / "data"), tmp_path / "scan.zip")
    source = open_patterns(archive)
    assert len(source) == 8 and not source.warnings


@pytest.mark.parametrize(
    "name, space_group",
    [
        ("Fm-3m", 225),
        ("225_ni", 225),
        ("Fm3m ni", 225),
        ("Ni3Al", 221),
        ("NiAl", 221),
        ("ferrite", 229),
        ("225_w", 225),
    ],
)
def test_class_folders_name_a_space_group_or_a_catalogue_material(name, space_group):
    assert images.class_from_folder_name(name) == space_group


@pytest.mark.parametrize(
    "name, hint",
    [("Fe", "ferrite is Im-3m (229), austenite Fm-3m (225)"), ("BCC_steel", "a BCC metal is Im-3m (229)")],
)
def test_a_lattice_or_element_name_is_told_which_space_groups_it_could_be(name, hint):
    """Labs name class folders "Fe", "FCC" or "BCC", which do not say which of a lattice's space groups is meant."""
    with pytest.raises(PhaseError, match=re.escape(hint)):
        images.class_from_folder_name(name)


@pytest.mark.parametrize(
    "name, why",
    [
        ("P63mmc", "class folder 'P63mmc' names space group 194 (P63/mmc), not one of the cubic m-3m space groups"),
        ("123_tial", "class folder '123_tial' names space group 123 (P4/mmm), not one of the cubic"),
        ("hcp", "an HCP metal, Ti, Mg or Zr, is P6_3/mmc (194), not one of the cubic m-3m space groups"),
        ("Ti", "alpha-Ti is P6_3/mmc (194), not one of the cubic m-3m space groups 221-230 this tool tells apart; "),
    ],
)
def test_a_class_folder_of_a_structure_no_model_here_learns_is_told_so(name, why):
    """A folder named after Ti's group was told only that it "does not name a space group"."""
    with pytest.raises(PhaseError, match=re.escape(why)):
        images.class_from_folder_name(name)


def test_every_class_folder_that_names_no_space_group_is_named_at_once(tmp_path):
    """One run names them all, instead of one per run."""
    root = _class_folder(tmp_path / "data")
    (root / "Fm-3m").rename(root / "FCC")
    (root / "229_ferrite").rename(root / "BCC")
    with pytest.raises(InputError, match=r"BCC: class folder 'BCC' does not name .*\. Nor does 'FCC'$"):
        open_patterns(root, labelled=True)


def test_a_class_folder_of_a_zip_that_names_no_space_group_is_named_with_the_zip(tmp_path):
    root = _class_folder(tmp_path / "data")
    (root / "Fm-3m").rename(root / "thumbnails")
    with pytest.raises(InputError, match="'thumbnails' does not name a space group") as info:
        open_patterns(_zip(root, tmp_path / "scan.zip"), labelled=True)
    assert str(info.value).startswith(f"{tmp_path / 'scan.zip'}: thumbnails: ")


def test_predictions_on_a_streamed_folder_are_those_on_the_decoded_one(tmp_path, monkeypatch, map_model, map_scan_file):
    from ebsd_core.inference import predict_source
    from ebsd_core.store import load_model

    folder = tmp_path / "scan"
    folder.mkdir()
    for index, pattern in enumerate(open_patterns(map_scan_file).batch(0, 20)):
        Image.fromarray(pattern).save(folder / f"{index:03d}.png")
    model, card = load_model(map_model)
    decoded = predict_source(model, card, open_patterns(folder), batch_size=8, precision="fp32")
    monkeypatch.setattr(images, "IN_MEMORY_BYTES", 0)
    streamed = predict_source(model, card, open_patterns(folder), batch_size=8, precision="fp32")
    np.testing.assert_allclose(streamed.probabilities, decoded.probabilities, atol=1e-6)


def test_images_are_taken_in_natural_name_order(tmp_path):
    """A scan exported as p0 ... p11 is a map only when p2 comes before p10, in a folder and in a zip."""
    folder = tmp_path / "scan"
    folder.mkdir()
    for index in range(12):
        Image.fromarray(np.full((16, 16), index, np.uint8)).save(folder / f"p{index}.png")
    expected = [f"p{index}.png" for index in range(12)]
    for source in (open_patterns(folder), open_patterns(_zip(folder, tmp_path / "scan.zip"))):
        assert source.names == expected
        np.testing.assert_array_equal(source.batch(0, 12)[:, 0, 0], np.arange(12))


@pytest.mark.parametrize("name", ["x{x}_y{y}.png", "Map Data 1 x={x} y={y}.png", "y{y}x{x}.tif", "row{y}_col{x}.bmp"])
def test_images_named_by_their_points_of_a_scan_are_a_map_row_by_row(tmp_path, streamed, name):
    """Found on review: a scan exported one image per point, named by position (x0_y0, x0_y1, ...), was taken in the
    order of the names, column by column, and a map laid out row by row from it was scrambled without a word. The
    points' grid gives the map's shape, in a folder and in a zip, also when read image by image."""
    folder = tmp_path / "scan"
    folder.mkdir()
    for x in range(3):
        for y in range(2):  # a 2 x 3 map: pixel value = its place, row by row
            Image.fromarray(np.full((16, 16), 10 * y + x, np.uint8)).save(folder / name.format(x=x, y=y))
    for source in (open_patterns(folder), open_patterns(_zip(folder, tmp_path / "scan.zip", images="*.*"))):
        assert source.nav_shape == (2, 3) and not source.warnings
        assert source.file_name(1) == name.format(x=1, y=0)
        np.testing.assert_array_equal(source.batch(0, 6)[:, 0, 0], [0, 1, 2, 10, 11, 12])


def test_images_named_by_stage_coordinates_below_zero_are_a_map_row_by_row(tmp_path):
    """Found on review: names giving points in stage coordinates, some below zero (``x=-1.5 y=0.5``), gave no point at
    all, and the scan was taken in name order without a word. A dash after x or y still separates (``x-12_y-5``)."""
    folder = tmp_path / "scan"
    folder.mkdir()
    for x in range(3):
        for y in range(2):
            name = f"stage x={x * 0.5 - 0.5:g} y={y * 0.5 - 0.25:g}.png"
            Image.fromarray(np.full((16, 16), 10 * y + x, np.uint8)).save(folder / name)
    source = open_patterns(folder)
    assert source.nav_shape == (2, 3) and not source.warnings
    np.testing.assert_array_equal(source.batch(0, 6)[:, 0, 0], [0, 1, 2, 10, 11, 12])
    assert source.file_name(0) == "stage x=-0.5 y=-0.25.png"


def _point_named_scan(folder, points):
    """Images named by their ``points`` (x, y) of a scan; each pixel's value gives its place, 10 * y + x."""
    folder.mkdir()
    for x, y in points:
        Image.fromarray(np.full((16, 16), 10 * y + x + 1, np.uint8)).save(folder / f"x{x}_y{y}.png")
    return folder


def test_a_row_or_column_of_a_scan_named_by_points_without_any_image_keeps_its_place_on_the_map(tmp_path):
    """Found on review: a row of a scan none of whose images were exported (or a column, in stage coordinates) was
    left out of the map without a word: the rows below it moved up one, which put their points in the wrong place in
    the .ang and made the grain clean-up average patterns across the gap. The row is now kept, its points blank."""
    folder = _point_named_scan(tmp_path / "scan", [(x, y) for y in (0, 2, 3) for x in range(3)])
    source = open_patterns(folder)
    assert source.nav_shape == (4, 3) and source.names[3:6] == ["", "", ""]
    np.testing.assert_array_equal(source.batch(0, 12)[:, 0, 0], [1, 2, 3, 0, 0, 0, 21, 22, 23, 31, 32, 33])
    assert source.warnings == [
        "3 points of the 4 x 3 map that the images' names give have no readable image (row 1, column 0; row 1, "
        "column 1; row 1, column 2): drawn as blank patterns, read as unknown"
    ]
    stage = tmp_path / "stage"
    stage.mkdir()
    for x in (-0.5, 0.0, 1.0):  # no image at x=0.5
        for y in (0.25, 0.75):
            Image.fromarray(np.full((16, 16), 1, np.uint8)).save(stage / f"stage x={x:g} y={y:g}.png")
    source = open_patterns(stage)
    assert source.nav_shape == (2, 4) and source.names[2] == source.names[6] == ""
    assert source.file_name(3) == "stage x=1 y=0.25.png"


@pytest.mark.parametrize("lazy", [False, True])
def test_a_point_of_a_scan_named_by_points_without_an_image_is_blank_on_its_map(tmp_path, monkeypatch, lazy):
    """Found on review: an export cut short, or a file lost, left a point of the grid without an image, and the scan
    gave no map shape at all: the Phase map then asked for rows and columns that no count of images could fill. The
    point is now a blank pattern (read as unknown), in memory and read image by image."""
    if lazy:
        monkeypatch.setattr(images, "IN_MEMORY_BYTES", 0)
    folder = _point_named_scan(tmp_path / "scan", [(0, 0), (1, 0), (0, 1), (2, 0), (2, 1)])  # x1_y1 is missing
    for source in (open_patterns(folder), open_patterns(_zip(folder, tmp_path / "scan.zip"))):
        assert source.nav_shape == (2, 3) and source.names == [
            "x0_y0.png",
            "x1_y0.png",
            "x2_y0.png",
            "x0_y1.png",
            "",
            "x2_y1.png",
        ]
        np.testing.assert_array_equal(source.batch(0, 6)[:, 0, 0], [1, 2, 3, 11, 0, 13])
        assert source.file_name(4) is None and source.file_name(5) == "x2_y1.png"
        assert source.index_of_file("x2_y1.png") == 5
        assert source.warnings == [
            "1 point of the 2 x 3 map that the images' names give has no readable image (row 1, column 1): drawn as "
            "a blank pattern, read as unknown"
        ]


@pytest.mark.parametrize("lazy", [False, True])
def test_a_point_of_a_scan_whose_image_cannot_be_read_is_blank_on_its_map(tmp_path, monkeypatch, lazy):
    """Found on review: one unreadable image of thousands took the map's shape away."""
    if lazy:
        monkeypatch.setattr(images, "IN_MEMORY_BYTES", 0)
    folder = _point_named_scan(tmp_path / "scan", [(x, y) for x in range(2) for y in range(2)])
    _truncate(folder / "x1_y0.png")
    source = open_patterns(folder)
    assert source.nav_shape == (2, 2) and source.names == ["x0_y0.png", "", "x0_y1.png", "x1_y1.png"]
    np.testing.assert_array_equal(source.batch(0, 4)[:, 0, 0], [1, 0, 11, 12])
    assert "could not be read and was left out (x1_y0.png)" in source.warnings[0]
    assert source.warnings[1].startswith("1 point of the 2 x 2 map that the images' names give has no readable image")


def test_images_named_by_points_of_a_hexagonal_grid_are_a_scan_on_that_grid(tmp_path, streamed):
    """Found on review: a hexagonal scan's images named by stage coordinates (every other row offset by half a step)
    were laid on a square grid of half steps, a checkerboard with every other point blank, said as half the map's
    images missing. They are now the scan's points row by row, said to be on a hexagonal grid, each at its place on
    it (its row and column in half steps), to be drawn there."""
    from ebsd_core.io.point_names import HEXAGONAL_NAMES

    folder = tmp_path / "hexagonal"
    folder.mkdir()
    order = 0
    for row in range(4):
        for column in range(4 - row % 2):  # rows of 4 and 3 points, the odd ones half a step to the right
            order += 1
            x, y = 1.5 * (column + 0.5 * (row % 2)), 1.5 * 0.866 * row
            Image.fromarray(np.full((16, 16), order, np.uint8)).save(folder / f"Map x={x:.3f} y={y:.3f}.png")
    for source in (open_patterns(folder), open_patterns(_zip(folder, tmp_path / "hexagonal.zip"))):
        assert source.hexagonal_grid and source.nav_shape == (14,) and source.warnings == [HEXAGONAL_NAMES]
        np.testing.assert_array_equal(source.batch(0, 14)[:, 0, 0], np.arange(1, 15))  # row by row
        assert source.file_name(4) == "Map x=0.750 y=1.299.png"
        assert source.hexagonal_places.tolist() == [
            [row, 2 * column + row % 2] for row in range(4) for column in range(4 - row % 2)
        ]
    square = _point_named_scan(tmp_path / "square", [(0, 0), (1, 0), (0, 1), (2, 0), (2, 1)])
    assert not open_patterns(square).hexagonal_grid  # a point lost is no offset row


def _opened_with_peak(folder):
    """The folder's patterns, and the most memory that reading them took (tracemalloc, which counts numpy's)."""
    import tracemalloc

    open_patterns(folder)  # what a first read imports is not the patterns' memory
    tracemalloc.start()
    try:
        source = open_patterns(folder)
        return source, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("lost", ["missing", "unreadable"])
def test_a_scan_named_by_points_with_a_blank_point_is_decoded_into_its_places(tmp_path, lost):
    """Found on review: the patterns were decoded, then copied onto the grid with the blank point: twice their memory
    while it was made (82 MiB of patterns peaked at 168 MiB; now at 86 MiB)."""
    folder = tmp_path / "scan"
    folder.mkdir()
    for x in range(20):
        for y in range(10):
            Image.fromarray(np.full((128, 128), 10 * y + x + 1, np.uint8)).save(folder / f"x{x}_y{y}.png")
    (folder / "x4_y3.png").unlink() if lost == "missing" else _truncate(folder / "x4_y3.png")
    source, peak = _opened_with_peak(folder)
    assert source.names[64] == "" and source.warnings[-1].startswith("1 point of the 10 x 20 map")
    np.testing.assert_array_equal(source.batch(63, 66)[:, 0, 0], [34, 0, 36])
    assert peak < 1.3 * source.patterns.nbytes, peak / source.patterns.nbytes  # one copy of them, not two or three


def test_an_image_left_out_as_undecodable_costs_no_copy_of_the_others(tmp_path):
    """Found on review: the readable patterns were copied out of those decoded, twice their memory meanwhile (31 MiB
    of them peaked at 64 MiB); they are now moved up in place."""
    folder = tmp_path / "scan"
    folder.mkdir()
    for index in range(200):  # noise, whose compressed pixels fill the file: damage in its middle is in them
        pattern = np.random.default_rng(index).integers(0, 250, (128, 128), dtype=np.uint8)
        pattern[0, 0] = index
        Image.fromarray(pattern).save(folder / f"p{index}.png")
    damage_pixels(folder / "p50.png")
    source, peak = _opened_with_peak(folder)
    assert len(source) == 199 and "p50.png" not in source.names and "could not be read" in source.warnings[0]
    np.testing.assert_array_equal(source.batch(48, 52)[:, 0, 0], [48, 49, 51, 52])
    assert peak < 1.3 * source.patterns.nbytes, peak / source.patterns.nbytes


def test_a_few_images_whose_names_give_no_point_are_left_out_of_a_scan_named_by_points(tmp_path):
    """Found on review: an overview image dropped beside a scan's patterns named by their points took the map's shape
    away, without a word: the images came in name order, column by column, one more than the map's points."""
    folder = _point_named_scan(tmp_path / "scan", [(x, y) for x in range(5) for y in range(4)])
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(folder / "overview.png")
    source = open_patterns(folder)
    assert source.nav_shape == (4, 5) and "overview.png" not in source.names
    np.testing.assert_array_equal(source.batch(0, 5)[:, 0, 0], [1, 2, 3, 4, 5])
    assert source.warnings == ["1 image whose name gives no point of the scan was left out of it (overview.png)"]
    for index in range(2):  # three of 23: more than a tenth, not a scan's images with an extra one
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / f"other{index}.png")
    assert open_patterns(folder).nav_shape == (23,)


@pytest.mark.parametrize(
    ("points", "said"),
    [
        ([(0, 0), (1, 1), (2, 2)], "3 of its 9 points"),  # under half of a 3 x 3 grid: not a scan's
        ([(0, 0), (1, 0), (0, 1), (1, 1)], "1 point named twice"),
    ],
)
def test_images_named_by_points_that_do_not_lay_out_a_grid_are_said_so(tmp_path, points, said):
    folder = _point_named_scan(tmp_path / "scan", points)
    if said.endswith("twice"):
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "x=1 y=1.png")
    source = open_patterns(folder)
    assert source.nav_shape == (len(source),) and source.names == sorted(source.names, key=images.natural_order)
    (warning,) = source.warnings
    assert warning.endswith(f"grid ({said}): they are taken in the order of their names")


def _band_at_45_degrees(rows, cols):
    """A 5 px wide line through the centre at 45 degrees, as a Kikuchi band would cross the pattern."""
    image = np.zeros((rows, cols), np.uint8)
    for row in range(rows):
        col = row - rows // 2 + cols // 2
        if 0 <= col < cols:
            image[row, max(col - 2, 0) : col + 3] = 255
    return image


@pytest.mark.parametrize("other", [(120, 160), (160, 120)])
def test_an_image_of_another_aspect_ratio_is_cropped_not_stretched(tmp_path, other):
    """Found on review: a 4:3 camera's pattern among square ones was stretched to a square, which turned a 45 degree
    band to 37 degrees (slope 0.75); a labelled folder gathered from two cameras trained on bent bands."""
    for name, shape in (("Fd-3m/s0.png", (60, 60)), ("Fd-3m/s1.png", (60, 60)), ("Im-3m/other.png", other)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(_band_at_45_degrees(*shape)).save(tmp_path / name)
    source = open_patterns(tmp_path)
    assert source.pattern_shape == (60, 60) and "centre crop" in source.warnings[0]
    rows, cols = np.nonzero(np.asarray(source.patterns[2], float) > 128)
    assert np.polyfit(rows, cols, 1)[0] == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize(
    "shape,target,expected",
    [((120, 160), (60, 60), (120, 120)), ((160, 120), (60, 60), (120, 120)), ((60, 60), (30, 40), (45, 60))],
)
def test_crop_to_aspect_keeps_the_largest_centred_window(shape, target, expected):
    array = np.arange(shape[0] * shape[1]).reshape(shape)
    window = images.crop_to_aspect(array, target)
    assert window.shape == expected
    top, left = (shape[0] - expected[0]) // 2, (shape[1] - expected[1]) // 2
    assert window[0, 0] == array[top, left]


APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4000)


def test_the_hidden_files_macos_writes_beside_copied_images_are_passed_over(tmp_path):
    """Found on review: a folder copied from a Mac onto a USB drive holds a ``._p0.png`` (metadata) beside every
    image, and each was reported as an image that could not be read, as if the scan were damaged."""
    folder = tmp_path / "scan"
    for name in ("Fm-3m", "Im-3m"):
        (folder / name).mkdir(parents=True)
        for index in range(2):
            Image.fromarray(np.full((16, 16), index, np.uint8)).save(folder / name / f"p{index}.png")
            (folder / name / f"._p{index}.png").write_bytes(APPLE_DOUBLE)
    archive = tmp_path / "scan.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # zipped on the drive, the metadata files come along
        for path in sorted(folder.rglob("*.png")):
            zf.write(path, str(path.relative_to(folder)))
    for source in (open_patterns(folder), open_patterns(archive)):
        assert source.names == ["Fm-3m/p0.png", "Fm-3m/p1.png", "Im-3m/p0.png", "Im-3m/p1.png"]
        assert source.warnings == [] and source.classes == [225, 229]


def test_info_says_how_a_folder_is_read(tmp_path, monkeypatch, capsys):
    import json

    from ebsd_core.cli import main

    folder = _class_folder(tmp_path / "data")
    assert main(["info", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out)["read"] == "in memory"
    monkeypatch.setattr(images, "IN_MEMORY_BYTES", 0)
    assert main(["info", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out)["read"] == "from disk, batch by batch"


def _tiff_stack(path, count=5, dtype=np.uint16):
    pages = [Image.fromarray(np.full((20, 24), 1000 * index + 7, dtype)) for index in range(count)]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


@pytest.mark.parametrize("limit", [images.IN_MEMORY_BYTES, 0])
def test_a_multi_page_tiff_is_read_as_a_stack_of_patterns(tmp_path, monkeypatch, limit):
    """An ImageJ-style stack of a scan's patterns: every page, in order (before, only the first page was read)."""
    monkeypatch.setattr(images, "IN_MEMORY_BYTES", limit)
    source = open_patterns(_tiff_stack(tmp_path / "scan.tif"))
    assert source.kind == "image-stack" and len(source) == 5 and source.nav_shape == (5,)
    assert source.pattern_shape == (20, 24) and source.patterns.dtype == np.uint16
    np.testing.assert_array_equal(source.batch(0, 5)[:, 0, 0], [7, 1007, 2007, 3007, 4007])
    assert source.names[3] == "page 3"


def test_a_single_page_tiff_is_one_image(tmp_path):
    source = open_patterns(_tiff_stack(tmp_path / "one.tif", count=1))
    assert source.kind == "image" and len(source) == 1


def test_an_image_far_larger_than_the_others_is_left_out(tmp_path):
    """Found by fuzzing: a damaged header declaring 16x2,097,168 px took minutes to resize to the others' size."""
    root = _class_folder(tmp_path / "data")
    Image.fromarray(np.zeros((400, 400), np.uint8)).save(root / "Fm-3m" / "huge.png")
    source = open_patterns(root)
    assert len(source) == 8 and "Fm-3m/huge.png" not in source.names
    assert any("huge.png: image of 400x400 px, over 16 times the size of most (20x20)" in w for w in source.warnings)


def test_a_zip_member_damaged_past_its_header_is_named_once_when_left_out(tmp_path):
    root = _class_folder(tmp_path / "data")
    _truncate(root / "Fm-3m" / "p1.png")
    source = open_patterns(_zip(root, tmp_path / "scan.zip"))
    assert len(source) == 7
    warning = next(w for w in source.warnings if "could not be read" in w)
    assert "the first, Fm-3m/p1.png: cannot read this image" in warning and warning.count("p1.png") == 2


def _png_header_only(path, width, height):
    """A PNG that declares ``width`` x ``height`` pixels and holds none (how a decompression bomb starts)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side, message", [(9_000, "larger than allowed"), (12_000, "decompression bomb refused")])
def test_images_declaring_huge_sizes_are_refused_from_their_header(tmp_path, side, message):
    """Above MAX_IMAGE_PIXELS PIL only warns, above twice it raises: both are refused, naming the file."""
    with pytest.raises(InputError, match=message) as caught:
        images.read_image(_png_header_only(tmp_path / "huge.png", side, side))
    assert str(caught.value).startswith(str(tmp_path / "huge.png"))


def test_an_image_whose_pixels_are_damaged_says_so(tmp_path):
    """Found by fuzzing (bench/fuzz.py counts refusals in Python's words): "OSError: broken data stream when reading
    image file"."""
    path = tmp_path / "p1.png"
    Image.fromarray((np.arange(400).reshape(20, 20) % 251).astype(np.uint8)).save(path)
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"IDAT") + 8] ^= 0xFF  # inside the compressed pixels
    path.write_bytes(raw)
    with pytest.raises(InputError, match=r"p1.png: cannot read this image \(its image data is damaged: the header"):
        images.read_image(path)
