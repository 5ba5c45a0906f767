"""A check run on every HDF5 file before h5py reads its contents.

HDF5 allocates and zero-fills the length a variable-length value (a string, mostly) declares before it
compares it with what the file's heap holds: found by fuzzing, a damaged 92 kB H5OINA whose ``Format Version``
declared 4,294,967,167 bytes made reading it take 4.5 GB of memory and 19 s before HDF5 refused it, and the
same damage to the project dataset's ``format`` attribute took 4 GB when the file was only asked what it is.
On a dashboard shared by a group, a few such uploads at once would take the server's memory. A value lies
whole in one global heap collection, whose size the file states, so a declared length beyond that is refused
here, before anything reads it.

Where the values lie is read from the file's own structures (the HDF5 file format specification, version 3):
a dataset's data through h5py (a chunked one's chunks read raw and inflated); attributes and
compact datasets from their object headers, which h5py does not expose. What cannot be found this way
(attributes in dense storage, chunks through other filters) is left to HDF5.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ebsd_core.errors import InputError
from ebsd_core.wording import byte_size

#: What h5py raises for a damaged file (an InputError is a ValueError too: raise none inside such a ``try``).
H5PY_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError)
#: HDF5 file types: EBSD vendors' (where their own layouts are looked for) and this tool's datasets.
HDF5_EXTENSIONS = {".h5", ".hdf5", ".h5ebsd", ".h5oina"}
#: Variable-length values read at a time (EBSD files hold a few header strings, but any number are checked).
VALUES_PER_READ = 1_000_000
#: HDF5's smallest global heap collection: values up to this long are never looked up.
HEAP_MINIMUM_BYTES = 4096
#: Object header messages read per object (a real header holds tens), and the largest header block read.
MAX_MESSAGES = 10_000
MAX_BLOCK_BYTES = 16 * 2**20

_DATATYPE, _LAYOUT, _ATTRIBUTE, _CONTINUATION = 0x03, 0x08, 0x0C, 0x10
_VARIABLE_LENGTH_CLASS, _VARIABLE_LENGTH_STRING = 9, 1
_COMPACT_LAYOUT = 0


@dataclass(frozen=True)
class _Values:
    """Where the on-disk records of some variable-length values start, and what they are."""

    what: str  # "dataset 'Format Version'", "attribute 'format' of /"
    offset: int
    count: int
    value_size: int  # bytes per element of a value: 1 for a string
    records: bytes | None = None  # the records themselves, of a chunked dataset (inflated)


@dataclass(frozen=True)
class _Sizes:
    address: int
    length: int
    file: int

    @property
    def record(self) -> int:
        """A value on disk: its length (4 bytes), its global heap collection's address, its index (4 bytes)."""
        return 4 + self.address + 4


#: Why a file held open for writing by another program (an acquisition still running, HDFView editing it) cannot
#: be read: HDF5 locks it meanwhile.
LOCKED_WORDS = (
    "it is open for writing in another program, and HDF5 locks it meanwhile: wait until that program closes it (an "
    "acquisition still running?), or read a copy of it"
)

#: Another process holds the file's lock (EAGAIN: 11 on Linux, 35 on macOS); a file system without locks fails
#: with other numbers, which are not a program holding the file.
_HELD_BY_ANOTHER = re.compile(r"unable to lock file, errno = (11|35)\b")
_HDF5_FAILURE = re.compile(r"(?:Unable to|Can't|failed) [^(]*\((.+)\)\W*$", re.DOTALL)
_REFUSED_BY_SYSTEM = re.compile(r"unable to (?:open|lock) file.*error message = '([^']+)'")
_MISSING_OBJECT = re.compile(r"object '([^']+)' doesn't exist")
# h5py's words for a floating-point type that no numpy type can hold: its exponent bias or sizes are damaged
_UNHELD_FLOAT = re.compile(r"Insufficient precision in available types to represent")


def missing_part_words(name: str) -> str:
    """What a file lacking its part ``name`` (a dataset, an attribute) is told."""
    return f"'{name}' is missing from it: a file of another kind, or one left incomplete"


def hdf5_error_words(exc: Exception) -> str | None:
    """What an h5py error says of the file, in words a user can act on (found by fuzzing: HDF5's own were shown,
    as "KeyError: 'Unable to synchronously open attribute (wrong version number in dataspace message)'"), or None
    where it is not HDF5's."""
    text = str(exc)
    if _HELD_BY_ANOTHER.search(text):
        return LOCKED_WORDS
    if found := _REFUSED_BY_SYSTEM.search(text):  # not the file's fault: permissions, a file system without locks
        return f"the system would not open it ({found[1]})"
    if found := _MISSING_OBJECT.search(text):
        return missing_part_words(found[1])
    if found := _HDF5_FAILURE.search(text):
        return f"it is damaged: HDF5 cannot read part of it ({found[1]})"
    if _UNHELD_FLOAT.search(text):
        return "it is damaged: one of its number types describes floating-point numbers that no program writes"
    return None


def unopened_file_words(path: str | Path, exc: Exception) -> str | None:
    """Why h5py could not open ``path`` (the file named as HDF5), in words a user can act on; None where the file is
    HDF5 whole and the reason lies elsewhere. A scan copied off the microscope's PC and cut short reads as HDF5's
    "truncated file: eof = 20024, sblock->base_addr = 0, stored_eof = 40048"."""
    import h5py

    if _HELD_BY_ANOTHER.search(str(exc)):
        return LOCKED_WORDS
    if found := re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", str(exc)):
        here, whole = (int(n) for n in found.groups())
        return (
            f"it is cut short: {byte_size(here)} of its {byte_size(whole)} are here, of a copy or upload that did "
            "not finish"
        )
    try:
        hdf5 = h5py.is_hdf5(path)
    except OSError:
        return None
    return None if hdf5 else "it is not an HDF5 file: another format under this name, or damaged"


def check_variable_length(path: str | Path) -> None:
    """Refuse an HDF5 file whose variable-length values declare more bytes than their heap holds, and one that h5py
    cannot open because it is cut short or not HDF5 at all (:func:`unopened_file_words`); a file h5py cannot open
    for another reason is left to the reader, which says why.

    Raises
    ------
    InputError
        Naming the file and the dataset or attribute.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as file:
            sizes = _Sizes(*file.id.get_create_plist().get_sizes(), path.stat().st_size)
            datasets, headers = _dataset_values(file, sizes)
    except H5PY_ERRORS as exc:
        if words := unopened_file_words(path, exc):
            raise InputError(words, path) from None
        return
    with path.open("rb") as handle:
        found = datasets + [
            values for name, address in headers for values in _header_values(handle, name, address, sizes)
        ]
        walked: set[int] = set()
        for values in found:
            _check_lengths(handle, path, values, sizes, walked)


def _dataset_values(file, sizes: _Sizes) -> tuple[list[_Values], list[tuple[str, int]]]:
    """The variable-length datasets (where their records lie, or a chunked one's records), and every object's
    name and header address."""
    import h5py

    datasets: list[_Values] = []
    headers = [("/", h5py.h5o.get_info(file.id).addr)]

    def visit(name: str, item) -> None:
        headers.append((name, h5py.h5o.get_info(item.id).addr))
        if not isinstance(item, h5py.Dataset) or not (value_size := _value_size(item.id.get_type())):
            return
        offset = item.id.get_offset()  # None unless stored contiguously and allocated
        count = item.id.get_space().get_simple_extent_npoints()
        if offset is not None and count > 0:
            datasets.append(_Values(f"dataset '{name}'", offset, count, value_size))
        elif item.chunks and (records := _chunk_records(item, sizes.record)):
            datasets.append(_Values(f"dataset '{name}'", 0, len(records) // sizes.record, value_size, records))

    file.visititems(visit)
    return datasets, headers


def _chunk_records(dataset, record: int) -> bytes | None:
    """The records of a chunked variable-length dataset, each chunk read raw and inflated; None when another
    filter was applied (HDF5 skips shuffling variable-length data, and each chunk's filter mask says so)."""
    import zlib

    import h5py

    plist = dataset.id.get_create_plist()
    pipeline = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    most = int(np.prod(dataset.chunks)) * record  # what one chunk can hold: more is not read
    chunks: list = []
    dataset.id.chunk_iter(chunks.append)  # one pass over the chunk index (get_chunk_info searches it each time)
    records = []
    for chunk in chunks:
        skipped, data = dataset.id.read_direct_chunk(chunk.chunk_offset)
        for position in reversed(range(len(pipeline))):
            if skipped & (1 << position):
                continue
            if pipeline[position] != h5py.h5z.FILTER_DEFLATE:
                return None
            try:
                data = zlib.decompressobj().decompress(data, most)
            except zlib.error:
                return None  # a damaged chunk: HDF5 refuses it before it reads a value
        records.append(data[:most])
    return b"".join(records)


def _value_size(kind) -> int:
    """Bytes per element of a variable-length type's values; 0 for other types."""
    import h5py

    if kind.get_class() == h5py.h5t.STRING and kind.is_variable_str():
        return 1
    if kind.get_class() == h5py.h5t.VLEN:
        return kind.get_super().get_size()
    return 0


def _check_lengths(handle: BinaryIO, path: Path, values: _Values, sizes: _Sizes, walked: set[int]) -> None:
    """Refuse a value that declares more bytes than the global heap collection it points at holds (a value
    lies whole in one; a collection holds at least 4,096 bytes, so only longer values are looked up), and a
    collection whose objects HDF5 could not walk (``walked``: the collections already walked)."""
    if values.records is not None:
        _check_records(handle, path, values, values.records, sizes, walked)
        return
    for first in range(0, values.count, VALUES_PER_READ):
        handle.seek(values.offset + first * sizes.record)
        raw = handle.read(min(VALUES_PER_READ, values.count - first) * sizes.record)
        _check_records(handle, path, values, raw, sizes, walked)
        if len(raw) < VALUES_PER_READ * sizes.record:
            return


def _check_records(handle: BinaryIO, path: Path, values: _Values, raw: bytes, sizes: _Sizes, walked: set[int]) -> None:
    whole = len(raw) // sizes.record
    records = np.frombuffer(raw[: whole * sizes.record], dtype=np.uint8).reshape(whole, sizes.record)
    declared = records[:, :4].copy().view("<u4").reshape(-1).astype(np.int64) * values.value_size
    _walk_heaps(handle, path, values.what, records[declared > 0], sizes, walked)
    long_values = np.flatnonzero(declared > HEAP_MINIMUM_BYTES)
    addresses = [_number(records[row].tobytes(), 4, sizes.address) for row in long_values]
    heaps = {address: _heap_size(handle, address, sizes) for address in set(addresses)}
    for row, address in zip(long_values, addresses, strict=True):
        _refuse_beyond(path, values.what, int(declared[row]), heaps[address])


def _refuse_beyond(path: Path, what: str, length: int, heap: int | None) -> None:
    if heap is None:
        where = "and points at no heap"
    elif length > heap:
        where = f"more than the heap it points at holds ({heap:,} bytes)"
    else:
        return
    raise InputError(
        f"the file is damaged: its {what} declares a value of {length:,} bytes, {where}; copy it again from the "
        "computer that recorded it",
        path,
    )


def _walk_heaps(handle: BinaryIO, path: Path, what: str, records: np.ndarray, sizes: _Sizes, walked: set[int]) -> None:
    """Refuse a global heap collection the ``records`` point at whose objects HDF5 would walk for ever (found by
    fuzzing: one object's size changed, the walk lands on an empty "object" of no size, and reading an attribute
    of the file hung the process)."""
    columns = np.zeros((len(records), 8), dtype=np.uint8)
    columns[:, : sizes.address] = records[:, 4 : 4 + sizes.address]
    for address in np.unique(columns.view("<u8").reshape(-1)).tolist():
        if address in walked:
            continue
        walked.add(address)
        if problem := _heap_problem(handle, address, sizes):
            raise InputError(
                f"the file is damaged: the heap that its {what} points at ({problem}) cannot be read; copy it "
                "again from the computer that recorded it",
                path,
            )


#: The most objects a global heap collection holds (their index is 16-bit).
MAX_HEAP_OBJECTS = 65_535


def _heap_problem(handle: BinaryIO, address: int, sizes: _Sizes) -> str | None:
    """What stops a walk over the objects of the global heap collection at ``address`` as HDF5 walks them (each
    object: index, references, 4 reserved bytes, size, then its data padded to 8 bytes; object 0, the free space,
    spans its size whole), or None; a collection that is not there is left to HDF5, which refuses it."""
    size = _heap_size(handle, address, sizes)
    if size is None:
        return None
    header = 8 + sizes.length
    at, objects = header, 0
    while at + header <= size:  # a tail too small for an object's header is free space
        handle.seek(address + at)  # the objects' headers only: a damaged collection may declare gigabytes
        found = handle.read(header)
        index, length = int.from_bytes(found[:2], "little"), _number(found, 8, sizes.length)
        step = header + -(-length // 8) * 8 if index else length
        objects += 1
        if step <= 0 or at + step > size or objects > MAX_HEAP_OBJECTS:
            return f"object {index} at byte {at} of {size:,} declares {length:,} bytes"
        at += step
    return None


def _heap_size(handle: BinaryIO, address: int, sizes: _Sizes) -> int | None:
    """The size of the global heap collection at ``address``, or None when there is none that fits the file."""
    if address + 8 + sizes.length > sizes.file:  # beyond the file (a seek there can fail): HDF5 refuses it
        return None
    handle.seek(address)
    header = handle.read(8 + sizes.length)  # "GCOL", version, 3 reserved bytes, the collection's size
    if len(header) < 8 + sizes.length or header[:4] != b"GCOL":
        return None
    size = _number(header, 8, sizes.length)
    return size if address + size <= sizes.file else None


# --- object headers (the format specification's section IV.A) ----------------------------------------


def _header_values(handle: BinaryIO, name: str, address: int, sizes: _Sizes) -> Iterator[_Values]:
    """The variable-length values in the attribute messages of one object's header, and a compact dataset's."""
    datatype, compact = b"", None
    for kind, start, size in _messages(handle, address, sizes):
        handle.seek(start)
        body = handle.read(size)
        if kind == _ATTRIBUTE:
            yield from _attribute_values(body, start, name, sizes)
        elif kind == _DATATYPE:
            datatype = body
        elif kind == _LAYOUT and len(body) >= 4 and body[0] in (3, 4) and body[1] == _COMPACT_LAYOUT:
            compact = (start + 4, struct.unpack_from("<H", body, 2)[0])  # the data lie in the header
    if compact and (value_size := _declared_value_size(datatype)) and (count := compact[1] // sizes.record):
        yield _Values(f"dataset '{name}'", compact[0], count, value_size)


def _messages(handle: BinaryIO, address: int, sizes: _Sizes) -> Iterator[tuple[int, int, int]]:
    """(type, body offset, body size) of each message of the header at ``address``, continuations followed.

    Stops quietly at anything that does not parse: HDF5 then says what is wrong when it reads the file.
    """
    handle.seek(address)
    start = handle.read(16)
    if start[:4] == b"OHDR" and len(start) == 16:
        flags = start[5]
        blocks = [_first_chunk_v2(flags, address, handle)]
        prefix = 4 + (2 if flags & 0x04 else 0)  # type, size, flags, and the creation order when it is tracked
    elif len(start) == 16 and start[0] == 1:
        blocks, prefix = [(address + 16, struct.unpack_from("<I", start, 8)[0])], 0
    else:
        return
    seen = 0
    while blocks and seen < MAX_MESSAGES:
        block_start, block_size = blocks.pop(0)
        if block_start < 0 or not 0 <= block_size <= MAX_BLOCK_BYTES or block_start + block_size > sizes.file:
            return
        handle.seek(block_start)
        block = handle.read(block_size)
        for kind, offset, size in _block_messages(block, prefix):
            seen += 1
            if kind == _CONTINUATION and size >= sizes.address + sizes.length:
                body = block[offset : offset + size]
                blocks.append((_number(body, 0, sizes.address), _number(body, sizes.address, sizes.length)))
            yield kind, block_start + offset, size


def _first_chunk_v2(flags: int, address: int, handle: BinaryIO) -> tuple[int, int]:
    position = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)  # times, attribute phase change
    width = 1 << (flags & 0x03)
    handle.seek(address + position)
    return address + position + width, int.from_bytes(handle.read(width), "little")


def _block_messages(block: bytes, prefix: int) -> Iterator[tuple[int, int, int]]:
    """(type, body offset in the block, body size) of the messages of one header block; ``prefix`` is a
    version-2 message's header size, 0 for version 1 (whose is 8 bytes)."""
    position = 0
    if prefix and block[:4] == b"OCHK":  # a version-2 continuation block: its signature, its checksum at the end
        block, position = block[:-4], 4
    while position + (prefix or 8) <= len(block):
        if prefix:
            kind, size = struct.unpack_from("<BH", block, position)
        else:
            kind, size = struct.unpack_from("<HH", block, position)
        body = position + (prefix or 8)
        if body + size > len(block):
            return
        yield kind, body, size
        position = body + size


def _number(data: bytes, at: int, width: int) -> int:
    return int.from_bytes(data[at : at + width], "little")


def _attribute_values(body: bytes, start: int, owner: str, sizes: _Sizes) -> Iterator[_Values]:
    """The values of one attribute message, when they are variable-length (and its datatype is its own)."""
    if len(body) < 8 or body[0] not in (1, 2, 3):
        return
    version, flags = body[0], body[1]
    name_size, type_size, space_size = struct.unpack_from("<HHH", body, 2)
    if version > 1 and flags & 0x01:  # a shared (committed) datatype: not described here
        return
    padded = (lambda n: (n + 7) // 8 * 8) if version == 1 else (lambda n: n)
    name_at = 9 if version == 3 else 8
    type_at = name_at + padded(name_size)
    data_at = type_at + padded(type_size) + padded(space_size)
    datatype = body[type_at : type_at + type_size]
    value_size = _declared_value_size(datatype)
    if not value_size or data_at > len(body):
        return
    name = body[name_at : name_at + name_size].split(b"\0")[0].decode("utf-8", "replace")
    count = (len(body) - data_at) // sizes.record
    if count:
        yield _Values(f"attribute '{name}' of {owner}", start + data_at, count, value_size)


def _declared_value_size(datatype: bytes) -> int:
    """Bytes per element of a variable-length datatype message's values; 0 for other types."""
    if len(datatype) < 8 or datatype[0] & 0x0F != _VARIABLE_LENGTH_CLASS:
        return 0
    if datatype[1] & 0x0F == _VARIABLE_LENGTH_STRING:
        return 1
    return struct.unpack_from("<I", datatype, 12)[0] if len(datatype) >= 16 else 0  # the base type's size
