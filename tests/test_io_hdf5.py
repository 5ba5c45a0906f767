"""A variable-length value declaring more bytes than its heap holds is refused before HDF5 allocates them."""

import subprocess
import sys
import zlib

import h5py
import numpy as np
import pytest
from fuzzing import FORMATS

from ebsd_core.errors import InputError
from ebsd_core.io.dataset import FORMAT_NAME, Dataset, read_dataset, write_dataset
from ebsd_core.io.hdf5 import LOCKED_WORDS, check_variable_length, hdf5_error_words
from ebsd_core.io.orientations import load_crystal_map, read_orientations
from ebsd_core.io.readers import open_patterns

# what fuzzing found: HDF5 took 4.5 GB and 19 s to refuse this length in a 92 kB H5OINA's 'Format Version'
# (its heap collection holds 4,096 bytes)
FOUND_LENGTH = 4_294_967_167


def _declare_length(path, name: str, length: int, value: int = 0) -> None:
    """Overwrite the length the ``value``-th element of dataset ``name`` declares, as damage would."""
    with h5py.File(path, "r") as file:
        offset = file[name].id.get_offset()
        record = 4 + file.id.get_create_plist().get_sizes()[0] + 4
    with open(path, "r+b") as handle:
        handle.seek(offset + value * record)
        handle.write(np.uint32(length).astype("<u4").tobytes())


@pytest.fixture
def h5oina(tmp_path):
    return FORMATS["oxford-h5oina"].make(tmp_path)


def test_a_header_string_longer_than_the_file_is_refused_naming_it(h5oina):
    _declare_length(h5oina, "Format Version", FOUND_LENGTH)
    message = "'Format Version' declares a value of 4,294,967,167 bytes, more than the heap it points at holds"
    with pytest.raises(InputError, match=message) as caught:
        open_patterns(h5oina)
    assert h5oina.name in str(caught.value)


def test_the_indexing_of_such_a_file_is_still_read(h5oina):
    """Only the Euler angles and the header's map size are read: the damaged string is never asked for."""
    _declare_length(h5oina, "Format Version", FOUND_LENGTH)
    assert read_orientations(h5oina, points=9).shape == (9, 4)


def test_a_crystal_map_orix_would_read_is_checked_first(tmp_path):
    from orix import io
    from orix.crystal_map import CrystalMap
    from orix.quaternion import Rotation

    path = tmp_path / "map.h5"
    points = Rotation.identity(6)
    io.save(str(path), CrystalMap(points, x=np.tile(np.arange(3.0), 2), y=np.repeat(np.arange(2.0), 3)))
    with h5py.File(path, "r+") as file:  # as a variable-length string, which orix reads as well
        del file["crystal_map/header/scan_unit"]
        file["crystal_map/header/scan_unit"] = "um"
    assert load_crystal_map(path).shape == (2, 3)
    _declare_length(path, "crystal_map/header/scan_unit", FOUND_LENGTH)
    with pytest.raises(InputError, match="'crystal_map/header/scan_unit' declares"):
        load_crystal_map(path)


@pytest.fixture
def dataset_file(tmp_path):
    rng = np.random.default_rng(0)
    dataset = Dataset(rng.integers(0, 255, (4, 8, 8), dtype=np.uint8), [0, 1] * 2, [225, 229], ["ni", "w"] * 2)
    return write_dataset(dataset, tmp_path / "data.h5")


def test_a_damaged_material_name_in_a_dataset_is_refused(dataset_file):
    _declare_length(dataset_file, "material", 2**31, value=3)
    with pytest.raises(InputError, match="'material' declares a value of 2,147,483,648 bytes"):
        read_dataset(dataset_file)


def test_a_damaged_attribute_is_refused_before_the_file_is_asked_what_it_is(dataset_file):
    """The project dataset's ``format`` attribute: asking whether the file was one took 4 GB."""
    raw = bytearray(dataset_file.read_bytes())
    at = _record_of(raw, FORMAT_NAME)
    raw[at : at + 4] = np.uint32(FOUND_LENGTH).tobytes()
    dataset_file.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="attribute 'format' of / declares a value of 4,294,967,167 bytes"):
        open_patterns(dataset_file)


def _record_of(raw: bytearray, value: str, address_size: int = 8) -> int:
    """Where the on-disk record of a variable-length string ``value`` lies: its length, then the address of a
    global heap collection (found by its signature, independently of the code under test)."""
    length = np.uint32(len(value)).tobytes()
    at = raw.find(length)
    while at >= 0:
        address = int.from_bytes(raw[at + 4 : at + 4 + address_size], "little")
        if raw[address : address + 4] == b"GCOL":
            return at
        at = raw.find(length, at + 1)
    raise AssertionError(f"no record of {value!r}")


def test_a_length_within_a_large_file_is_still_held_to_its_heap(tmp_path):
    """A damaged length short of a multi-gigabyte scan's size would still be allocated: 200 kB stand for it."""
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as file:
        file["Manufacturer"] = "EDAX"
        file["patterns"] = np.zeros(500_000, np.uint8)
    _declare_length(path, "Manufacturer", 200_000)
    with pytest.raises(InputError, match="200,000 bytes, more than the heap it points at holds \\(4,096 bytes\\)"):
        check_variable_length(path)


def test_a_long_value_pointing_at_no_heap_is_refused(tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as file:
        file["Manufacturer"] = "EDAX"
        file["patterns"] = np.zeros(500_000, np.uint8)
    with h5py.File(path, "r") as file:
        record = file["Manufacturer"].id.get_offset()
    with open(path, "r+b") as handle:  # its length, then the address of the patterns' data instead of its heap's
        handle.seek(record)
        handle.write(np.uint32(200_000).tobytes() + np.uint64(400_000).tobytes())
    with pytest.raises(InputError, match="'Manufacturer' declares a value of 200,000 bytes, and points at no heap"):
        check_variable_length(path)


def test_every_value_is_checked_however_many(tmp_path, monkeypatch):
    """Values are read a million at a time (here two): the last one of the last read is checked too."""
    import ebsd_core.io.hdf5

    monkeypatch.setattr(ebsd_core.io.hdf5, "VALUES_PER_READ", 2)
    path = tmp_path / "names.h5"
    with h5py.File(path, "w") as file:
        file["names"] = np.array(["x" * 10_000, "b", "x" * 9_000, "d", "e"], dtype=h5py.string_dtype())
    check_variable_length(path)  # long values in heaps that hold them
    _declare_length(path, "names", FOUND_LENGTH, value=4)
    with pytest.raises(InputError, match="'names' declares a value of 4,294,967,167 bytes"):
        check_variable_length(path)


@pytest.mark.parametrize("filters", [{}, {"compression": "gzip", "shuffle": True}], ids=["raw", "gzip-shuffle"])
def test_values_of_chunked_datasets_are_checked(tmp_path, filters):
    """EMsoft keeps its NML settings as chunked, deflated strings: each chunk is read raw and inflated (HDF5 skips
    the shuffle for variable-length data: the chunk's filter mask says so)."""
    path = tmp_path / "nml.h5"
    with h5py.File(path, "w") as file:
        values = np.array(["&EBSDdata", "energymax = 20.0"], dtype=object)
        file.create_dataset("NML", data=values, dtype=h5py.string_dtype(), chunks=(2,), **filters)
    check_variable_length(path)
    with h5py.File(path, "r+") as file:
        dataset = file["NML"]
        skipped, chunk = dataset.id.read_direct_chunk((0,))
        records = bytearray(zlib.decompress(chunk) if filters else chunk)
        records[16:20] = np.uint32(FOUND_LENGTH).tobytes()  # the second value's length
        dataset.id.write_direct_chunk((0,), zlib.compress(records) if filters else bytes(records), skipped)
    with pytest.raises(InputError, match="dataset 'NML' declares a value of 4,294,967,167 bytes"):
        check_variable_length(path)


def test_a_chunk_that_does_not_inflate_is_left_to_the_reader(tmp_path):
    path = tmp_path / "nml.h5"
    with h5py.File(path, "w") as file:
        values = np.array(["&EBSDdata", "energymax = 20.0"], dtype=object)
        file.create_dataset("NML", data=values, dtype=h5py.string_dtype(), chunks=(2,), compression="gzip")
    with h5py.File(path, "r+") as file:
        file["NML"].id.write_direct_chunk((0,), b"not deflated at all")
    check_variable_length(path)
    with h5py.File(path, "r") as file, pytest.raises(OSError):
        file["NML"][()]


def _v1_headers(path):
    return h5py.File(path, "w", libver="earliest")


def _four_byte_addresses(path):
    plist = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    plist.set_sizes(4, 4)
    return h5py.File(h5py.h5f.create(str(path).encode(), h5py.h5f.ACC_TRUNC, fcpl=plist))


def _v2_headers_with_creation_order(path):
    return h5py.File(path, "w", libver="latest", track_order=True)


def _values_in_headers(path, layout) -> int:
    """A file whose attribute and compact dataset hold variable-length strings (in their object headers, which
    h5py does not show); returns its address size."""
    with layout(path) as file:
        group = file.create_group("group", track_order=layout is _v2_headers_with_creation_order)
        group.attrs["notes"] = np.array(["first", "the third"], dtype=h5py.string_dtype())
        compact = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        compact.set_layout(h5py.h5d.COMPACT)
        values = np.array(["one", "second"], dtype=object)
        group.create_dataset("compact", data=values, dtype=h5py.string_dtype(), dcpl=compact)
        return file.id.get_create_plist().get_sizes()[0]


@pytest.mark.parametrize(
    ("value", "named"), [("the third", "attribute 'notes' of group"), ("second", "dataset 'group/compact'")]
)
def test_values_in_object_headers_are_checked(tmp_path, value, named):
    path = tmp_path / "layout.h5"
    _values_in_headers(path, _v1_headers)
    check_variable_length(path)
    raw = bytearray(path.read_bytes())
    at = _record_of(raw, value)
    raw[at : at + 4] = np.uint32(FOUND_LENGTH).tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=f"{named} declares a value of 4,294,967,167 bytes"):
        check_variable_length(path)


@pytest.mark.parametrize("layout", [_v2_headers_with_creation_order, _four_byte_addresses])
def test_values_in_version_2_headers_are_found(tmp_path, layout):
    """HDF5 meets damage there by the header's checksum before it reads a value, so this checks only where the
    values are found (a file written with 4-byte addresses has such headers too)."""
    from ebsd_core.io.hdf5 import _header_values, _Sizes

    path = tmp_path / "layout.h5"
    address_size = _values_in_headers(path, layout)
    raw = path.read_bytes()
    sizes = _Sizes(address_size, address_size, len(raw))
    with h5py.File(path, "r") as file:
        headers = {name: h5py.h5o.get_info(file[name].id).addr for name in ("group", "group/compact")}
    with path.open("rb") as handle:
        found = [values for name, at in headers.items() for values in _header_values(handle, name, at, sizes)]
    assert [(values.what, values.count) for values in found] == [
        ("attribute 'notes' of group", 2),
        ("dataset 'group/compact'", 2),
    ]
    assert {_record_of(bytearray(raw), text, address_size) for text in ("the third", "second")} <= {
        values.offset + i * sizes.record for values in found for i in range(values.count)
    }


def test_valid_files_pass(h5oina, tmp_path):
    check_variable_length(h5oina)
    assert len(open_patterns(h5oina)) == 9
    path = tmp_path / "long.h5"
    with h5py.File(path, "w") as file:
        file["text"] = "x" * 50_000  # a long value, wholly in the file
        file.create_dataset("empty", shape=(0,), dtype=h5py.string_dtype())
    check_variable_length(path)


def test_a_file_that_is_not_hdf5_is_said_so_and_other_unopened_ones_left_to_the_reader(tmp_path):
    path = tmp_path / "scan.h5oina"
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match="scan.h5oina: it is not an HDF5 file: another format under this name"):
        check_variable_length(path)
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(b"\x89HDF\r\n\x1a\n junk")  # HDF5's signature, then nothing HDF5 can read
    check_variable_length(damaged)
    with pytest.raises(InputError, match="damaged.h5: kikuchipy cannot read this file"):
        open_patterns(damaged)


def test_a_file_another_program_holds_open_for_writing_says_so(dataset_file):
    """Found on review: a scan still being written (or open in HDFView) read as "BlockingIOError: [Errno 11] Unable
    to synchronously open file (unable to lock file, errno = 11, ...)"."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], 'a'); print('open'); time.sleep(60)"]
        + [str(dataset_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        for read in (read_dataset, open_patterns):
            with pytest.raises(InputError, match=r"\.h5: it is open for writing in another program, and HDF5 locks"):
                read(dataset_file)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    "error,words",
    [
        (
            BlockingIOError(
                11,
                "Unable to synchronously open file (unable to lock file, errno = 11, error message = "
                "'Resource temporarily unavailable')",
            ),
            LOCKED_WORDS,
        ),
        (
            PermissionError(
                13,
                "Unable to synchronously open file (unable to open file: name = 'a.h5', errno = 13, "
                "error message = 'Permission denied', flags = 0, o_flags = 0)",
            ),
            "the system would not open it (Permission denied)",
        ),
        (
            OSError(
                "Unable to synchronously open file (unable to lock file, errno = 38, error message = 'Function "
                "not implemented')"
            ),
            "the system would not open it (Function not implemented)",  # a file system without locks: no program
        ),
        (
            KeyError("Unable to synchronously open attribute (wrong version number in dataspace message)"),
            "it is damaged: HDF5 cannot read part of it (wrong version number in dataspace message)",
        ),
        (
            RuntimeError("Link iteration failed (addr overflow, addr = 5632, size = 33554608, eoa = 35624)"),
            "it is damaged: HDF5 cannot read part of it (addr overflow, addr = 5632, size = 33554608, eoa = 35624)",
        ),
        (
            KeyError("Unable to synchronously open object (object 'labels' doesn't exist)"),
            "'labels' is missing from it: a file of another kind, or one left incomplete",
        ),
        (
            KeyError(
                "Unable to synchronously open attribute (datatype has unusually large # of unused bits (prec = 8 "
                "bits, size = 32768 bytes), possibly corrupted datatype)"
            ),
            "it is damaged: HDF5 cannot read part of it (datatype has unusually large # of unused bits (prec = 8 bits, "
            "size = 32768 bytes), possibly corrupted datatype)",
        ),
        (
            ValueError("Insufficient precision in available types to represent (31, 23, 8, 0, 23)"),
            "it is damaged: one of its number types describes floating-point numbers that no program writes",
        ),
        (ValueError("could not broadcast input array"), None),  # not HDF5's: left to the reader's words
    ],
)
def test_hdf5s_errors_are_put_in_words(error, words):
    """Found by fuzzing (bench/fuzz.py counts refusals in Python's words): HDF5's own were shown."""
    assert hdf5_error_words(error) == words


def test_a_dataset_missing_its_labels_says_so(dataset_file):
    with h5py.File(dataset_file, "a") as file:
        del file["labels"]
    with pytest.raises(InputError, match=r"\.h5: 'labels' is missing from it: a file of another kind, or one left"):
        read_dataset(dataset_file)


def test_a_dataset_whose_float_type_is_damaged_says_so(dataset_file):
    """Found by fuzzing: a float32's exponent bias changed (127 to 2**31 - 1) was refused in h5py's words,
    "ValueError: Insufficient precision in available types to represent (31, 23, 8, 0, 23)"."""
    float32 = bytes([0, 0, 32, 0, 23, 8, 0, 23]) + (127).to_bytes(4, "little")  # offset, precision, fields, bias
    raw = bytearray(dataset_file.read_bytes())
    at = raw.index(float32) + 8
    raw[at : at + 4] = (2**31 - 1).to_bytes(4, "little")
    dataset_file.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"\.h5: it is damaged: one of its number types describes floating-point"):
        read_dataset(dataset_file)


def _last_heap_object(raw: bytes) -> int:
    """Where the size of the last object before the free space of the file's first global heap collection lies."""
    start = raw.index(b"GCOL")
    size, at, last = int.from_bytes(raw[start + 8 : start + 16], "little"), 16, None
    while at + 16 <= size and int.from_bytes(raw[start + at : start + at + 2], "little"):
        last = start + at + 8
        at += 16 + -(-int.from_bytes(raw[last : last + 8], "little") // 8) * 8
    return last


def test_a_heap_whose_objects_hdf5_would_walk_for_ever_is_refused(dataset_file):
    """Found by fuzzing: one object's size in a global heap collection changed, HDF5's walk over the objects
    landed in the free space on an "object" of no size, and reading an attribute of the file hung the process."""
    raw = bytearray(dataset_file.read_bytes())
    at = _last_heap_object(bytes(raw))
    raw[at : at + 8] = (100).to_bytes(8, "little")  # the walk lands in the zeros of the free space
    dataset_file.write_bytes(raw)
    # in a process of its own first: HDF5 hangs in C, where no timeout of this one is heard
    reading = "import sys; from ebsd_core.io.readers import open_patterns; open_patterns(sys.argv[1])"
    try:
        run = subprocess.run([sys.executable, "-c", reading, str(dataset_file)], capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("reading the file hung")
    assert b"the file is damaged: the heap that its" in run.stderr
    for read in (read_dataset, open_patterns):
        with pytest.raises(InputError, match=r"data.h5: the file is damaged: the heap that its .* points at \(object"):
            read(dataset_file)


def test_a_short_value_pointing_past_the_end_of_the_file_is_left_to_hdf5(dataset_file):
    """Found by fuzzing the heap walk above: a value's heap address past the file's end made the walk's seek
    fail ("OSError: [Errno 22] Invalid argument", "cannot fit 'int' into an offset-sized integer")."""
    with h5py.File(dataset_file, "r") as file:
        offset = file["material"].id.get_offset()
    with open(dataset_file, "r+b") as handle:
        handle.seek(offset + 4)  # the first value's heap address, after its length
        handle.write((2**64 - 16).to_bytes(8, "little"))
    check_variable_length(dataset_file)  # not a heap this check can walk: HDF5 says what is wrong
    with pytest.raises(InputError, match="data.h5"):
        read_dataset(dataset_file)


def test_a_datasets_own_records_damaged_are_named(dataset_file):
    """Found by fuzzing: "a damaged dataset (JSONDecodeError: Expecting ',' delimiter ...)", "(TypeError:
    'NoneType' object is not iterable)", "(UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff ...)"."""
    with h5py.File(dataset_file, "a") as file:
        file.attrs["classes"] = '[{"space_group": 225}, {"space_group" 229}]'
    with pytest.raises(InputError, match=r"data.h5: its list of classes is damaged: not the JSON this tool writes$"):
        read_dataset(dataset_file)
    with h5py.File(dataset_file, "a") as file:
        file.attrs["classes"] = '[{"space_group": 225}, {"space_group": 229}]'
        file.attrs["provenance"] = "[1, 2"
    with pytest.raises(InputError, match=r"data.h5: its record of how it was made is damaged: not the JSON"):
        read_dataset(dataset_file)
    with h5py.File(dataset_file, "a") as file:
        file.attrs["provenance"] = "{}"
        del file["split"]
        file["split"] = np.array([b"train\xff"] * 4)
    with pytest.raises(InputError, match=r"data.h5: its 'split' names are damaged: not UTF-8 text$"):
        read_dataset(dataset_file)
    with h5py.File(dataset_file, "a") as file:
        del file["split"]
    with pytest.raises(InputError, match=r"data.h5: 'split' is missing from it: a file of another kind, or one"):
        read_dataset(dataset_file)
