"""Phase map: classify every pattern of a scan, explore the map, export it."""

import contextlib
import dataclasses
import functools
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ebsd_core.assemble import (
    FEWEST_REGIONS,
    MAP_REGIONS_CAUTION,
    MapRegion,
    blank_notes,
    dataset_from_regions,
    few_regions_notes,
    region_points,
    sampling_notes,
)
from ebsd_core.caveats import own_test_words
from ebsd_core.errors import EbsdError, InputError
from ebsd_core.inference import blank_points
from ebsd_core.io.dataset import write_dataset
from ebsd_core.io.hex_grid import ROW_HEIGHT, brick_points, brick_shape, grid_columns, grid_size, point_at
from ebsd_core.io.orientations import read_indexing
from ebsd_core.jobs import FINISHED
from ebsd_core.map_export import EXPORT_FORMATS, export_bytes, nice_length, unwritable_reason
from ebsd_core.phasemap import (
    UNKNOWN_COLOUR,
    PhaseMap,
    hexagonal_indexing_places,
    load_phase_map,
    phases_for_model,
    rows_lacking_note,
)
from ebsd_core.phases import get_material, material_label, space_group_symbol
from ebsd_core.predictions import GridPoints, read_grid_points
from ebsd_core.simulate_map import DEMO_PAIRS, MapLayout
from ebsd_core.store import default_store, list_models, read_card
from ebsd_core.wording import counted, percent
from ebsd_core.workflows import (
    classify_job,
    demo_layout,
    demo_map_job,
    demo_map_model,
    is_demo_map_model,
    latest_demo_map_model,
    maps_demo_pair,
    phase_map_job,
)
from pages.common import (
    NORDIF_SETTING_TYPES,
    SCAN_FILE_TYPES,
    cached_source,
    download_button,
    enter_page,
    for_the_user,
    how_trained_section,
    job_manager,
    keep,
    keep_hidden_widgets,
    kept,
    kept_tabs,
    kept_upload,
    latest_job_shown_on,
    metric_row,
    model_chosen_since,
    modified_time,
    new_session_file,
    one_scan_upload_or_folder,
    opened_source,
    restart_job,
    select_model,
    send_to_explain,
    server_path_input,
    session_dir,
    session_id,
    set_active_dataset,
    show_error,
    show_job,
    show_notes,
    show_source_warnings,
    show_unfinished_job,
    shown_name,
    space_group_choice,
    start_again_button,
    start_job,
    store_write_problem,
    tidy,
    upload_to_session,
    uploaded_name,
)

enter_page()

st.title("Phase map")
st.caption(
    "Classify every pattern of a scan with a saved model. The map is interactive: hover for the phase and "
    "confidence, click a point to see its pattern and the model's probabilities."
)
manager = job_manager()
# points drawn of a map: a 1000 x 1000 map drawn whole took 26 s to show and 18 s of server time at every click,
# and one of 2000 x 2000 exceeded Streamlit's 200 MB message (bench/RESULTS.md); a screen shows no more
MAX_SHOWN_POINTS = 60_000
MAP_RIGHT_MARGIN = 60  # px: a confidence map's colour bar and its tick labels
MAP_PLOT_WIDTH = 390  # px: a map's plot area in a half-page column of a 1,400 px wide window (Chromium)
WEAK_DEMO_MAP = 0.9  # a demo map's accuracy below which the page says what maps it well (pairs' own: 94-99.9 %)
MAX_DEMO_POINTS = 300 * 300  # the largest demo scan, Voronoi grains or a real map's
MAX_SQUARE_ASPECT = 8  # a map longer than this many times its width is drawn stretched, not with square points
# a TIFF: a stack of the scan's patterns; a BMP: a NORDIF scan's static background, uploaded with it
SCAN_TYPES = [*SCAN_FILE_TYPES, "tif", "tiff", "bmp", *NORDIF_SETTING_TYPES]


@st.cache_resource(max_entries=4, show_spinner="Reading the map")
def cached_layout(path: str, modified: float, pair: tuple[str, ...]):
    """An indexing file's grains, read once per file version (not on every rerun of the page)."""
    return demo_layout(pair, (0, 0), path)


def real_map_layout(pair: tuple[str, ...]) -> tuple[str | None, MapLayout | None]:
    """An indexing file of a real map (.ang, .ctf) whose grains a demo scan takes, and those grains; its phases and
    size said at once, or why it cannot serve."""

    def draw() -> Path | None:
        upload = st.file_uploader(
            "Indexing file of a real map (.ang, .ctf)",
            type=["ang", "ctf"],
            help="Its grains, phases and orientations are simulated (EDAX OIM or Oxford files; a hexagonal grid cannot "
            "serve). Its phases by their names there (Austenite, Ferrite, Ni, ...), or else the phases chosen above, "
            "in the file's order. 100 x 117 points took 29 s to simulate on 2 cores, before the map.",
            key="demo_layout",
        )
        return None if upload is None else upload_to_session(upload, "demo_layout")

    try:
        path = kept_upload("demo_layout", draw)
        if path is None:
            return None, None
        layout = cached_layout(str(path), path.stat().st_mtime, pair)
    except EbsdError as exc:
        show_error(exc)
        return None, None
    rows, cols = layout.shape
    if rows * cols > MAX_DEMO_POINTS:  # as the Voronoi grains' rows and columns: a demo, not a night's simulation
        show_error(
            InputError(
                f"{rows} x {cols} points: a demo scan takes up to {MAX_DEMO_POINTS:,} (300 x 300; 100 x 117 took "
                "29 s); simulate a larger one with `python -m ebsd_core simulate-map --layout` and map it here",
                shown_name(path),
            )
        )
        return None, None
    phases = " and ".join(material_label(m.key) for m in layout.materials)
    st.caption(f"{shown_name(path)}: {rows} x {cols} points of {phases}.")
    return str(path), layout


def demo_map_with(materials, model_dir: str | None) -> tuple[str | None, bool]:
    """The model a demo map is to use where the chosen one could map it: that one, or (as chosen here) the 20-shot
    model for the pair. A model trained briefly on six classes mapped a Ni/Ni3Al demo scan 34 % right, the pair's
    99.9 % (bench/RESULTS.md). Returns ``model_dir``, or None for the model for the pair, and whether the pair's was
    chosen here over a model that could map it."""
    try:
        usable = maps_demo_pair(materials, model_dir) is not None
    except EbsdError:  # a model deleted or broken meanwhile: the model for the pair, as the job would take
        return None, False
    if not usable:
        return model_dir, False
    pair = tuple(m.key for m in materials)
    own = "trained earlier" if latest_demo_map_model(pair) else "trained first, one to three minutes"
    labels = {"chosen": f"the chosen model, {Path(model_dir).name}", "pair": f"a 20-shot model for the pair ({own})"}
    choice = st.radio(
        "Map it with",
        list(labels),
        format_func=labels.get,
        horizontal=True,
        key="demo_map_with",
        help="The chosen model shows how well it tells these phases apart, against the scan's known truth. A model "
        "trained on a few patterns of six classes for a few epochs may map a pair poorly; the 20-shot model for the "
        "pair shows what the method does.",
    )
    return (model_dir, False) if choice == "chosen" else (None, True)


def demo_map_cannot_train(materials, model_dir: str | None, pair_chosen: bool) -> bool:
    """Whether the demo map would have to train a model for ``materials`` in a store this server may not write to:
    said here, for the button to be off (not fail when the job starts). ``pair_chosen``: the model for the pair was
    chosen over one that could map it (:func:`demo_map_with`)."""
    if store_write_problem() is None:
        return False
    try:
        if demo_map_model(materials, model_dir) is not None:
            return False
    except EbsdError:  # a model deleted or broken meanwhile: the job would train one
        pass
    if model_dir:
        unknown = "the model chosen above does not know both, nor has an earlier demo map trained one"
    elif pair_chosen:
        unknown = "no earlier demo map has trained one (the model chosen above can map it)"
    else:
        unknown = "no saved model knows both"
    st.warning(
        f"A demo map of {' and '.join(material_label(m.key) for m in materials)} would train its model first: "
        f"{unknown}. {store_write_problem()}",
        icon=":material/lock:",
    )
    return True


def choose_scan(model_name: str | None) -> Path | None:
    """Upload, server path or a demo scan; returns the scan path or None."""
    tab_demo, tab_upload, tab_server = kept_tabs(["Demo scan", "Upload", "Server path"], key="scan_tab")
    with tab_demo:
        st.write(
            "Simulates a dual-phase scan with Voronoi grains (or those of a real map's indexing file) and known "
            "ground truth, and maps it: with the chosen model where it knows both phases and you keep it (below), "
            "else with a 20-shot model for the pair. The first demo map of a pair on this server trains that model "
            "(one to three minutes on a 2-core CPU); later ones use it. The Home demo's models are too briefly "
            "trained to map: the model for the pair is used instead."
        )
        # also after another page
        keep_hidden_widgets("demo_pair", "demo_grains", "demo_rows", "demo_cols", "demo_map_with")
        pair = st.selectbox("Phases", list(DEMO_PAIRS), key="demo_pair")
        grains = st.radio("Grains", ["Voronoi", "Of a real map"], horizontal=True, key="demo_grains")
        layout_path, materials = None, [get_material(p) for p in DEMO_PAIRS[pair]]
        st.session_state.setdefault("demo_rows", 40)  # as values, not the widgets' defaults: kept while hidden
        st.session_state.setdefault("demo_cols", 50)
        if grains == "Voronoi":
            c1, c2 = st.columns(2)
            shape = (
                int(c1.number_input("Rows", 10, 300, key="demo_rows")),
                int(c2.number_input("Columns", 10, 300, key="demo_cols")),
            )
        else:
            layout_path, layout = real_map_layout(DEMO_PAIRS[pair])
            shape, materials = (None, None) if layout is None else (layout.shape, layout.materials)
        model_dir = str(default_store() / model_name) if model_name else None
        pair_chosen = False
        if shape is not None:
            model_dir, pair_chosen = demo_map_with(materials, model_dir)
        cannot_train = shape is not None and demo_map_cannot_train(materials, model_dir, pair_chosen)
        if shape is not None and st.button("Run the demo map", type="primary", disabled=cannot_train):
            folder = session_dir() / "maps"
            job = start_job(
                "phasemap",
                f"Demo map: {pair}" if layout_path is None else f"Demo map: the grains of {shown_name(layout_path)}",
                lambda ctx: demo_map_job(ctx, DEMO_PAIRS[pair], shape, folder, model_dir, layout_path),
            )
            if job:
                st.session_state.map_job = job
    with tab_upload:
        uploaded = one_scan_upload_or_folder(
            "Scan file (kikuchipy formats, a NORDIF Pattern.dat together with its Setting.txt, the project's .h5, "
            "a zip of the scan's pattern images, or a multi-page TIFF of them)",
            key="map_upload",
            types=SCAN_TYPES,
        )
    with tab_server:
        return server_path_input("Scan path", "map large scans", key="map_server_path") or uploaded


def model_choice() -> str | None:
    models = [m for m in list_models() if not m.get("error")]
    if not models:
        if store_write_problem() is None:
            st.info("No saved model yet: train one on **Train**, or run the demo map, which trains its own.")
        else:  # nor can one be trained: the demo map says why
            st.info("No saved model in this server's store.")
        return None
    name = select_model([m["name"] for m in models], key="map_model")
    with contextlib.suppress(EbsdError, OSError):  # a model deleted meanwhile: the picker has said so
        card = read_card(default_store() / name)
        *others, last = [phase.label for phase in phases_for_model(card)]
        known = f"{', '.join(others)} and {last}" if others else last
        scored = f" It read {words}." if (words := own_test_words(card)) else ""
        st.caption(
            f"It knows {known}: a point of any other phase gets one of these (map with a model of every phase).{scored}"
        )
        how_trained_section(card)  # which materials it learnt from, at what size: what a map of it can be trusted on
    return name


def start_map(model_name: str, scan: Path) -> None:
    try:
        source = opened_source(scan)
        shape = source.nav_shape or ()
        points = f", a map of {shape[0]:,} x {shape[1]:,} points" if len(shape) == 2 else ""
        height, width = source.pattern_shape
        st.write(f"**{shown_name(scan)}**: {counted(len(source), 'pattern')} of {width}x{height} px{points}")
        show_source_warnings(shown_name(scan), source)
    except EbsdError as exc:
        show_error(exc)
        return
    if source.hexagonal_grid:  # no square map lays it out: its patterns are classified, drawn on its grid if placed
        indexing = hexagonal_indexing_choice(source, scan)
        if indexing is not False:
            placed = source.hexagonal_places is not None or indexing is not None
            classify_button(model_name, scan, placed and cleanup_choice(), indexing)
        return
    orientations = orientation_choice(source, scan)  # first: its map lays out images numbered in scan order
    if orientations is False:
        return
    nav_shape = map_shape_choice(source, orientations)
    if nav_shape is False:
        return
    cleanup = cleanup_choice()
    if st.button("Classify every pattern", type="primary"):
        model_dir = str(default_store() / model_name)
        out = new_session_file(f"maps/{scan.stem}-{model_name}", ".npz")  # two scans of one name: two maps
        params = {"model_dir": model_dir, "scan": str(scan), "out": str(out), "cleanup": cleanup}
        if nav_shape is not None:
            params["nav_shape"] = list(nav_shape)
        if orientations is not None:
            params["orientations"] = str(orientations)
        submit(f"Phase map of {shown_name(scan)} with {model_name}", params)


def cleanup_choice() -> bool:
    """Whether the map is to be cleaned up by grains (:mod:`ebsd_core.grain_cleanup`)."""
    keep_hidden_widgets("map_cleanup")  # as left, after a visit to another page
    return st.checkbox(
        "Grain clean-up",
        value=True,
        key="map_cleanup",
        help="Averages each point with its neighbours whose patterns correlate (the same grain), so isolated "
        "mistakes take their grain's answer. Turn it off when the phases share their orientation (coherent "
        "precipitates such as gamma-prime in gamma): their patterns correlate across the phase boundary too.",
    )


def submit(title: str, params: dict) -> str | None:
    """Start the job of ``params`` (:func:`_map_function`), shown on this page."""
    if job := start_job("phasemap", title, _map_function(params), params):
        st.session_state.map_job = job
    return job


def classify_button(model_name: str, scan: Path, cleanup: bool, indexing: Path | None = None) -> None:
    """Classify every pattern of a scan that no square map lays out, into a CSV of the ``predict`` command's
    columns; with ``cleanup``, after the grain clean-up on its hexagonal grid; with ``indexing`` (its own .ang on that
    grid), into that .ang too."""
    if st.button(
        "Classify every pattern",
        type="primary",
        help="In the scan's order: the patterns per phase, a CSV of every pattern's class and probabilities, and "
        "where the scan (or its .ang) says where its points lie, their phases drawn on its hexagonal grid (there, "
        "after the grain clean-up when it is on; else each pattern on its own); its .ang, if uploaded, with the "
        "model's phases.",
    ):
        classify(scan, model_name, cleanup, indexing)


def classify(scan: str | Path, model_name: str, cleanup: bool, indexing: str | Path | None = None) -> str | None:
    """Start classifying every pattern of ``scan`` with the store's model ``model_name`` (and writing its phases into
    its own .ang, ``indexing``): the job, if started."""
    out = new_session_file(f"predictions/{Path(scan).stem}-{model_name}", ".csv")
    params = {"model_dir": str(default_store() / model_name), "scan": str(scan), "out": str(out)}
    params |= {"classify": True, "name": shown_name(scan), "cleanup": cleanup}  # the name: not the server's path
    if indexing is not None:
        params["orientations"] = str(indexing)
    return submit(f"Classifying {shown_name(scan)} with {model_name}", params)


def show_predictions(result: dict, model_name: str | None) -> None:
    """What :func:`~ebsd_core.workflows.classify_job` found: the patterns per phase, its notes, its points drawn on
    the scan's grid where it knows their places, and its CSV; a button to classify it again with ``model_name``,
    the model now chosen."""
    scan = shown_name(result["scan"])
    cleaned = result.get("grain_cleanup", False)  # not in a classification made before the clean-up was
    how = "classified, then cleaned up by grains" if cleaned else "each classified on its own"
    st.subheader(f"{scan}: {counted(result['patterns'], 'pattern')}, {how}")
    changed = f"; the grain clean-up changed the class of {counted(result.get('changed_by_cleanup', 0), 'point')}"
    st.caption(f"Classified with {result['model_name']}{changed if cleaned else ''}.")
    reclassify_button(result, model_name)
    show_notes(result["notes"])
    total = max(result["patterns"], 1)
    st.dataframe(
        {
            "Phase": [result.get("labels", {}).get(symbol, symbol) for symbol in result["counts"]],  # then unknown
            "Patterns": list(result["counts"].values()),
            "Share": [percent(count / total) for count in result["counts"].values()],
        },
        hide_index=True,
    )
    path = Path(result["predictions"])
    if not path.exists():
        st.error(f"{path.name}: the predictions' file is gone from the server (cleared with old sessions' files?)")
        return
    points = draw_grid_maps(result) if result.get("grid") else None
    download_button(
        "Predictions (.csv)",
        path.read_bytes,  # read on the click: a million patterns' rows are 60 MB
        f"{Path(scan).stem}-predictions.csv",
        "text/csv",
        help="One row per pattern: path, index (its place in the scan's order), prediction, confidence, then "
        "each class's probability (the predict command's columns).",
        key="predictions_csv",
    )
    if (ang := result.get("ang")) and Path(ang).exists():
        indexing = uploaded_name(Path(result["indexing"]))
        download_button(
            f"{indexing} with these phases",
            Path(ang).read_bytes,
            indexing,
            "text/plain",
            help=f"{indexing} as uploaded, each point's phase the model's: phase 0 and CI -1 (not indexed) where it is "
            "unknown. Its orientations, places, image quality, CI elsewhere and the rest of its header are its own; "
            "the model's confidence is in the CSV.",
            key="predictions_ang",
        )
    explain_a_prediction(result, points)
    placed = points is not None and not result.get("placed_by_indexing")  # the scan's own places, to take regions at
    if placed and Path(result["scan"]).exists():  # an upload cleared since: no patterns to take
        box = st.session_state.get(grid_box_key(result))
        regions_section(result["scan"], grid_size(points.places), box, points.places)


def reclassify_button(result: dict, model_name: str | None) -> None:
    """Classify the scan shown again with the model now chosen (one trained on regions of it, say), as
    :func:`remap_button` maps a scan again: the upload is gone once the visitor has left the page, the scan is not."""
    scan = result["scan"]
    if not model_name or model_name == result["model_name"] or not Path(scan).exists():
        return
    clicked = st.button(f"Classify {shown_name(scan)} with {model_name}", icon=":material/map:", key="reclassify")
    if clicked and classify(scan, model_name, result.get("grain_cleanup", False), result.get("indexing")):  # as before
        st.rerun()


@st.cache_resource(max_entries=4)
def cached_grid_points(path: str, modified: float) -> GridPoints:
    return read_grid_points(path)


def draw_grid_maps(result: dict) -> GridPoints | None:
    """The phases and confidence of a scan on a hexagonal grid, drawn on that grid (its points' places from the
    scan), beside each other as a square map's are; a point clicked is the one shown below. Returns the points, or
    None where their file is gone."""
    path = Path(result["grid"])
    if not path.exists():
        st.error(f"{path.name}: the points' file is gone from the server (cleared with old sessions' files?)")
        return None
    try:
        points = cached_grid_points(str(path), path.stat().st_mtime)
    except EbsdError as exc:
        show_error(exc)
        return None
    labels, colours = grid_phases(result)
    rows, width = brick_shape(points.places)
    step = max(1, int(np.ceil(np.sqrt(rows * width / MAX_SHOWN_POINTS))))
    st.caption(
        "Drawn on the scan's hexagonal grid: each point where it was recorded, every other row offset by half a step, "
        "nothing resampled"
        + (f"; at one place in {step} along each row and column (a screen shows no more)" if step > 1 else "")
        + ". Click a point to see its pattern and probabilities below."
    )
    left, right = st.columns(2)
    cells = brick_points(points.places)
    scale = discrete_scale([UNKNOWN_COLOUR, *colours])
    step_um = result.get("step_um", 1.0)  # not in a classification made before it was kept
    phase = grid_map_figure(points, cells, points.index + 1.5, labels, "phase", step, scale, len(colours) + 1, step_um)
    with left:
        # of this classification: a click on another scan's map is not this one's
        key = f"grid_phase_map@{result['predictions']}"
        chart_redrawn = key not in st.session_state  # its selection forgotten: another page was visited
        draw_regions(phase, labelled_regions(result["scan"]), hexagonal=True)
        event = st.plotly_chart(phase, on_select="rerun", selection_mode=("points", "box"), key=key)
        phase_swatches([*zip(colours, labels), (UNKNOWN_COLOUR, "unknown")])
    selection = event.get("selection", {}) if event else {}
    box = selected_box(selection, grid_size(points.places), hexagonal=True)
    box = kept_box(box, result["scan"], chart_redrawn, grid_box_key(result))
    clicked = selection.get("points")
    if clicked and box is None and (point := point_at(cells, clicked[0]["x"], clicked[0]["y"])) is not None:
        st.session_state[f"grid_point@{result['predictions']}"] = point  # a click; a box selects every point inside
    confidence = np.where(points.blank, np.nan, points.confidence)  # a blank pattern's: a gap, not doubt
    confidence_map = grid_map_figure(points, cells, confidence, labels, "confidence", step, step_um=step_um)
    right.plotly_chart(confidence_map, key="grid_confidence_map")
    return points


def grid_box_key(result: dict) -> str:
    """Where the box last drawn on a classified scan's map is kept (:func:`kept_box`): of that classification."""
    return f"grid_box@{result['predictions']}"


def grid_phases(result: dict) -> tuple[list[str], list[str]]:
    """The labels and colours of the model's classes, in its order, as a classified scan's maps draw them."""
    symbols = list(result["counts"])[:-1]  # the model's classes, then unknown
    labels = [result.get("labels", {}).get(symbol, symbol) for symbol in symbols]
    return labels, [result.get("colours", {}).get(symbol, UNKNOWN_COLOUR) for symbol in symbols]


def phase_swatches(swatches: list[tuple[str, str]]) -> None:
    """A map's legend: each (colour, label)."""
    st.markdown(
        " · ".join(f"<span style='color:{c}'>■</span> {html.escape(label)}" for c, label in swatches),
        unsafe_allow_html=True,
    )


HEX_HOVER = (
    "pattern %{customdata[0]:.0f}, row %{customdata[1]:.0f}, column %{customdata[2]:.0f}<br>"
    "x %{customdata[4]:.1f} µm, y %{customdata[5]:.1f} µm<br>%{text}<br>confidence %{customdata[3]:.2f}<extra></extra>"
)


def grid_map_figure(
    points: GridPoints,
    cells: np.ndarray,
    values: np.ndarray,
    labels: list[str],
    title: str,
    step: int,
    colours=None,
    top: float = 1,
    step_um: float = 1.0,
) -> go.Figure:
    """``values`` (0 to ``top``) of a hexagonal grid's points as a heatmap of half-step columns, each point two
    columns wide (``cells``, :func:`~ebsd_core.io.hex_grid.brick_points`), at every ``step``-th row and column; x in
    steps, y in rows of sqrt(3)/2 steps, so that the points keep their places; the hover names the model's
    ``labels``, and each point's place from the first, its points ``step_um`` apart along a row. ``colours``: a
    discrete scale (phases), else a colour bar."""
    cells = cells[::step, ::step]
    drawn = cells >= 0
    where = np.where(drawn, cells, 0)
    z = np.where(drawn, np.asarray(values, dtype=np.float64)[where], np.nan)
    names = point_names(labels, points.index[where], points.blank[where])  # of the points drawn alone
    confidence = np.where(points.blank[where], np.nan, points.confidence[where])
    places = points.places[where]
    columns = grid_columns(places.reshape(-1, 2)).reshape(where.shape)
    x_um, y_um = places[..., 1] / 2 * step_um, places[..., 0] * ROW_HEIGHT * step_um
    custom = np.stack([where, places[..., 0], columns, confidence, x_um, y_um], -1).astype(np.float32)
    x = np.arange(0, cells.shape[1] * step, step) / 2
    y = np.arange(0, cells.shape[0] * step, step) * ROW_HEIGHT
    fig = go.Figure(
        go.Heatmap(
            x=x,
            y=y,
            z=z,
            text=np.where(drawn, names, ""),
            customdata=custom,
            hovertemplate=HEX_HOVER,
            hoverongaps=False,
            showscale=colours is None,
            colorbar=dict(thickness=16, x=1.0, xanchor="left", xpad=6),
            colorscale=colours or "Viridis",
            zmin=0,
            zmax=top,
        )
    )
    if colours:  # the phase map takes clicks: invisible markers on the points drawn (a heatmap's cells take none)
        shown, first = np.unique(cells[drawn], return_index=True)
        centres = points.places[shown]
        fig.add_trace(
            go.Scattergl(
                x=(centres[:, 1] + 0.5) / 2,
                y=centres[:, 0] * ROW_HEIGHT,
                mode="markers",
                text=names[drawn][first],
                customdata=custom[drawn][first],
                hovertemplate=HEX_HOVER,
                marker=dict(size=max(3, 400 // max(cells.shape)), color="rgba(0,0,0,0)", symbol="square"),
                showlegend=False,
            )
        )
    fig.update_xaxes(range=_extent(x), visible=False)
    fig.update_yaxes(range=_extent(y)[::-1], scaleanchor="x", visible=False)  # row 0 on top
    add_scale_bar(fig, _extent(x), step_um)  # x in steps
    height = int(np.clip(MAP_PLOT_WIDTH * (y[-1] + ROW_HEIGHT) / (x[-1] + 1), 160, 380)) + 40
    return tidy(fig, height, title=title).update_layout(margin_r=MAP_RIGHT_MARGIN, margin_autoexpand=False)


def explain_a_prediction(result: dict, points: GridPoints | None = None) -> None:
    """Open one of the patterns classified on the Explain page, from the one the model was least sure of or, on a
    map of the scan's grid (``points``), the one clicked there, whose pattern and probabilities are shown first."""
    if not Path(result["scan"]).exists():  # an upload cleared since: nothing to explain it from
        return
    last = result["patterns"] - 1
    chosen = min(st.session_state.get(f"grid_point@{result['predictions']}", result.get("least_sure") or 0), last)
    left, right = st.columns([1, 2], vertical_alignment="bottom")
    index = left.number_input(
        f"Pattern (0 to {last:,})",
        0,
        last,
        value=chosen,
        key=f"predictions_pattern@{result['predictions']}@{chosen}",  # a click on the map starts it anew
        help="Its index in the CSV; first, the pattern the model was least sure of"
        + (", then the one clicked on the map." if points is not None else "."),
    )
    blank = points is not None and bool(points.blank[int(index)])  # nothing in it to explain (the page refuses it)
    if not blank and right.button("Explain this pattern", icon=":material/visibility:", key="explain_prediction"):
        send_to_explain(result["model_name"], result["scan"], int(index), kind="classified scan")
    if points is not None:
        labels, colours = grid_phases(result)
        pattern_column, bars_column = st.columns(2)
        with pattern_column:
            show_pattern(result["scan"], int(index), f"point {int(index)} (row {points.places[int(index), 0]})")
        figure = probability_figure(labels, colours, points.probabilities[int(index)], result.get("threshold"))
        bars_column.plotly_chart(figure, key="grid_point_probabilities")
        if blank:
            bars_column.caption(BLANK_POINT)
        elif points.raw_probabilities is not None:  # Explain gives the pattern's own answer
            bars_column.caption(alone_words(labels, points.raw_probabilities[int(index)]))


def map_shape_choice(source, indexing: Path | None = None) -> tuple[int, int] | None | bool:
    """The map's rows and columns when the files do not record them (images, line scans): the ``indexing`` file's
    map, else the rows asked for; None when they do, False while the rows given do not fit the patterns, and for a
    hexagonal grid, which no rows lay out."""
    count = len(source)
    if source.hexagonal_grid:
        return False  # its reading note says why
    if len(source.nav_shape or ()) == 2 or count == 1:
        return None
    if indexing is not None and len(shape := indexing_of(source, indexing)[1]) == 2:
        st.caption(f"Map: {shape[0]:,} rows x {shape[1]:,} columns, as {indexing.name} records it.")
        return shape
    order = "pages in order" if source.kind == "image-stack" else "images in the order of their names (p2 before p10)"
    or_indexing = "" if source.orientations_from else ", or the scan's Hough indexing above, whose map gives them"
    st.caption(
        f"The files do not record the map's shape. Patterns are taken row by row, {order}: give the rows{or_indexing}."
    )
    # a key per pattern count: another scan starts from its own guess, not from rows that cannot fit it
    keep_hidden_widgets(f"map_rows_{count}")  # as typed, after a visit to another page
    rows = int(st.number_input("Map rows", 1, count, squarest_rows(count), key=f"map_rows_{count}"))
    if count % rows:
        st.error(f"{count:,} patterns do not fill {rows:,} rows: give a number of rows that divides {count:,}.")
        return False
    st.caption(f"{rows:,} rows x {count // rows:,} columns")
    return rows, count // rows


def squarest_rows(count: int) -> int:
    """The divisor of ``count`` nearest its square root from below: the most likely rows of an unknown map."""
    return next(rows for rows in range(int(count**0.5), 0, -1) if count % rows == 0)


def orientation_choice(source, scan: Path) -> Path | None | bool:
    """The scan's own orientations when it has them, else an optional upload of its Hough indexing, kept for this
    scan while another page is shown (:func:`pages.common.kept_upload`).

    Returns the uploaded file, None (none given, or the scan's own are used) or False when the upload is refused.
    """
    if source.orientations_from:
        st.caption(f"Orientations: from {source.orientations_from}; the .ang, .ctf and .h5 exports keep them.")
        return None
    path = indexing_upload(
        scan,
        "Hough indexing of this scan (optional: .ang, .ctf, .h5oina or OIM .h5, points in the scan's order)",
        ["ang", "ctf", "h5oina", "h5"],
        "The exports then keep its orientations and replace only the phases (an .ang or .ctf given is what its "
        "format's export gives back, with the model's phases); without it every point of the exported map has the "
        "identity orientation.",
    )
    if not path:
        return path
    problem, shape = indexing_of(source, path)
    if problem:
        st.error(for_the_user(problem))
        return False
    if source.rows_lacking(shape):  # an export cut short: the map is the indexing's
        st.warning(for_the_user(f"{shown_name(scan)}: {rows_lacking_note(source.nav_shape[0], shape[0], path.name)}"))
    return path


def indexing_upload(scan: Path, label: str, types: list[str], tip: str) -> Path | None | bool:
    """An optional upload of the indexing of ``scan``, kept for this scan while another page is shown
    (:func:`pages.common.kept_upload`): the file, None (none given) or False (the upload could not be saved, said)."""
    key = f"indexing@{scan}"  # a file kept for one scan is not offered for the next

    def draw() -> Path | None:
        upload = st.file_uploader(label, type=types, help=tip, key=key)
        return None if upload is None else upload_to_session(upload, key)

    try:
        return kept_upload(key, draw)
    except EbsdError as exc:
        show_error(exc)
        return False


def hexagonal_indexing_choice(source, scan: Path) -> Path | None | bool:
    """An optional upload of OIM's indexing of a scan on a hexagonal grid (its .ang on that grid), kept for this scan
    as :func:`orientation_choice` keeps one: the scan's phases are written into it, and its points' places lay out a
    scan whose file does not say them. Returns the upload, None (none given) or False when it is refused."""
    path = indexing_upload(
        scan,
        "OIM's indexing of this scan (optional: its .ang, on the same hexagonal grid)",
        ["ang"],
        "Its phases are then replaced by the model's, for a download of it; its orientations, places and image "
        "quality stay its own.",
    )
    if not path:
        return path
    if problem := hexagonal_indexing_problem(str(path), modified_time(path), str(scan), modified_time(scan)):
        st.error(for_the_user(problem))
        return False
    lays_out = "; its points' places lay out the scan" if source.hexagonal_places is None else ""
    st.caption(f"The model's phases are written into {uploaded_name(path)} too{lays_out}.")
    return path


@st.cache_data(max_entries=8, show_spinner="Reading the indexing")
def hexagonal_indexing_problem(path: str, modified: float, scan: str, scan_modified: float) -> str | None:
    """What keeps an .ang from serving as the own indexing of a scan on a hexagonal grid (None when nothing does),
    read once per version of each."""
    try:
        hexagonal_indexing_places(cached_source(scan, scan_modified), path)
    except EbsdError as exc:
        return str(exc)
    return None


def indexing_of(source, path: Path) -> tuple[str | None, tuple[int, ...]]:
    """:func:`checked_indexing` of the indexing file at ``path`` for the scan ``source``."""
    nav_shape = tuple(source.nav_shape or ())
    return checked_indexing(str(path), modified_time(path), len(source), nav_shape, source.grid_starts_scan)


@st.cache_data(max_entries=8, show_spinner="Reading the indexing")
def checked_indexing(
    path: str, modified: float, points: int, nav_shape: tuple[int, ...], more_rows: bool = False
) -> tuple[str | None, tuple[int, ...]]:
    """What keeps an indexing file from serving this scan (None when nothing does), and the map shape it records
    (``more_rows`` as :func:`~ebsd_core.io.orientations.read_indexing` takes it). Read once per version of the file
    (a map's indexing of a million points takes seconds to read), not on every rerun of the page."""
    try:
        return None, read_indexing(path, points, nav_shape or None, more_rows)[1]
    except EbsdError as exc:
        return str(exc), ()


#: What a map of a scan is made with besides the model, kept to map the scan again with another one
REMAP_SETTINGS = ("cleanup", "nav_shape", "orientations")


def mapped_with(phase_map) -> str:
    """The store's name of the model the map shown was made with (a folder copied by hand keeps its card's name)."""
    return st.session_state.get("map_model_used") or phase_map.model


def remap_button(phase_map, model_name: str | None) -> None:
    """Map the scan shown again with the model now chosen (one trained on regions of it, say): the upload is gone
    once the visitor has left the page, the scan is not."""
    scan = st.session_state.get("map_scan")
    if not model_name or model_name == mapped_with(phase_map) or not scan or not Path(scan).exists():
        return
    if st.button(f"Map {shown_name(phase_map.source)} with {model_name}", icon=":material/map:", key="remap"):
        map_again(scan, model_name)


def map_again(scan: str, model_name: str) -> None:
    """Map the scan shown with the store's model ``model_name``, as the map shown was made (its clean-up, rows and
    orientations)."""
    out = new_session_file(f"maps/{Path(scan).stem}-{model_name}", ".npz")
    params = {**st.session_state.get("map_settings", {}), "scan": scan, "out": str(out)}
    params["model_dir"] = str(default_store() / model_name)
    if submit(f"Phase map of {shown_name(scan)} with {model_name}", params):
        st.rerun()


def _map_function(params: dict):
    if params.get("classify"):  # a scan of no map (a hexagonal grid): its patterns classified, into a CSV
        return lambda ctx: classify_job(
            ctx,
            params["model_dir"],
            params["scan"],
            params["out"],
            params.get("name"),
            params.get("cleanup", False),
            params.get("orientations"),
        )
    return lambda ctx: phase_map_job(
        ctx,
        params["model_dir"],
        params["scan"],
        params["out"],
        params.get("cleanup", True),
        orientations=params.get("orientations"),
        nav_shape=params.get("nav_shape"),
    )


def job_progress(job_id: str) -> None:
    state = manager.get(job_id)
    if state is None or state.owner != session_id():
        return
    if state.status in FINISHED:
        if state.status == "done" and "predictions" in state.result:  # a scan of no map, classified
            if st.session_state.get("map_predictions") != state.result:
                st.session_state.map_predictions = state.result
                st.session_state.pop("map_path", None)
                st.rerun(scope="app")
        elif state.status == "done":
            if st.session_state.get("map_path") != state.result["map"]:
                st.session_state.pop("map_predictions", None)
                st.session_state.map_path = state.result["map"]
                st.session_state.map_scan = state.result["scan"]
                # how it was mapped, to map it again with another model (a demo scan: with its own orientations)
                st.session_state.map_settings = {k: v for k, v in state.params.items() if k in REMAP_SETTINGS}
                used = state.params.get("model_dir")  # the store's name for it; a demo map names its own model
                st.session_state.map_model_used = Path(used).name if used else state.result.get("model_name")
                st.session_state.map_point = (0, 0)
                # the demo map's own model: the picker shows it too, set before the picker is drawn (a full run,
                # after a reload, has drawn it already)
                if state.result.get("model_name") and not model_chosen_since(state.finished):
                    st.session_state.map_model_pending = state.result["model_name"]
                st.rerun(scope="app")
        else:
            st.error(for_the_user(f"{state.title}: {state.status}: {state.error or state.message}"))
            restart = "scan" in state.params and start_again_button("restart_map")
            if restart and (again := restart_job(job_id, _map_function(state.params))):
                st.session_state.map_job = again
                st.rerun()
        return
    show_unfinished_job(job_id, state, "cancel_map", f"{state.title}: {state.message or state.status}")


def point_names(labels: list[str], index: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """How a map's hover names the points drawn: their phase (``labels`` by class ``index``), unknown, or a blank
    pattern."""
    names = np.array(["unknown", *labels], dtype=object)[index + 1]
    names[blank] = "unknown (blank pattern: no confidence)"
    return names


def map_figure(phase_map, values: np.ndarray, title: str, colours=None, zrange=None, clickable=False) -> go.Figure:
    """A map as a heatmap in (column, row) coordinates, of at most MAX_SHOWN_POINTS points (a larger map is drawn at
    every few rows and columns, each point under its own row and column); ``clickable`` adds invisible markers that
    take clicks."""
    rows, cols, _ = phase_map.shown_points(MAX_SHOWN_POINTS)
    points = rows[:, None] * phase_map.nav_shape[1] + cols[None, :]  # flat indices of the points drawn
    x, y = np.broadcast_arrays(cols[None, :] * phase_map.step_um, rows[:, None] * phase_map.step_um)  # µm
    blank = blank_points(phase_map.quality[points]) & (phase_map.index[points] < 0)  # a dropped frame, a lost image
    names = point_names([p.label for p in phase_map.phases], phase_map.index[points], blank)
    hover = (  # x and y of the heatmap and the markers are the column and row
        "row %{y}, column %{x}<br>x %{customdata[0]:.1f} µm, y %{customdata[1]:.1f} µm<br>%{text}<br>"
        "confidence %{customdata[2]:.2f}"
    )
    # A blank pattern's probabilities tie (0.50 of two classes), which is no confidence: NaN says so. A template
    # cannot leave the line out for some points, short of a string per point (3 times the map's bytes).
    confidence = np.where(blank, np.nan, phase_map.confidence[points])
    # numbers alone, which plotly sends as binary (names among them made every point a JSON list)
    custom = np.stack([x, y, confidence], axis=-1).astype(np.float32)
    fig = go.Figure(
        go.Heatmap(
            x=cols,
            y=rows,
            z=np.asarray(values)[points],
            text=names,
            customdata=custom,
            hovertemplate=hover + "<extra></extra>",
            showscale=colours is None,
            colorbar=dict(thickness=16, x=1.0, xanchor="left", xpad=6),
            colorscale=colours or "Viridis",
            zmin=zrange[0] if zrange else None,
            zmax=zrange[1] if zrange else None,
        )
    )
    if clickable:
        column, row = np.meshgrid(cols, rows)
        fig.add_trace(
            go.Scattergl(
                x=column.ravel(),
                y=row.ravel(),
                mode="markers",
                text=names.ravel(),
                customdata=custom.reshape(-1, 3),
                hovertemplate=hover + "<extra></extra>",
                marker=dict(size=max(3, 400 // max(len(rows), len(cols))), color="rgba(0,0,0,0)", symbol="square"),
                showlegend=False,
            )
        )
    # the map's own extent: autorange would pad it for the click markers, which on a small map are large (a 3 x 3
    # map was drawn at two thirds of the size of its confidence map beside it)
    rows_n, cols_n = phase_map.nav_shape
    # square points, unless the map is a strip (a line scan of 1 x 500 was drawn less than a pixel tall)
    square = max(rows_n, cols_n) <= MAX_SQUARE_ASPECT * min(rows_n, cols_n)
    fig.update_xaxes(range=_extent(cols), visible=False)
    fig.update_yaxes(range=_extent(rows)[::-1], scaleanchor="x" if square else None, visible=False)  # row 0 on top
    add_scale_bar(fig, _extent(cols), phase_map.step_um)
    # One size for every map of a scan, point for point: the same right margin with and without a colour bar (it
    # fits in it), and as tall as the map is at a half-page column's width (a fixed 420 px left a wide map in white
    # space, its colour bar twice its height).
    height = int(np.clip(MAP_PLOT_WIDTH * rows_n / cols_n, 160, 380)) + 40  # + the title's and the bottom margins
    return tidy(fig, height, title=title).update_layout(margin_r=MAP_RIGHT_MARGIN, margin_autoexpand=False)


def add_scale_bar(fig: go.Figure, extent: list[float], unit_um: float) -> None:
    """A scale bar about a fifth of a map as wide as ``extent`` (its x axis's range, in units ``unit_um`` wide), in its
    lower right corner, as its PNG has it."""
    length = nice_length((extent[1] - extent[0]) * unit_um / 5)
    right = extent[1] - (extent[1] - extent[0]) / 25
    bar = dict(xref="x", yref="paper", x0=right - length / unit_um, x1=right, y0=0.05, y1=0.05)
    fig.add_shape(type="line", line=dict(color="white", width=4), **bar)
    fig.add_annotation(
        x=right - length / unit_um / 2,
        y=0.06,
        xref="x",
        yref="paper",
        text=f"{length:g} µm",
        showarrow=False,
        yanchor="bottom",
        font=dict(color="white", size=11),
    )


def _extent(centres: np.ndarray) -> list[float]:
    """From the edge of the first drawn row or column to that of the last (they may be every few of the map's)."""
    half = (centres[1] - centres[0]) / 2 if len(centres) > 1 else 0.5
    return [float(centres[0] - half), float(centres[-1] + half)]


def discrete_scale(colours: list[str]) -> list:
    n = len(colours)
    scale = []
    for i, colour in enumerate(colours):
        scale += [[i / n, colour], [(i + 1) / n, colour]]
    return scale


@st.cache_resource(max_entries=8)
def cached_phase_map(map_path: str, modified: float):
    """The saved map, read once per file version (not again on every click); treated as read-only."""
    return load_phase_map(map_path)


@st.cache_resource(max_entries=8)
def map_at_threshold(map_path: str, modified: float, threshold: float):
    """The saved map with points whose top probability is below ``threshold`` unknown; its decisions are worked out
    once per threshold (0.6 s for 4 million points), not on every click."""
    saved = cached_phase_map(map_path, modified)
    return saved if threshold == saved.threshold else dataclasses.replace(saved, threshold=threshold)


@st.cache_data(max_entries=16, show_spinner=False)  # made on the click, where no page can show one
def cached_export(map_path: str, modified: float, suffix: str, threshold: float) -> bytes:
    return export_bytes(map_at_threshold(map_path, modified, threshold), suffix)


def show_pattern(scan_path: str, point: int, where: str) -> None:
    """The pattern of the scan's ``point``, ``where`` it lies in words ("row 3, column 4"), with the image it was read
    from, if any."""
    try:
        source = opened_source(scan_path)
        if point >= len(source):  # a map laid on its indexing file's, of rows after the images' last (laid_on)
            st.info(f"{where[0].upper()}{where[1:]}: no image; the images' names stop before this row.")
            return
        pattern = source.batch(point, point + 1)[0]
    except EbsdError as exc:
        st.warning(str(exc))
        return
    # a scan exported as images: the file to look for, or that it has none
    file_name = source.file_name(point) or (None if source.has_image(point) else "no image")
    st.plotly_chart(
        tidy(
            go.Figure(go.Heatmap(z=pattern, colorscale="gray", showscale=False)),
            320,
            title=f"pattern at {where}" + (f" ({file_name})" if file_name else ""),
            yaxis_autorange="reversed",
            yaxis_scaleanchor="x",
        ),
    )


BLANK_POINT = (
    "A blank pattern (a dropped frame, a point without its image, an image that could not be read): nothing to "
    "classify, so unknown."
)


def probability_figure(labels: list[str], colours: list[str], probabilities, threshold: float | None) -> go.Figure:
    """A pattern's probabilities, a bar per class, with the line below which it is unknown."""
    bars = go.Bar(x=labels, y=probabilities, marker_color=colours)
    fig = tidy(go.Figure(bars), 320, title="probabilities", yaxis_range=[0, 1])
    if threshold is not None:
        fig.add_hline(  # its label on a ground of its own: on the line over a bar it was not legible
            y=threshold,
            line_dash="dot",
            annotation_text="unknown below",
            annotation_position="top left",
            annotation_bgcolor="rgba(255, 255, 255, 0.85)",
        )
    return fig


def alone_words(labels: list[str], alone: np.ndarray) -> str:
    """What a map's point, after the grain clean-up, was of its pattern ``alone`` (its probabilities), which
    Explain gives."""
    top = int(np.argmax(alone))
    alone_said = f"{labels[top]} {alone[top]:.0%}"
    return f"After the grain clean-up, which averages each point with its grain; the pattern alone: {alone_said}."


def show_point(phase_map, scan_path: str, point: int) -> None:
    left, right = st.columns(2)
    with left:
        show_pattern(scan_path, point, "row {}, column {}".format(*divmod(point, phase_map.nav_shape[1])))
    labels, colours = [p.label for p in phase_map.phases], [p.colour for p in phase_map.phases]
    right.plotly_chart(probability_figure(labels, colours, phase_map.probabilities[point], phase_map.threshold))
    blank = bool(blank_points(phase_map.quality[point]))
    if blank:  # its probabilities tie: the first class is no answer of the pattern's
        right.caption(BLANK_POINT)
    elif phase_map.raw_probabilities is not None:  # Explain gives the pattern's own answer
        right.caption(alone_words(labels, phase_map.raw_probabilities[point]))
    if phase_map.rotations is not None and np.isfinite(phase_map.rotations[point]).all():
        phi1, big_phi, phi2 = np.rad2deg(phase_map.euler([point])[0])
        right.caption(
            f"Orientation (Bunge Euler): φ1 {phi1:.1f}°, Φ {big_phi:.1f}°, φ2 {phi2:.1f}°; from "
            f"{phase_map.orientations_from}"
        )
    if not blank and right.button("Explain this pattern", icon=":material/visibility:"):
        send_to_explain(mapped_with(phase_map), scan_path, point)  # the map's model, not another chosen since


def kept_box(box: tuple[int, int, int, int] | None, scan_path: str, chart_redrawn: bool, key: str | None = None):
    """The box last drawn on this scan's map, also after a visit to another page, which empties the chart's
    selection; None once the user has cleared it (or clicked a point). ``key``: where it is kept, if not by scan."""
    key = key or f"map_box@{scan_path}"
    if box is not None:
        st.session_state[key] = box
    elif not chart_redrawn:
        st.session_state.pop(key, None)
    return st.session_state.get(key)


def selected_box(
    selection: dict, nav_shape: tuple[int, int], hexagonal: bool = False
) -> tuple[int, int, int, int] | None:
    """First and last row and column of the points inside the box last drawn on the phase map, or None. On a
    ``hexagonal`` grid's map (x in steps, rows :data:`ROW_HEIGHT` apart), the columns whose middle is inside."""
    boxes = selection.get("box") or []
    try:
        x0, x1 = sorted(boxes[-1]["x"])
        y0, y1 = sorted(boxes[-1]["y"])
    except (IndexError, KeyError, TypeError, ValueError):
        return None
    if hexagonal:  # column c's points lie a quarter of a step either side of c + 0.5
        x0, x1, y0, y1 = x0 - 0.5, x1 - 0.5, y0 / ROW_HEIGHT, y1 / ROW_HEIGHT
    rows, cols = nav_shape
    first_row, last_row = max(0, int(np.ceil(y0))), min(rows - 1, int(np.floor(y1)))
    first_col, last_col = max(0, int(np.ceil(x0))), min(cols - 1, int(np.floor(x1)))
    if first_row > last_row or first_col > last_col:
        return None
    return first_row, last_row, first_col, last_col


REGIONS_FILE = "map_regions.json"  # in the session folder: the labels survive a browser reload


def labelled_regions(scan_path: str) -> list[MapRegion]:
    """The regions of this scan labelled so far in this session."""
    if "map_regions" not in st.session_state:
        try:
            regions = json.loads(kept(REGIONS_FILE) or "{}")
            st.session_state.map_regions = {scan: [MapRegion.from_dict(r) for r in rs] for scan, rs in regions.items()}
        except (ValueError, KeyError, TypeError, AttributeError):  # not readable: start afresh
            st.session_state.map_regions = {}
    return st.session_state.map_regions.setdefault(scan_path, [])


def keep_regions() -> None:
    """Write the session's labelled regions to its folder, after each change."""
    regions = st.session_state.get("map_regions", {})
    keep(REGIONS_FILE, json.dumps({scan: [r.to_dict() for r in rs] for scan, rs in regions.items() if rs}))


def draw_regions(fig: go.Figure, regions: list[MapRegion], hexagonal: bool = False) -> None:
    """Outline each labelled region on the phase map and name its space group (the map's own colours could hide
    an outline in the colour of its phase). On a ``hexagonal`` grid's map (:func:`grid_map_figure`), around the
    points of its rows and columns, whichever way each row is offset."""
    for region in regions:
        x0, x1 = region.cols[0] - 0.5, region.cols[1] + 0.5
        y0, y1 = region.rows[0] - 0.5, region.rows[1] + 0.5
        if hexagonal:  # column c's points span c - 0.25 to c + 1.25 steps (drawn two half steps wide)
            x0, x1, y0, y1 = x0 + 0.25, x1 + 0.75, y0 * ROW_HEIGHT, y1 * ROW_HEIGHT
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, line=dict(color="black", width=2))
        fig.add_annotation(
            x=x0,
            y=y0,
            text=space_group_symbol(region.space_group),
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            font=dict(color="black", size=11),
            bgcolor="rgba(255,255,255,0.7)",
        )


def regions_section(
    scan_path: str, size: tuple[int, int], box: tuple[int, int, int, int] | None, places: np.ndarray | None = None
) -> None:
    """Label regions of known phase on the map of ``size`` (rows, columns) and make a dataset of their patterns, to
    train a model on this scan's own patterns. ``places``: those of a scan's points on a hexagonal grid, whose rows
    and columns (:func:`~ebsd_core.io.hex_grid.grid_columns`) the regions are of."""
    st.subheader("Train on this scan's own patterns")
    st.caption(
        f"Where you know the phase of some grains, label them, {FEWEST_REGIONS} or more of each phase: draw a box over "
        "one on the phase map (the box-select tool above it) or give its rows and columns, choose its space group and "
        "add it. The regions make a dataset; train on it on **Train**, best from a model trained on simulated "
        "patterns of these phases, rehearsing them (the page's defaults), and map the scan with the new model."
    )
    rows, cols = size
    first_row, last_row, first_col, last_col = box or (0, min(4, rows - 1), 0, min(4, cols - 1))
    c1, c2, c3, c4, c5 = st.columns([1, 1, 1, 1, 2], vertical_alignment="bottom")
    key = f"{scan_path}-{box}"  # a new box fills the numbers in
    keep_hidden_widgets(*(f"region_{n}-{key}" for n in ("r0", "r1", "c0", "c1")), "region_space_group")
    first_row = c1.number_input("First row", 0, rows - 1, first_row, key=f"region_r0-{key}")
    last_row = c2.number_input("Last row", 0, rows - 1, last_row, key=f"region_r1-{key}")
    first_col = c3.number_input("First column", 0, cols - 1, first_col, key=f"region_c0-{key}")
    last_col = c4.number_input("Last column", 0, cols - 1, last_col, key=f"region_c1-{key}")
    space_group = space_group_choice("Space group of the region", "region_space_group", c5)
    region = MapRegion(space_group or 0, (int(first_row), int(last_row)), (int(first_col), int(last_col)))
    regions = labelled_regions(scan_path)
    if st.button("Add the region", disabled=space_group is None, key="add_region"):
        try:
            region_points([*regions, region], size, places=places)  # refused now, not when the dataset is made
            regions.append(region)
            keep_regions()
            st.rerun()
        except EbsdError as exc:
            show_error(exc)
    if not regions:
        return
    st.dataframe(pd.DataFrame([r.summary(places) for r in regions]), hide_index=True)
    c1, c2 = st.columns(2)
    if c2.button("Clear the regions", key="clear_regions"):
        regions.clear()
        keep_regions()
        st.rerun()
    if c1.button("Make a dataset of these regions", type="primary", key="regions_dataset"):
        make_regions_dataset(scan_path, regions, size if places is None else None)  # a hexagonal grid: the scan's


def make_regions_dataset(scan_path: str, regions: list[MapRegion], nav_shape: tuple[int, int] | None) -> None:
    try:
        with st.spinner("Reading the regions' patterns"):
            dataset = dataset_from_regions(opened_source(scan_path), regions, nav_shape=nav_shape)
            path = write_dataset(dataset, new_session_file("regions"))
    except EbsdError as exc:
        show_error(exc)
        return
    set_active_dataset(path, f"{shown_name(scan_path)}: {len(regions)} regions")
    st.success(f"Dataset ready: {counted(len(dataset.labels), 'pattern')} of {len(regions)} regions. Go to **Train**.")
    for note in few_regions_notes(regions):
        st.warning(note)
    for note in sampling_notes(dataset) + blank_notes(dataset):
        st.caption(note)
    st.info(MAP_REGIONS_CAUTION)


def maps_of_scan(scan_path: str) -> list[dict]:
    """The results of this session's map jobs that mapped the scan ``scan_path``, newest first."""
    return [
        job.result
        for job in job_manager().jobs_of(session_id())  # newest first
        if job.kind == "phasemap" and job.status == "done" and job.result.get("scan") == scan_path
    ]


def demo_pair_of(scan_path: str) -> tuple[str, ...] | None:
    """The phases of the demo scan ``scan_path``, made by a demo map of this session; None for any other scan."""
    return next((tuple(made["demo_pair"]) for made in maps_of_scan(scan_path) if made.get("demo_pair")), None)


def weak_demo_map_hint(saved: PhaseMap, scan_path: str) -> None:
    """Where a model other than the pair's own mapped a demo scan poorly (at its own threshold), what would map it
    well: a six-class model trained for 6 epochs mapped a Ni/Ni3Al demo scan 34 % right, the pair's 99.9 %."""
    accuracy = saved.accuracy()
    if accuracy is None or accuracy >= WEAK_DEMO_MAP or (pair := demo_pair_of(scan_path)) is None:
        return
    used = mapped_with(saved)
    if is_demo_map_model(used, pair):
        return
    phases = " and ".join(material_label(p) for p in pair)
    said = (
        f"{used} mapped {percent(accuracy)} of this demo scan right. A model trained on few patterns, on many classes "
        f"or for few epochs can tell {phases} apart poorly; a 20-shot model for the pair is trained for this map."
    )
    pair_model = latest_demo_map_model(pair)
    if pair_model is None:
        st.info(
            f'{said} To train one and map with it, run the demo map again with "a 20-shot model for the pair" '
            '(under "Map it with" in the Demo scan tab above, where the model chosen knows both phases): the same '
            "grains, in one to three minutes.",
            icon=":material/lightbulb:",
        )
        return
    name = Path(pair_model).name
    st.info(f"{said} One was trained earlier: {name}.", icon=":material/lightbulb:")
    if st.button(f"Map it with {name}", icon=":material/map:", key="map_with_pair_model"):
        map_again(scan_path, name)


def earlier_map_of(scan_path: str, map_path: str) -> str | None:
    """The map this session made of the same scan before the one shown (with another model, say), if its file is
    still here."""
    maps = [made["map"] for made in maps_of_scan(scan_path)]
    if map_path not in maps:
        return None
    return next((made for made in maps[maps.index(map_path) + 1 :] if Path(made).exists()), None)


def changes_since_earlier(phase_map, map_path: str, scan_path: str, place) -> None:
    """Where the map shown reads the scan otherwise than this session's earlier map of it, and how many points."""
    earlier_path = earlier_map_of(scan_path, map_path)
    if earlier_path is None:
        return
    try:
        earlier = cached_phase_map(earlier_path, Path(earlier_path).stat().st_mtime)
        changed = phase_map.changed_since(earlier)
    except (EbsdError, OSError):  # gone or damaged since, or of another shape: nothing to compare with
        return
    title = "changed since the last map: red"
    place.plotly_chart(
        map_figure(phase_map, changed + 0.5, title, discrete_scale(["#dddddd", "#d62728"]), (0, 2)), key="changes"
    )
    then = earlier.accuracy()
    place.caption(
        f"{counted(int(changed.sum()), 'point')} of {phase_map.size:,} ({percent(changed.mean())}) read another phase "
        f"than in the last map of this scan, with {earlier.model}"
        + (f" (map accuracy then {percent(then)})." if then is not None else ".")
    )


def show_map(map_path: str, scan_path: str, model_name: str | None) -> None:
    modified = Path(map_path).stat().st_mtime
    saved = cached_phase_map(map_path, modified)
    st.subheader(f"{shown_name(saved.source)}: {saved.nav_shape[0]} x {saved.nav_shape[1]} points")
    st.caption(f"Mapped with {mapped_with(saved)}.")
    remap_button(saved, model_name)
    show_notes(saved.notes)
    threshold = threshold_slider(saved, map_path)
    phase_map = map_at_threshold(map_path, modified, threshold)
    event, chart_redrawn = draw_maps(phase_map, scan_path)
    scores_section(phase_map, map_path, scan_path)
    weak_demo_map_hint(saved, scan_path)
    box = point_section(phase_map, map_path, scan_path, event, chart_redrawn)
    regions_section(scan_path, phase_map.nav_shape, box)
    export_section(phase_map, map_path, modified, threshold)


def threshold_slider(saved: PhaseMap, map_path: str) -> float:
    """The probability below which a point is unknown: the map, fractions and exports follow it, unmapped again."""
    keep_hidden_widgets(f"threshold-{map_path}")  # the map, fractions and exports as left, after another page
    return st.columns(2)[0].slider(  # beside nothing: the phase map's width
        "Unknown below",
        0.0,
        0.99,
        float(saved.threshold),
        0.01,
        format="%.2f",
        key=f"threshold-{map_path}",
        help=f"A point whose top class has a lower probability than this is unknown (black). The model's own is "
        f"{saved.threshold:.2f}; raise it to mark the points it is unsure of, such as those of a phase it does not "
        "know (which it reads as one of its own). The map, fractions, scores and exports follow it; nothing is "
        "mapped again.",
    )


def draw_maps(phase_map: PhaseMap, scan_path: str) -> tuple[dict | None, bool]:
    """The phase map (clickable, box-selectable) beside the confidence map; returns the phase map's selection event
    and whether the chart was drawn afresh (its selection forgotten after a visit to another page)."""
    shown_rows, shown_cols, step = phase_map.shown_points(MAX_SHOWN_POINTS)
    if step > 1:
        st.caption(
            f"Drawn at one point in {step} along each row and column ({len(shown_rows) * len(shown_cols):,} of "
            f"{phase_map.size:,} points; a screen shows no more). Hover and clicks give each point's own row and "
            "column; the fractions, scores and exports take every point."
        )
    colours = [UNKNOWN_COLOUR] + [p.colour for p in phase_map.phases]
    n = len(colours)
    phase_fig = map_figure(phase_map, phase_map.index + 1 + 0.5, "phase", discrete_scale(colours), (0, n), True)
    draw_regions(phase_fig, labelled_regions(scan_path))
    left, right = st.columns(2)
    chart_redrawn = "phase_map_chart" not in st.session_state  # its selection forgotten: another page was visited
    with left:
        event = st.plotly_chart(phase_fig, on_select="rerun", selection_mode=("points", "box"), key="phase_map_chart")
        phase_swatches([(p.colour, p.label) for p in phase_map.phases] + [(UNKNOWN_COLOUR, "unknown")])
    confidence = np.where(phase_map.blank, np.nan, phase_map.confidence)  # a blank pattern's: a gap, not doubt
    right.plotly_chart(map_figure(phase_map, confidence, "confidence", zrange=(0, 1)), key="conf_map")
    return event, chart_redrawn


def scores_section(phase_map: PhaseMap, map_path: str, scan_path: str) -> None:
    """Phase fractions, mean confidence, and where the ground truth is known the map's accuracy and its errors."""
    fractions = phase_map.fractions()
    fractions_column, metrics_column = st.columns([1, 2])
    fractions_column.dataframe(
        pd.DataFrame({"phase": list(fractions), "fraction": [percent(v) for v in fractions.values()]}), hide_index=True
    )
    accuracy = phase_map.accuracy()
    with metrics_column, metric_row():
        blank = int(np.count_nonzero(phase_map.blank))
        mean = phase_map.mean_confidence
        st.metric(
            "Mean confidence",
            "none" if mean is None else f"{mean:.3f}",
            help=f"Of the {phase_map.size - blank:,} points with a pattern. Blank patterns (dropped frames, points "
            f"without an image) hold nothing to be confident of: this map's {blank:,} "
            f"{'is left out, and is a gap' if blank == 1 else 'are left out, and are gaps'} in the confidence map."
            if blank
            else None,
        )
        if accuracy is not None:
            before = phase_map.summary().get("accuracy_before_cleanup")
            st.metric(
                "Map accuracy (ground truth known)",
                percent(accuracy),
                None if before is None else f"{accuracy - before:+.1%} by the grain clean-up",
                help="The grain clean-up averages each point with its neighbours whose patterns correlate.",
            )
    under = st.columns(2)  # under the phase map and the confidence map, at their size
    if accuracy is not None:
        wrong = (phase_map.index != phase_map.truth) & (phase_map.truth >= 0)
        diff = map_figure(
            phase_map,
            wrong.astype(float) + 0.5,
            "difference: red = wrong",
            discrete_scale(["#dddddd", "#d62728"]),
            (0, 2),
        )
        under[0].plotly_chart(diff, key="diff_map")
    changes_since_earlier(phase_map, map_path, scan_path, under[1 if accuracy is not None else 0])


def point_section(
    phase_map: PhaseMap, map_path: str, scan_path: str, event: dict | None, chart_redrawn: bool
) -> tuple[int, int, int, int] | None:
    """The pattern and probabilities of the point clicked or typed; returns the box selected on the map, if any."""
    selection = event.get("selection", {}) if event else {}
    box = kept_box(selected_box(selection, phase_map.nav_shape), scan_path, chart_redrawn)
    points = selection.get("points", [])
    rows, cols = phase_map.nav_shape
    if points and box is None:  # a click; a box selects every point inside it
        st.session_state.map_point = (int(round(points[0]["y"])), int(round(points[0]["x"])))
    chosen = st.session_state.get("map_point", (0, 0))
    st.caption("Click a point of the phase map, or choose it here, to see its pattern and probabilities.")
    c1, c2 = st.columns(2)
    row_key, col_key = f"pt_row_{map_path}_{chosen}", f"pt_col_{map_path}_{chosen}"  # of this map, not the last one
    keep_hidden_widgets(row_key, col_key)  # a point typed, after a visit to another page
    row = int(c1.number_input("Row", 0, rows - 1, min(chosen[0], rows - 1), key=row_key))
    col = int(c2.number_input("Column", 0, cols - 1, min(chosen[1], cols - 1), key=col_key))
    show_point(phase_map, scan_path, row * cols + col)
    return box


def export_section(phase_map: PhaseMap, map_path: str, modified: float, threshold: float) -> None:
    """A download of the map in each export format, made only when clicked."""
    st.subheader("Export")
    st.caption(f"Orientations: {phase_map.orientations_note}.")
    for suffix in (".ang", ".ctf"):
        if (own := phase_map.own_indexing(suffix)) is not None:
            st.caption(
                f"The {suffix} is {uploaded_name(own)} with the model's phases: its other columns and header its own."
            )
    columns = st.columns(len(EXPORT_FORMATS))
    for column, (suffix, description) in zip(columns, EXPORT_FORMATS.items()):
        reason = unwritable_reason(phase_map, suffix)
        download_button(
            suffix,
            functools.partial(cached_export, map_path, modified, suffix, threshold),  # made only when clicked
            f"{Path(shown_name(phase_map.source)).stem}{suffix}",  # my scan.ang of my scan.h5, as uploaded
            where=column,
            help=f"Not available: {reason}." if reason else description,
            key=f"export{suffix}",
            disabled=reason is not None,
        )


if pending := st.session_state.pop("map_model_pending", None):
    st.session_state.model_name = pending  # the picker, drawn next, follows it
model_name = model_choice()
scan = choose_scan(model_name)
if scan is not None and model_name:
    start_map(model_name, scan)


def job_to_show() -> str | None:
    """The map job of this session to show: the page's, or after a browser reload (which empties the session state)
    one still running, else the latest that made a map, whose map is then shown again."""
    if job := st.session_state.get("map_job") or latest_job_shown_on("pages/phasemap.py", "unfinished"):
        return job
    return None if st.session_state.get("map_path") else latest_job_shown_on("pages/phasemap.py", "done")


if map_job := job_to_show():
    st.session_state.map_job = map_job
    show_job(map_job, job_progress)
if st.session_state.get("map_path") and Path(st.session_state.map_path).exists():
    try:
        show_map(st.session_state.map_path, st.session_state.map_scan, model_name)
    except EbsdError as exc:
        show_error(exc)
elif predictions := st.session_state.get("map_predictions"):
    show_predictions(predictions, model_name)
