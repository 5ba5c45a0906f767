"""Shared fixtures: paths to the real data beside the project, tiny datasets."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EBSD_SHARED_DATA", ROOT.parent / "shared" / "data"))
REAL_NI = SHARED / "real" / "ni_kikuchipy_small" / "patterns.h5"
REAL_SI = SHARED / "real" / "si_kikuchipy_moving_screen" / "si_in.h5"
REAL_FE = SHARED / "real" / "fe_astroebsd" / "astroebsd_Fe_pattern_1.tif"
SDSS_LAYOUT = SHARED / "layouts" / "sdss_ferrite_austenite.ang"
_KIKUCHIPY = importlib.util.find_spec("kikuchipy")
#: The example files kikuchipy ships (vendor formats, a real NORDIF acquisition), found without importing it.
#: None where kikuchipy is not installed (a GPU machine that runs the engine's tests alone).
KIKUCHIPY_DATA = Path(_KIKUCHIPY.origin).parent / "data" if _KIKUCHIPY else None

torch.set_num_threads(2)


#: Where the simulated fixtures are kept, when set: read from there where kikuchipy, which simulates, is not installed
#: (the GPU machine of bench/gpu_checks.sh), written there first where it is.
SIMULATED = os.environ.get("EBSD_TEST_SIMULATED")


def simulated(name: str, make):
    """The dataset ``make()`` simulates, or its copy kept in ``EBSD_TEST_SIMULATED``."""
    if not SIMULATED:
        return make()
    from ebsd_core.io.dataset import read_dataset, write_dataset

    kept = Path(SIMULATED) / f"{name}.h5"
    if not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        write_dataset(make(), kept)
    return read_dataset(kept)


def shared_file(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available at {path}")
    return path


def unwritable(monkeypatch, folder: Path) -> None:
    """Nothing can be made, removed or moved in ``folder``, as for a server account that may only read it (root, which
    runs CI, may write anywhere): the store's check, the housekeeping's removals and opening a file there to write are
    refused."""
    import builtins
    import shutil
    from types import SimpleNamespace

    from ebsd_core import home_folder, housekeeping, store
    from ebsd_core.errors import InputError

    def check_writable_folder(path, target=None):
        if Path(path).is_relative_to(folder):
            raise InputError(f"cannot write in {path} (Permission denied)", target or path)

    def rmtree(path, ignore_errors=False):
        if not Path(path).is_relative_to(folder):
            return shutil.rmtree(path, ignore_errors=ignore_errors)
        if not ignore_errors:
            raise PermissionError(13, "Permission denied", str(path))

    def unlink(path: Path, missing_ok: bool = False) -> None:
        if path.is_relative_to(folder):
            raise PermissionError(13, "Permission denied", str(path))
        real_unlink(path, missing_ok=missing_ok)

    def written(path) -> bool:
        return isinstance(path, str | os.PathLike) and Path(path).is_relative_to(folder)

    def open_file(file, mode="r", *args, **kwargs):
        if written(file) and set(mode) & set("wax+"):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    def open_descriptor(path, flags, *args, **kwargs):
        if written(path) and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_os_open(path, flags, *args, **kwargs)

    real_unlink, real_open, real_os_open = Path.unlink, builtins.open, os.open
    monkeypatch.setattr(builtins, "open", open_file)
    monkeypatch.setattr(os, "open", open_descriptor)
    monkeypatch.setattr(store, "check_writable_folder", check_writable_folder)
    for module in (home_folder, store):
        monkeypatch.setattr(module, "may_write_in", lambda path: not Path(path).is_relative_to(folder))
    monkeypatch.setattr(housekeeping, "shutil", SimpleNamespace(rmtree=rmtree))
    monkeypatch.setattr(Path, "unlink", unlink)


def unreadable(monkeypatch, *paths: Path) -> None:
    """The system refuses to read ``paths``, as for an account without read permission there (root, which runs CI,
    may read anything): a folder is not listed and nothing in it is looked at; a file's bytes are not read."""
    import builtins
    import io

    closed = [Path(os.path.realpath(p)) for p in paths]
    folders = [p for p in closed if p.is_dir()]

    def where(path, follow_symlinks: bool = True) -> Path | None:
        """Where ``path`` leads, links followed (a link into a closed folder cannot be entered either)."""
        if not isinstance(path, str | bytes | os.PathLike):  # a descriptor
            return None
        path = Path(os.fsdecode(path))
        if follow_symlinks:
            return Path(os.path.realpath(path))
        return Path(os.path.realpath(path.parent)) / path.name  # the link itself (lstat)

    def inside(path, follow_symlinks: bool = True) -> bool:
        target = where(path, follow_symlinks)
        return target is not None and any(folder in target.parents for folder in folders)

    def refused(path, follow_symlinks: bool = True) -> bool:
        return inside(path, follow_symlinks) or where(path, follow_symlinks) in closed

    def guarded(real, refuse):
        def call(path=".", *args, **kwargs):
            if refuse(path, kwargs.get("follow_symlinks", True)):
                raise PermissionError(13, "Permission denied", os.fsdecode(path))
            return real(path, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "scandir", guarded(os.scandir, refused))
    monkeypatch.setattr(os, "listdir", guarded(os.listdir, refused))
    monkeypatch.setattr(os, "stat", guarded(os.stat, inside))  # the folder itself is seen, as without read permission
    monkeypatch.setattr(builtins, "open", guarded(builtins.open, refused))
    monkeypatch.setattr(io, "open", guarded(io.open, refused))  # Path.read_bytes and Path.open's
    monkeypatch.setattr(os, "open", guarded(os.open, refused))


def not_utf8_folder(parent: Path) -> Path:
    """A folder named ``caf\xe9`` (Latin-1, as copied from an old Windows share); skips where the file system takes
    UTF-8 names alone (macOS)."""
    try:
        os.mkdir(os.path.join(os.fsencode(parent), b"caf\xe9"))
    except OSError:
        pytest.skip("this file system takes UTF-8 names alone")
    return parent / os.fsdecode(b"caf\xe9")


def scan_as_images(scan_file: Path, folder: Path, name: str = "x{column}_y{row}.png", count: int = 80) -> Path:
    """The first ``count`` patterns of the 8 x 10 ``map_scan_file`` exported as images into ``folder``, each named
    ``name`` formatted with its ``index``, ``number`` (from 1), ``row`` and ``column``."""
    from PIL import Image

    from ebsd_core.io.readers import open_patterns

    folder.mkdir()
    for index, pattern in enumerate(open_patterns(scan_file).batch(0, count)):
        row, column = divmod(index, 10)
        Image.fromarray(pattern).save(folder / name.format(index=index, number=index + 1, row=row, column=column))
    return folder


def as_hexagonal_grid(folder: Path) -> Path:
    """The images ``x{column}_y{row}.png`` of ``folder`` thinned to a hexagonal grid, as named in half steps: each row
    keeps every other column, the next row the others (``x0_y0``, ``x2_y0``, ..., ``x1_y1``, ``x3_y1``, ...)."""
    for image in folder.glob("x*_y*.png"):
        column, row = (int(v) for v in image.stem[1:].split("_y"))
        if (row + column) % 2:
            image.unlink()
    return folder


def damage_pixels(path: Path) -> None:
    """Zeros in the middle of a PNG's compressed pixels: its header and its length whole, its pixels not (found only
    when it is decoded)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = bytes(8)
    path.write_bytes(bytes(data))


#: A test of 24 patterns (the duplex model's classes) read 5 right, every ferrite pattern Fm-3m.
WEAK_TEST = {"patterns": 24, "accuracy": 5 / 24, "classes": ["Fm-3m", "Im-3m"], "confusion_matrix": [[5, 7], [12, 0]]}


def with_test_score(model: Path, folder: Path, test: dict) -> Path:
    """A copy of ``model`` in ``folder`` whose card records ``test`` as its own test's metrics."""
    import json
    import shutil

    shutil.copytree(model, folder)
    card = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps(card | {"metrics": {"test": test}}))
    return folder


def scan_indexing(path: Path, rotations=None, points: int = 80, columns: int = 10) -> Path:
    """A Hough indexing of a scan of ``points`` points in rows of ``columns`` (random ``rotations`` unless given), as
    the microscope's software writes it, at ``path`` (.ang, .ctf)."""
    from orix import io as orix_io
    from orix.crystal_map import CrystalMap
    from orix.quaternion import Rotation

    rows, cols = np.divmod(np.arange(points), columns)
    rotations = Rotation.random(points) if rotations is None else rotations
    orix_io.save(str(path), CrystalMap(rotations=rotations, x=cols * 1.0, y=rows * 1.0))
    return path


def oim_indexing(
    path: Path,
    places,
    step: float = 0.5,
    newline: str = "\n",
    seed: int = 0,
    phases: int = 1,
    hexagonal: bool = True,
) -> Path:
    """An EDAX .ang as OIM writes one, of points at ``places`` in the scan's order, ``step`` µm apart along a row: on a
    hexagonal grid (row, half-step column) or a square one (row, column). Its header (a phase of hkl families), random
    orientations, image quality, CI, phases (1 to ``phases``), SEM signal and fit, in fixed-width columns, lines ending
    ``newline``."""
    rng = np.random.default_rng(seed)
    places = np.asarray(places)
    per_row = np.bincount(places[:, 0])
    x = places[:, 1] * step / (2 if hexagonal else 1)
    y = places[:, 0] * step * (np.sqrt(3) / 2 if hexagonal else 1)
    header = [
        "# TEM_PIXperUM          1.000000",
        "# x-star                0.501900",
        "# y-star                0.728000",
        "# z-star                0.675400",
        "# WorkingDistance       15.000000",
        "#",
        "# Phase 1",
        "# MaterialName  \tNickel",
        "# Formula     \tNi",
        "# Info \t\t",
        "# Symmetry              43",
        "# LatticeConstants      3.520 3.520 3.520  90.000  90.000  90.000",
        "# NumberFamilies        2",
        "# hklFamilies   \t 1  1  1 1 0.000000",
        "# hklFamilies   \t 2  0  0 1 0.000000",
        "# ElasticConstants \t0.000000 0.000000 0.000000 0.000000 0.000000 0.000000",
        "# Categories1 1 1 1 1",
        "#",
        f"# GRID: {'HexGrid' if hexagonal else 'SqrGrid'}",
        f"# XSTEP: {step:.6f}",
        f"# YSTEP: {step * (np.sqrt(3) / 2 if hexagonal else 1):.6f}",
        f"# NCOLS_ODD: {per_row[0]}",
        f"# NCOLS_EVEN: {per_row[1] if len(per_row) > 1 else per_row[0]}",
        f"# NROWS: {len(per_row)}",
        "#",
        "# OPERATOR: \tJ. M\u00fcller",
        "#",
        "# SAMPLEID: \tduplex",
        "#",
        "# SCANID: \t",
        "#",
    ]
    eulers = rng.uniform(0, [2 * np.pi, np.pi, 2 * np.pi], size=(len(places), 3))
    lines = [
        f"{e[0]:9.5f} {e[1]:9.5f} {e[2]:9.5f} {point_x:12.5f} {point_y:12.5f} "
        f"{rng.uniform(100, 2000):.1f}  {rng.uniform(0, 1):.3f}  {rng.integers(1, phases + 1)} {0:6d}  "
        f"{rng.uniform(0.3, 2):.3f}"
        for e, point_x, point_y in zip(eulers, x, y)
    ]
    path.write_bytes(newline.join([*header, *lines, ""]).encode("cp1252"))
    return path


def oxford_indexing(
    path: Path, rows: int, columns: int, step: float = 0.5, newline: str = "\r\n", seed: int = 0
) -> Path:
    """An Oxford .ctf as AZtec writes one, of a map of ``rows`` x ``columns`` points ``step`` µm apart: its header
    (a project's Windows path, two phases), random orientations in degrees, bands, error, MAD, band contrast and
    slope, every tenth point not indexed (phase 0, error 3), lines ending ``newline``."""
    rng = np.random.default_rng(seed)
    header = [
        "Channel Text File",
        "Prj\tC:\\Users\\J\u00fcrgen\\Probe 1.cpr",
        "Author\t[Unknown]",
        "JobMode\tGrid",
        f"XCells\t{columns}",
        f"YCells\t{rows}",
        f"XStep\t{step:.4f}",
        f"YStep\t{step:.4f}",
        "AcqE1\t0.0000",
        "AcqE2\t0.0000",
        "AcqE3\t0.0000",
        "Euler angles refer to Sample Coordinate system (CS0)!\tMag\t2000.0000\tCoverage\t100\tDevice\t0\tKV\t20.0000"
        "\tTiltAngle\t70.0000\tTiltAxis\t0\tDetectorOrientationE1\t0\tDetectorOrientationE2\t0",
        "Phases\t2",
        "3.5240;3.5240;3.5240\t90.0000;90.0000;90.0000\tNickel\t11\t225\t\t\tCreated from nickel.cry",
        "3.5700;3.5700;3.5700\t90.0000;90.0000;90.0000\tNi3Al\t11\t221\t\t\tCreated from ni3al.cry",
        "Phase\tX\tY\tBands\tError\tEuler1\tEuler2\tEuler3\tMAD\tBC\tBS",
    ]
    lines = []
    for point in range(rows * columns):
        row, column = divmod(point, columns)
        indexed = point % 10 != 9
        euler = rng.uniform(0, [360, 180, 360]) if indexed else np.zeros(3)
        lines.append(
            f"{rng.integers(1, 3) if indexed else 0}\t{column * step:.4f}\t{row * step:.4f}\t{rng.integers(6, 12)}"
            f"\t{0 if indexed else 3}\t{euler[0]:.4f}\t{euler[1]:.4f}\t{euler[2]:.4f}\t{rng.uniform(0.2, 1):.4f}"
            f"\t{rng.integers(50, 200)}\t{rng.integers(50, 200)}"
        )
    path.write_bytes(newline.join([*header, *lines, ""]).encode("cp1252"))
    return path


#: The ``EBSD_*`` variables that are the test run's own (read as its modules are imported); the others are a lab's
#: server settings, which ``make test`` run in the lab's shell must not take: models saved into the lab's store, its
#: data root listed.
TEST_VARIABLES = ("EBSD_SHARED_DATA", "EBSD_TEST_SIMULATED", "EBSD_FUZZ_CASES")


@pytest.fixture(scope="session", autouse=True)
def _isolated_session_home(tmp_path_factory):
    """Module and session fixtures, which run before any test's own home is set, work in a temporary folder too:
    they wrote to the user's ``~/.ebsd_fewshot``, whose record of the stores saved to then outlived the run, and a
    later run given the same temporary folder was told its new store was a lost one. The model store is a temporary
    one unless a test sets its own, and the server's other settings are unset."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("EBSD_") and name not in TEST_VARIABLES]:
            patch.delenv(name)
        patch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path_factory.mktemp("session-home")))
        patch.setenv("EBSD_MODEL_STORE", str(tmp_path_factory.mktemp("session-store")))
        yield


@pytest.fixture(scope="session", autouse=True)
def _no_lab_streamlit_settings(tmp_path_factory):
    """The dashboards the tests run, in this process and in a server of their own, read an empty secrets file, not
    the password a lab set in this checkout's ``.streamlit/secrets.toml`` (or the account's): with one set, ``make
    test`` on the lab's server failed every page test at the password form. Nor do they take the ``STREAMLIT_*``
    settings of the shell (a lab's ``STREAMLIT_SERVER_BASE_URL_PATH=ebsd`` failed the browser tests). A test gives
    its own (AppTest's ``secrets``, ``--secrets.files``)."""
    empty = tmp_path_factory.mktemp("secrets") / "none.toml"
    empty.write_text("")
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("STREAMLIT_")]:
            patch.delenv(name)
        patch.setenv("STREAMLIT_SECRETS_FILES", str(empty))
        if importlib.util.find_spec("streamlit") is None:
            yield
            return
        from streamlit import config

        kept = config.get_option("secrets.files")
        config.set_option("secrets.files", [str(empty)])
        yield
        config.set_option("secrets.files", kept)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """User caches (masters of CIF phases, jobs) go to a temporary folder."""
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(autouse=True)
def _warm_streamlit_server(request, monkeypatch):
    """Dashboard tests run as on a server that is already up (``serving.as_running_server``), unless marked
    ``cold_server``."""
    if "cold_server" in request.keywords or importlib.util.find_spec("streamlit") is None:
        return
    from serving import as_running_server
    from streamlit.runtime.pages_manager import PagesManager

    monkeypatch.setattr(PagesManager, "__init__", as_running_server(PagesManager.__init__))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Six classes x 12 patterns of 32x32 plus a held-out material, simulated once."""
    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset

    dataset = simulated("tiny", lambda: simulate_dataset(per_class=12, size=32, seed=3, holdout_materials=["cu", "w"]))
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    write_dataset(dataset, path)
    return path


@pytest.fixture(scope="session")
def map_model(tmp_path_factory):
    """A tiny austenite (Fm-3m) / ferrite (Im-3m) model saved in a store folder."""
    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.store import save_model
    from ebsd_core.train import TrainConfig, train_model

    phases = ["austenite", "ferrite"]
    dataset = simulated("duplex", lambda: simulate_dataset(per_class=24, phases=phases, size=32, seed=5))
    config = TrainConfig(shots=8, epochs=2, input_size=32, batch_size=8, min_steps_per_epoch=2, val_per_class=4)
    result = train_model(dataset, config)
    return save_model(result.model, result.card, tmp_path_factory.mktemp("store") / "duplex")


@pytest.fixture(scope="session")
def map_scan_file(tmp_path_factory):
    """A simulated 8x10 austenite/ferrite scan of 32x32 patterns with ground truth."""
    from ebsd_core.io.dataset import write_dataset
    from ebsd_core.phases import get_material
    from ebsd_core.simulate_map import simulate_scan, voronoi_layout

    def scan():
        layout = voronoi_layout([get_material("austenite"), get_material("ferrite")], (8, 10), grain_size=4, seed=2)
        return simulate_scan(layout, size=32, seed=1)

    path = tmp_path_factory.mktemp("scans") / "duplex_scan.h5"
    write_dataset(simulated("duplex_scan", scan), path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)
