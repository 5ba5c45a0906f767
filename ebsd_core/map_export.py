"""Write phase maps for other tools: .ang (MTEX, OIM), orix .h5, .ctf (AZtec, Channel 5), CSV and PNG.

Every writer goes through :func:`ebsd_core.atomic.atomic_path`, so an export
that fails half-way never leaves a partial file under its final name.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ebsd_core.atomic import atomic_path
from ebsd_core.errors import InputError
from ebsd_core.figures import pyplot
from ebsd_core.inference import UNKNOWN
from ebsd_core.io.hex_grid import ROW_HEIGHT, brick_image, brick_shape
from ebsd_core.io.orientations import ANG_CONFIDENCE_COLUMN, ANG_PHASE_COLUMN
from ebsd_core.phasemap import UNKNOWN_COLOUR, MapPhase, PhaseMap
from ebsd_core.predictions import GridPoints
from ebsd_core.wording import counted, percent

EXPORT_FORMATS = {
    ".ang": "EDAX TSL .ang (OIM Analysis, MTEX, orix)",
    ".ctf": "Oxford Channel Text File .ctf (AZtec, Channel 5, MTEX, orix)",
    ".h5": "orix HDF5 crystal map",
    ".csv": "CSV table, one row per point",
    ".png": "image of the map with legend and scale bar",
}
#: Exports that may be a microscope's own indexing of a scan (or the scan): replaced only when asked to
#: (``phasemap --force``; found on review: ``--out scan.ang`` beside scan.up2 replaced OIM's indexing of it).
INDEXING_SUFFIXES = (".ang", ".ctf", ".h5")


def write_ang(phase_map: PhaseMap, path: Path) -> None:
    """The map as an .ang: the scan's own (:meth:`~ebsd_core.phasemap.PhaseMap.own_indexing`) with the model's
    phases where its orientations came from one, else one that orix writes."""
    if (own := phase_map.own_indexing(".ang")) is not None:
        ang_with_phases(phase_map.index, phase_map.phases, own, path)
        return
    from orix import io as orix_io

    xmap = phase_map.to_crystal_map()
    orix_io.save(str(path), xmap, overwrite=True, image_quality_prop="iq", confidence_index_prop="confidence")


def write_orix_h5(phase_map: PhaseMap, path: Path) -> None:
    from orix import io as orix_io

    orix_io.save(str(path), phase_map.to_crystal_map(), overwrite=True)


def ctf_text(phase_map: PhaseMap) -> str:
    """The map as an Oxford Channel Text File; phase 0 means not indexed, as in AZtec."""
    rows, cols = phase_map.nav_shape
    step = phase_map.step_um
    out = io.StringIO()
    header = [
        "Channel Text File",
        "Prj\tebsd_fewshot phase map",
        "Author\tebsd_fewshot",
        "JobMode\tGrid",
        f"XCells\t{cols}",
        f"YCells\t{rows}",
        f"XStep\t{step:.4f}",
        f"YStep\t{step:.4f}",
        "AcqE1\t0",
        "AcqE2\t0",
        "AcqE3\t0",
        "Euler angles refer to Sample Coordinate system (CS0)!\tMag\t0\tCoverage\t100\tDevice\t0\tKV\t20"
        "\tTiltAngle\t70\tTiltAxis\t0",
        f"Phases\t{len(phase_map.phases)}",
    ]
    header += [_ctf_phase_line(p) for p in phase_map.phases]
    header.append("Phase\tX\tY\tBands\tError\tEuler1\tEuler2\tEuler3\tMAD\tBC\tBS")
    out.write("\n".join(header) + "\n")
    x, y = phase_map.coordinates()
    index, phase_ids = phase_map.index, file_phases(phase_map.index)
    euler = np.rad2deg(phase_map.euler())
    band_contrast = np.clip(np.round(phase_map.quality * 255), 0, 255).astype(int)
    band_slope = np.clip(np.round(phase_map.confidence * 255), 0, 255).astype(int)
    for i in range(phase_map.size):
        indexed = index[i] >= 0
        out.write(
            f"{phase_ids[i]}\t{x[i]:.4f}\t{y[i]:.4f}\t0\t{0 if indexed else CTF_NO_SOLUTION}"
            f"\t{euler[i, 0]:.4f}\t{euler[i, 1]:.4f}\t{euler[i, 2]:.4f}\t0.0000\t{band_contrast[i]}\t{band_slope[i]}\n"
        )
    return out.getvalue()


def write_ctf(phase_map: PhaseMap, path: Path) -> None:
    """The map as a .ctf: the scan's own (:meth:`~ebsd_core.phasemap.PhaseMap.own_indexing`) with the model's
    phases where its orientations came from one, else :func:`ctf_text`."""
    if (own := phase_map.own_indexing(".ctf")) is not None:
        ctf_with_phases(phase_map.index, phase_map.phases, own, path)
        return
    path.write_text(ctf_text(phase_map), encoding="utf-8")


#: A .ctf's Error code of a point with no solution: what a point the model calls unknown gets (:func:`ctf_text`).
CTF_NO_SOLUTION = 3


def ctf_with_phases(index: np.ndarray, phases: list[MapPhase], indexing: str | Path, path: str | Path) -> None:
    """The scan's own Oxford .ctf (``indexing``, its points in the scan's order) at ``path`` with the model's phases:
    each point's phase is the model's (``index``, -1 unknown: phase 0, not indexed, with the Error of no solution),
    and the header's phases are the model's classes. The orientations, places, band contrast and slope, MAD, every
    other column and every other header line are the file's own, byte for byte.

    Raises
    ------
    InputError
        Naming the .ctf: without the header of its points' columns, or of another count of points.
    """
    phase_ids = file_phases(index)
    with (
        open(indexing, encoding="latin-1", newline="") as source,  # every byte read is written back as it was
        open(path, "w", encoding="latin-1", newline="") as out,
    ):
        columns = _copy_ctf_header(source, out, phases, indexing)
        phase_column, error_column = columns.index("Phase"), columns.index("Error")
        point = 0
        for line in source:
            body = line.rstrip("\r\n")
            if not body.strip():
                out.write(line)
                continue
            if point < len(phase_ids):
                fields = body.split("\t")
                if len(fields) <= max(phase_column, error_column):
                    raise InputError(f"a point of it has {len(fields)} columns, not the {len(columns)} named", indexing)
                fields[phase_column] = str(phase_ids[point])
                if phase_ids[point] == 0:
                    fields[error_column] = str(CTF_NO_SOLUTION)
                out.write("\t".join(fields) + line[len(body) :])
            point += 1
    _check_points(point, len(phase_ids), indexing)


def _copy_ctf_header(source, out, phases: list[MapPhase], indexing: str | Path) -> list[str]:
    """Copy a .ctf's header from ``source`` to ``out`` up to its points' columns, its phases replaced by
    ``phases`` (the lines of :func:`ctf_text`); returns those columns' names."""
    skip = 0
    for line in source:
        newline = line[len(line.rstrip("\r\n")) :]
        fields = line.rstrip("\r\n").split("\t")
        if skip:
            skip -= 1
        elif fields[0] == "Phases" and len(fields) > 1 and fields[1].strip().isdigit():
            skip = int(fields[1])
            out.write(f"Phases\t{len(phases)}{newline}")
            out.writelines(f"{_ctf_phase_line(phase)}{newline}" for phase in phases)
        else:
            out.write(line)
        if fields[:3] == ["Phase", "X", "Y"] and "Error" in fields:
            return fields
    raise InputError("no header of its points' columns (Phase, X, Y, ..., Error, ...): not an Oxford .ctf?", indexing)


def _ctf_phase_line(phase: MapPhase) -> str:
    """A phase's line in a .ctf's header: its lattice, angles, name, Laue group (11, m-3m) and space group."""
    return f"{phase.a:.4f};{phase.a:.4f};{phase.a:.4f}\t90.000;90.000;90.000\t{phase.name}\t11\t{phase.space_group}"


def write_csv(phase_map: PhaseMap, path: Path) -> None:
    x, y = phase_map.coordinates()
    rows, cols = phase_map.nav_shape
    index, confidence = phase_map.index, phase_map.confidence
    names = [p.label for p in phase_map.phases]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = ["row", "col", "x_um", "y_um", "phase", "space_group", "confidence", "image_quality"]
        header += [f"p_{p.symbol}" for p in phase_map.phases]
        if phase_map.truth is not None:
            header.append("true_phase")
        writer.writerow(header)
        for i in range(phase_map.size):
            k = index[i]
            row = [i // cols, i % cols, f"{x[i]:.4f}", f"{y[i]:.4f}", names[k] if k >= 0 else UNKNOWN]
            row += [phase_map.phases[k].space_group if k >= 0 else "", f"{confidence[i]:.4f}"]
            row += [f"{phase_map.quality[i]:.4f}", *[f"{p:.4f}" for p in phase_map.probabilities[i]]]
            if phase_map.truth is not None:
                t = phase_map.truth[i]
                row.append(names[t] if t >= 0 else "")
            writer.writerow(row)


def map_figure(phase_map: PhaseMap, title: str | None = None):
    """A matplotlib figure of the phase map with a legend and a scale bar (draw it inside
    :func:`ebsd_core.figures.pyplot`)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows, cols = phase_map.nav_shape
    colours = [UNKNOWN_COLOUR] + [p.colour for p in phase_map.phases]
    width = min(12.0, max(4.0, cols / 20))
    # a strip (a line scan) is drawn stretched: square points made a 1 x 200 map 5 px tall, and a 200 x 1 one 800
    # inches tall
    height = float(np.clip(width * rows / cols, 1.0, 12.0))
    stretched = height != width * rows / cols
    fig, ax = plt.subplots(figsize=(width + 2.5, height + 0.8), dpi=100)
    ax.imshow(
        phase_map.grid(phase_map.index + 1),
        cmap=ListedColormap(colours),
        vmin=0,
        vmax=len(colours) - 1,
        interpolation="nearest",
        aspect="auto" if stretched else "equal",
    )
    ax.set_axis_off()
    fractions = phase_map.fractions()
    handles = [Patch(color=p.colour, label=f"{p.label}: {percent(fractions[p.label])}") for p in phase_map.phases]
    if fractions[UNKNOWN] > 0:
        handles.append(Patch(color=UNKNOWN_COLOUR, label=f"{UNKNOWN}: {percent(fractions[UNKNOWN])}"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    # one row was a stretched strip's height
    add_scale_bar(ax, cols, phase_map.step_um, rows / 15 if stretched else max(1, rows / 80))
    ax.set_title(title or Path(phase_map.source).name or "phase map", fontsize=10)
    fig.tight_layout()
    return fig


def add_scale_bar(ax, columns: float, step_um: float, height: float) -> None:
    """A scale bar about a fifth of a map ``columns`` wide, each ``step_um`` apart, in its lower right corner."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    bar_um = nice_length(columns * step_um / 5)
    bar = AnchoredSizeBar(
        ax.transData,
        bar_um / step_um,
        f"{bar_um:g} µm",
        "lower right",
        pad=0.4,
        color="white",
        frameon=False,
        size_vertical=height,
    )
    ax.add_artist(bar)


def grid_map_figure(points: GridPoints, phases: list[MapPhase], title: str, step_um: float = 1.0):
    """A matplotlib figure of the phases of a scan on a hexagonal grid, drawn on that grid with a legend and a scale
    bar (draw it inside :func:`ebsd_core.figures.pyplot`): each point where it was recorded, every other row offset
    by half a step (:mod:`ebsd_core.io.hex_grid`), ``step_um`` apart along its row."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows, columns = brick_shape(points.places)
    colours = [UNKNOWN_COLOUR] + [p.colour for p in phases]
    width = min(12.0, max(4.0, columns / 40))
    aspect = ROW_HEIGHT / 0.5  # a row's height over a half step's width
    height = float(np.clip(width * rows * aspect / columns, 1.0, 12.0))
    fig, ax = plt.subplots(figsize=(width + 2.5, height + 0.8), dpi=100)
    ax.imshow(
        brick_image(points.index + 1, points.places),  # blank between the rows' ends
        cmap=ListedColormap(colours),
        vmin=0,
        vmax=len(colours) - 1,
        interpolation="nearest",
        aspect=aspect if height < 12.0 and width * rows * aspect / columns >= 1.0 else "auto",
    )
    ax.set_axis_off()
    shares = [float((points.index == i).mean()) for i in range(len(phases))]
    handles = [Patch(color=p.colour, label=f"{p.label}: {percent(share)}") for p, share in zip(phases, shares)]
    if (unknown := float((points.index < 0).mean())) > 0:
        handles.append(Patch(color=UNKNOWN_COLOUR, label=f"{UNKNOWN}: {percent(unknown)}"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    add_scale_bar(ax, columns, step_um / 2, max(0.5, rows / 80))  # the image's columns are half steps
    ax.set_title(f"{title} (hexagonal grid)", fontsize=10)
    fig.tight_layout()
    return fig


def write_grid_png(
    points: GridPoints, phases: list[MapPhase], path: str | Path, title: str, step_um: float = 1.0
) -> Path:
    """:func:`grid_map_figure` as a PNG at ``path``, written whole or not at all."""
    with pyplot() as plt, atomic_path(path) as tmp:
        fig = grid_map_figure(points, phases, title, step_um)
        try:
            fig.savefig(tmp, format="png", bbox_inches="tight")
        finally:
            plt.close(fig)
    return Path(path)


#: An .ang's code of the point group m-3m, that of every class (EDAX's ``Symmetry``, as orix writes it).
ANG_CUBIC_SYMMETRY = 43

#: A field of an .ang's point, with the white space before it (kept, so that its columns stay aligned).
_ANG_FIELD = re.compile(r"\s*\S+")


def write_hexagonal_ang(points: GridPoints, phases: list[MapPhase], indexing: str | Path, path: str | Path) -> Path:
    """The phase map of a scan on a hexagonal grid as its own EDAX .ang (``indexing``, its Hough indexing on that
    grid, its points in the scan's order: :func:`~ebsd_core.phasemap.hexagonal_indexing_places`) with the model's
    phases (:func:`ang_with_phases`), at ``path``, written whole or not at all."""
    with atomic_path(path) as tmp:
        ang_with_phases(points.index, phases, indexing, tmp)
    return Path(path)


def ang_with_phases(index: np.ndarray, phases: list[MapPhase], indexing: str | Path, path: str | Path) -> None:
    """The scan's own .ang (``indexing``, its points in the scan's order) at ``path`` with the model's phases: each
    point's phase is the model's (``index``; where it is unknown, -1, phase 0 and CI -1: not indexed, as orix writes
    such a point), and the header's phases are the model's classes. The orientations, places, image quality, the
    confidence index of every point the model decides (the indexing's: OIM's clean-ups weigh orientations by it), every
    other column and every other header line are the file's own, byte for byte.

    Raises
    ------
    InputError
        Naming the .ang: of another count of points (changed since the scan was classified), or of too few columns.
    """
    phase_ids = file_phases(index)
    with (
        open(indexing, encoding="latin-1", newline="") as source,  # every byte read is written back as it was
        open(path, "w", encoding="latin-1", newline="") as out,
    ):
        point = 0
        for line in _ang_header_with_phases(source, phases):
            if line.lstrip().startswith("#") or not line.strip():
                out.write(line)
                continue
            if point < len(phase_ids):
                unknown = phase_ids[point] == 0
                out.write(_ang_point(line, "-1.000" if unknown else None, str(phase_ids[point]), indexing))
            point += 1
    _check_points(point, len(phase_ids), indexing)


def file_phases(index: np.ndarray) -> np.ndarray:
    """Each point's phase as an .ang or a .ctf numbers it: the model's class (``index``) from 1, 0 where unknown."""
    return np.where(index >= 0, np.asarray(index, dtype=np.int64) + 1, 0)


def _check_points(found: int, expected: int, indexing: str | Path) -> None:
    """Refuse an indexing file whose ``found`` points are not the ``expected`` of the scan classified."""
    if found != expected:
        raise InputError(
            f"holds {counted(found, 'point')}, not the {expected:,} of the scan classified: changed since?", indexing
        )


def _ang_header_with_phases(lines: Iterator[str], phases: list[MapPhase]) -> Iterator[str]:
    """``lines`` of an .ang with the phases of its header (``# Phase 1`` up to ``# GRID:``) replaced by ``phases``."""
    written = skipping = False
    for line in lines:
        header = line.startswith("#")
        words = line.lstrip("# \t").split(maxsplit=1) if header else []
        key = words[0].upper() if words else ""
        if not written and (key == "PHASE" or key.startswith("GRID") or (not header and line.strip())):
            newline = "\r\n" if line.endswith("\r\n") else "\n"
            yield from (f"{text}{newline}" for text in _ang_phase_lines(phases))
            written, skipping = True, key == "PHASE"
        if skipping and header and not key.startswith("GRID"):
            continue
        skipping = False
        yield line


def _ang_phase_lines(phases: list[MapPhase]) -> list[str]:
    """The header lines of ``phases`` in an .ang, numbered from 1 as its points' phases are."""
    lines = []
    for number, phase in enumerate(phases, start=1):
        a = f"{phase.a:.3f}"
        lines += [
            f"# Phase {number}",
            f"# MaterialName  \t{phase.name}",
            f"# Formula     \t{phase.name}",
            f"# Info \t\tspace group {phase.symbol} ({phase.space_group}); phase by ebsd_fewshot",
            f"# Symmetry              {ANG_CUBIC_SYMMETRY}",
            f"# LatticeConstants      {a} {a} {a}  90.000  90.000  90.000",
            "# NumberFamilies        0",
            "#",
        ]
    return lines


def _ang_point(line: str, confidence: str | None, phase: str, indexing: str | Path) -> str:
    """An .ang's point ``line`` with its phase (and its confidence index, unless None) replaced, in columns as wide as
    before."""
    body = line.rstrip("\r\n")
    fields = _ANG_FIELD.findall(body)
    if len(fields) <= ANG_PHASE_COLUMN:
        raise InputError(f"a point of it has {len(fields)} columns, where an .ang's has its phase in the 8th", indexing)
    for column, value in ((ANG_CONFIDENCE_COLUMN, confidence), (ANG_PHASE_COLUMN, phase)):
        if value is None:
            continue
        width = len(fields[column])
        fields[column] = value.rjust(width) if len(value) < width else " " + value
    return "".join(fields) + line[len(body) :]


def nice_length(value: float) -> float:
    """1, 2 or 5 times a power of ten, at most ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** np.floor(np.log10(value))
    return float(max(m for m in (1, 2, 5) if m * power <= value) * power)


def write_png(phase_map: PhaseMap, path: Path) -> None:
    with pyplot() as plt:
        fig = map_figure(phase_map)
        try:
            fig.savefig(path, format="png", bbox_inches="tight")
        finally:
            plt.close(fig)


WRITERS: dict[str, Callable[[PhaseMap, Path], None]] = {
    ".ang": write_ang,
    ".ctf": write_ctf,
    ".h5": write_orix_h5,
    ".csv": write_csv,
    ".png": write_png,
}


def check_export_path(path: str | Path) -> Callable[[PhaseMap, Path], None]:
    """The writer for ``path``'s extension; refuses unknown formats before any work is done."""
    writer = WRITERS.get(Path(path).suffix.lower())
    if writer is None:
        raise InputError(f"unknown export format; use one of {', '.join(EXPORT_FORMATS)}", path)
    return writer


def unwritable_reason(phase_map: PhaseMap, suffix: str) -> str | None:
    """Why the map cannot be exported in the format of ``suffix``, or None when it can."""
    if phase_map.size == 0:
        return "the map is empty: nothing to export"
    if suffix.lower() == ".ang" and phase_map.nav_shape[1] == 1 and phase_map.own_indexing(".ang") is None:
        # orix takes every one-dimensional map for a row: one point fails, a column is written with x = y = 0
        return (
            "a map of one column cannot be written as .ang (orix, which writes it, takes every one-dimensional map for "
            "a row); export .ctf, .h5 or .csv"
        )
    return None


def export_map(phase_map: PhaseMap, path: str | Path) -> Path:
    """Write the map in the format its extension names, atomically."""
    path = Path(path)
    writer = check_export_path(path)
    if reason := unwritable_reason(phase_map, path.suffix):
        raise InputError(reason, path)
    with atomic_path(path, keep_suffix=True) as tmp:
        writer(phase_map, tmp)
    return path


def export_bytes(phase_map: PhaseMap, suffix: str) -> bytes:
    """An export as bytes (for download buttons)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        target = export_map(phase_map, Path(folder) / f"phase_map{suffix}")
        return target.read_bytes()
