"""Fuzzing harness shared by tests/test_fuzz.py (a few hundred cases), bench/fuzz.py (1,000+ per format) and
bench/hdf5_sweep.py (every word of an HDF5 file's metadata).

Every format has a valid sample maker and the reader a user's file goes through.
Mutations: truncation, bit flips, a garbage header, and "huge declared sizes"
(a 4-byte window overwritten with a very large integer). A case passes when the
reader either reads the file or raises the project's own error with a message;
any other exception, a crash or a hang (over ``CASE_TIMEOUT_S``) is a finding.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import signal
import zipfile
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from ebsd_core.errors import EbsdError

CASE_TIMEOUT_S = 20
HUGE = [b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x80"]


@st.composite
def mutations(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "header", "huge"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    out = bytearray(data)
    if kind == "flip":
        for position, bit in draw(
            st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 7)), min_size=1, max_size=32)
        ):
            out[position] ^= 1 << bit
    elif kind == "header":
        length = draw(st.integers(1, min(64, len(data))))
        out[:length] = draw(st.binary(min_size=length, max_size=length))
    else:
        for _ in range(draw(st.integers(1, 4))):
            position = draw(st.integers(0, max(0, min(len(data), 4096) - 4)))
            out[position : position + 4] = draw(st.sampled_from(HUGE))
    return bytes(out)


@contextmanager
def time_limit(seconds: int):
    def alarm(signum, frame):
        raise TimeoutError(f"reader hung for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    # repeat every second: an alarm that lands in a gc callback is swallowed ("Exception ignored in ...")
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(read: Callable[[Path], object], path: Path, refusals: Counter | None = None) -> str:
    """'read' or 'refused' (its message counted in ``refusals``); anything else propagates (the test fails, the
    benchmark counts it)."""
    with time_limit(CASE_TIMEOUT_S):
        try:
            read(path)
        except EbsdError as exc:
            assert str(exc), "an error without a message"
            if refusals is not None:
                refusals[str(exc)] += 1
            return "refused"
    return "read"


#: A refusal that passes on Python's own words ("ValueError: not enough values to unpack"): where a reader's
#: failure has not been put in words a user can act on.
PYTHON_WORDS = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b:")


def python_words_summary(refusals: Counter) -> dict:
    """How many of ``refusals`` (message: count) pass on Python's own words, and the ten most frequent of them."""
    found = Counter({message: n for message, n in refusals.items() if PYTHON_WORDS.search(message)})
    return {
        "refused_in_python_words": found.total(),
        "python_words": {message[:200]: n for message, n in found.most_common(10)},
    }


# --- valid samples ---------------------------------------------------------------------------------


def _dataset(folder: Path) -> Path:
    from ebsd_core.io.dataset import Dataset, write_dataset

    rng = np.random.default_rng(0)
    ds = Dataset(rng.integers(0, 255, (6, 16, 16), dtype=np.uint8), [0, 1] * 3, [225, 229], ["ni", "w"] * 3)
    return write_dataset(ds, folder / "sample.h5")


def _h5ebsd(folder: Path) -> Path:
    import kikuchipy as kp

    rng = np.random.default_rng(0)
    signal = kp.signals.EBSD(rng.integers(0, 255, (2, 3, 16, 16), dtype=np.uint8))
    path = folder / "sample.h5ebsd"
    signal.save(str(path), overwrite=True)
    return path


def _kikuchipy_example(relative: str) -> Callable[[Path], Path]:
    """A copy of a vendor example file kikuchipy ships (``relative`` to its ``data`` folder)."""

    def make(folder: Path) -> Path:
        import importlib.util

        shipped = Path(importlib.util.find_spec("kikuchipy").origin).parent / "data" / relative
        path = folder / shipped.name
        shutil.copyfile(shipped, path)
        return path

    return make


def _kikuchipy_test_file(writer: str, name: str) -> Callable[[Path], Path]:
    """A file written by one of kikuchipy's test writers (``module.function`` in ``kikuchipy.data._dummy_files``)."""

    def make(folder: Path) -> Path:
        import importlib

        module, function = writer.split(".")
        path = folder / name
        getattr(importlib.import_module(f"kikuchipy.data._dummy_files.{module}"), function)(path)
        return path

    return make


def _png(folder: Path) -> Path:
    from PIL import Image

    path = folder / "sample.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24), dtype=np.uint8)).save(path)
    return path


def _tiff(folder: Path) -> Path:
    from PIL import Image

    path = folder / "sample.tif"
    Image.fromarray(np.random.default_rng(0).integers(0, 65535, (24, 24), dtype=np.uint16)).save(path)
    return path


def _tiff_stack(folder: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    pages = [Image.fromarray(rng.integers(0, 65535, (16, 16), dtype=np.uint16)) for _ in range(4)]
    path = folder / "stack.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


def _zip(folder: Path) -> Path:
    from PIL import Image

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for cls in ("Fm-3m", "Im-3m"):
            for i in range(2):
                image = io.BytesIO()
                pattern = np.full((16, 16), 40 * i + 10, np.uint8) + np.arange(16, dtype=np.uint8)  # not blank
                Image.fromarray(pattern).save(image, format="PNG")
                archive.writestr(f"{cls}/{i}.png", image.getvalue())
    path = folder / "sample.zip"
    path.write_bytes(buffer.getvalue())
    return path


def _model(folder: Path) -> Path:
    from ebsd_core.backbones import create_model
    from ebsd_core.preprocess import PreprocessConfig
    from ebsd_core.store import META, ModelCard, save_model

    model = create_model("efficientnet_lite0", 2, pretrained=False)
    saved = save_model(model, ModelCard("efficientnet_lite0", [225, 229], PreprocessConfig(size=32)), folder / "m")
    return saved / META


def _model_zip(folder: Path) -> Path:
    """A model as the Results page downloads it (a small backbone: the weights are fuzzed byte by byte)."""
    from ebsd_core.backbones import create_model
    from ebsd_core.preprocess import PreprocessConfig
    from ebsd_core.store import ModelCard, save_model

    backbone = "mobilenetv3_small_050"
    card = ModelCard(backbone, [225, 229], PreprocessConfig(size=32))
    saved = save_model(create_model(backbone, 2, pretrained=False), card, folder / "small")
    path = folder / "small.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in saved.iterdir():
            archive.write(file, f"small/{file.name}")
    return path


def _ang(folder: Path) -> Path:
    lines = ["# GRID: SqrGrid", "# XSTEP: 1.0", "# YSTEP: 1.0", "# NCOLS_ODD: 3", "# NCOLS_EVEN: 3", "# NROWS: 2"]
    for pid, name in ((1, "austenite"), (2, "ferrite")):
        lines += [
            f"# Phase {pid}",
            f"# MaterialName {name}",
            "# Symmetry 43",
            "# LatticeConstants 3.6 3.6 3.6 90 90 90",
        ]
    rows = [f"0.1 0.2 0.3 {x:.1f} {y:.1f} 30.0 0.8 {1 + (x + y) % 2:.0f} 1.0 0.5" for y in range(2) for x in range(3)]
    path = folder / "sample.ang"
    path.write_text("\n".join(lines + rows) + "\n")
    return path


def _cif(folder: Path) -> Path:
    """A CIF file of Ni3Al (L1_2, two sites), as the Data page and simulate --cif read it."""
    path = folder / "sample.cif"
    path.write_text(
        "data_ni3al\n_cell_length_a 3.572\n_cell_length_b 3.572\n_cell_length_c 3.572\n_cell_angle_alpha 90\n"
        "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P m -3 m'\n"
        "_symmetry_Int_Tables_number 221\nloop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
        "_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\nAl1 Al 0 0 0 1\nNi1 Ni 0 0.5 0.5 1\n"
    )
    return path


def read_cif(path: Path) -> None:
    from ebsd_core.phases import phase_from_cif

    phase_from_cif(path)


def _ctf(folder: Path) -> Path:
    """An AZtec-style .ctf of 2x3 points, two phases, one point not indexed (phase 0)."""
    lines = [
        "Channel Text File",
        "Prj\tsample",
        "JobMode\tGrid",
        "XCells\t3",
        "YCells\t2",
        "XStep\t1.0",
        "YStep\t1.0",
        "AcqE1\t0",
        "AcqE2\t0",
        "AcqE3\t0",
        "Euler angles refer to Sample Coordinate system (CS0)!\tMag\t100\tCoverage\t100\tDevice\t0\tKV\t20"
        "\tTiltAngle\t70\tTiltAxis\t0",
        "Phases\t2",
        "3.6;3.6;3.6\t90;90;90\taustenite\t11\t225",
        "2.87;2.87;2.87\t90;90;90\tferrite\t11\t229",
        "Phase\tX\tY\tBands\tError\tEuler1\tEuler2\tEuler3\tMAD\tBC\tBS",
    ]
    point = "{phase}\t{x:.1f}\t{y:.1f}\t8\t0\t10.0\t20.0\t30.0\t0.5\t120\t140"
    rows = [point.format(phase=(x + y) % 3, x=x, y=y) for y in range(2) for x in range(3)]
    path = folder / "sample.ctf"
    path.write_text("\n".join(lines + rows) + "\n")
    return path


def _nordif(folder: Path, name: str) -> Path:
    """A real NORDIF acquisition shipped with kikuchipy (Pattern.dat, Setting.txt, static background); ``name`` is
    the file to mutate, the others stay beside it."""
    import kikuchipy

    shipped = Path(kikuchipy.__file__).parent / "data" / "nordif"
    for file in ("Pattern.dat", "Setting.txt", "Background acquisition pattern.bmp"):
        shutil.copy(shipped / file, folder / file)
    return folder / name


# --- readers -----------------------------------------------------------------------------------------


def read_patterns(path: Path) -> None:
    from ebsd_core.io.readers import open_patterns

    source = open_patterns(path)
    source.batch(0, min(len(source), 4))


def read_patterns_and_indexing(path: Path) -> None:
    """A scan file's patterns, and its indexing as ``--orientations`` reads it."""
    from ebsd_core.io.orientations import read_orientations

    read_patterns(path)
    read_orientations(path, 9)


def read_patterns_streamed(path: Path) -> None:
    """As a folder or zip of images too large to decode when opened is read: every pattern, batch by batch."""
    from ebsd_core.io import images
    from ebsd_core.io.readers import open_patterns

    limit, images.IN_MEMORY_BYTES = images.IN_MEMORY_BYTES, 0
    try:
        source = open_patterns(path)
        source.batch(0, len(source))
    finally:
        images.IN_MEMORY_BYTES = limit


def read_nordif(path: Path) -> None:
    """A NORDIF acquisition folder, read as the Server path tab and the command line read it."""
    read_patterns(path.parent)


def read_model_json(meta: Path) -> None:
    from ebsd_core.store import load_model

    load_model(meta.parent)


def import_model_zip(path: Path) -> None:
    """Added to a store beside it, or refused; either way nothing half-made is left in the store."""
    from ebsd_core.store import import_model

    store = path.parent / "store"
    try:
        import_model(path, store=store, force=True)
    finally:
        leftovers = [p.name for p in store.glob(".*") if p.is_dir()] if store.exists() else []
        assert not leftovers, f"left in the store: {leftovers}"


def read_indexing(path: Path) -> None:
    """An indexing file as ``--orientations`` and the Phase map page read it, for a scan of 6 points."""
    from ebsd_core.io.orientations import read_orientations

    read_orientations(path, 6)


def read_layout(path: Path) -> None:
    from ebsd_core.simulate_map import layout_from_ang

    layout_from_ang(path)


@dataclass(frozen=True)
class Format:
    make: Callable[[Path], Path]
    read: Callable[[Path], None]
    with_folder: bool = False  # the sample is read with the files beside it: each case gets a copy of its folder


FORMATS: dict[str, Format] = {
    "project-hdf5": Format(_dataset, read_patterns),
    "kikuchipy-h5ebsd": Format(_h5ebsd, read_patterns),
    # H5OINA: 3x3 Ni patterns of 60x60 px with AZtec's indexing of two grains; OIM h5: 3x3 patterns with indexing
    "oxford-h5oina": Format(
        _kikuchipy_test_file("oxford_h5ebsd.create_dummy_oxford_h5ebsd_file", "sample.h5oina"),
        read_patterns_and_indexing,
    ),
    "edax-oim-h5": Format(_kikuchipy_example("edax_h5ebsd/patterns.h5"), read_patterns_and_indexing),
    "edax-up1": Format(_kikuchipy_example("edax_binary/edax_binary.up1"), read_patterns),
    "edax-up2": Format(_kikuchipy_example("edax_binary/edax_binary.up2"), read_patterns),
    "oxford-ebsp": Format(_kikuchipy_example("oxford_binary/patterns.ebsp"), read_patterns),
    "emsoft-h5": Format(_kikuchipy_example("emsoft_ebsd/simulated_ebsd.h5"), read_patterns),
    "bruker-h5": Format(
        _kikuchipy_test_file("bruker_h5ebsd.create_dummy_bruker_h5ebsd_file", "sample.h5"), read_patterns
    ),
    "png": Format(_png, read_patterns),
    "tiff-16bit": Format(_tiff, read_patterns),
    "tiff-stack": Format(_tiff_stack, read_patterns),
    "zip": Format(_zip, read_patterns),
    "zip-streamed": Format(_zip, read_patterns_streamed),
    "model-json": Format(_model, read_model_json, with_folder=True),
    "nordif-setting": Format(lambda folder: _nordif(folder, "Setting.txt"), read_nordif, with_folder=True),
    "nordif-dat": Format(lambda folder: _nordif(folder, "Pattern.dat"), read_nordif, with_folder=True),
    "model-zip": Format(_model_zip, import_model_zip),
    "ang-layout": Format(_ang, read_layout),
    "ang-orientations": Format(_ang, read_indexing),
    "ctf-orientations": Format(_ctf, read_indexing),
    "cif": Format(_cif, read_cif),
}


def json_mutations(meta: bytes):
    """Structured mutations of model.json: dropped keys, wrong types, out-of-range values."""
    data = json.loads(meta)
    keys = sorted(data)
    values = st.one_of(
        st.none(), st.integers(-(2**40), 2**40), st.text(max_size=8), st.lists(st.integers(), max_size=3)
    )

    @st.composite
    def mutate(draw):
        changed = dict(data)
        for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3)):
            if draw(st.booleans()):
                changed.pop(key, None)
            else:
                changed[key] = draw(values)
        return json.dumps(changed).encode()

    return mutate()


def case_file(name: str, sample: Path, folder: Path):
    """Where the cases of a format are written (in ``folder``, with a copy of the sample's folder when the format
    needs it) and the mutations drawn for them."""
    original = sample.read_bytes()
    if FORMATS[name].with_folder:
        shutil.copytree(sample.parent, folder, dirs_exist_ok=True)
    else:
        folder.mkdir(parents=True, exist_ok=True)
    strategy = mutations(original)
    if name == "model-json":
        strategy = st.one_of(strategy, json_mutations(original))
    return folder / sample.name, strategy
