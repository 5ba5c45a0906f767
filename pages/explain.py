"""Explain: what the network looks at, for one pattern and one class."""

from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from ebsd_core.errors import EbsdError
from ebsd_core.explain import SHAP_METHODS, ConvMaps, conv_map_sizes, default_activation_layer
from ebsd_core.explain_report import explain_pattern
from ebsd_core.io.readers import PatternSource
from ebsd_core.phasemap import saved_map_header
from ebsd_core.phases import material_label
from ebsd_core.store import default_store, list_models, read_card
from pages.common import (
    active_dataset_name,
    active_dataset_path,
    download_button,
    enter_page,
    for_the_user,
    keep_hidden_widgets,
    keep_hidden_widgets_of,
    kept_tabs,
    metric_row,
    one_scan_upload_or_folder,
    opened_source,
    select_model,
    server_path_input,
    show_error,
    show_notes,
    show_source_warnings,
    shown_name,
    sweep_partner,
)

enter_page()

st.title("Explain")
st.caption(
    "Filters, activation maps, Grad-CAM and Shapley values (SHAP) show what the network uses. Green lines mark the "
    "Kikuchi bands of the pattern's true orientation and magenta lines the superlattice bands, when the pattern is "
    "simulated and its geometry is known: a model that uses physics puts its evidence on them."
)

METHOD_LABELS = {
    "gradcam": "Grad-CAM (fast)",
    "shap": "SHAP (Shapley values)",
    "activations": "Activation maps",
    "filters": "First-layer filters",
}


#: The start of the session-state keys of the pickers kept while another method hides them (the filters take no
#: pattern, activation maps no class).
KEPT_KEY = "explain-kept-"


def kept_choice(name: str, options: Sequence, default) -> str:
    """The session-state key of a picker of ``options`` kept while another method hides it (``name`` says whose): its
    value stays, or becomes ``default`` at first and where the options no longer hold it."""
    key = f"{KEPT_KEY}{name}"
    if st.session_state.get(key) not in options:
        st.session_state[key] = default
    return key


def pattern_keys(source: str, sent: tuple[int, ...] | None, limits: dict[str, int]) -> list[str]:
    """The kept pickers of a source's pattern (``limits``: the largest "index", or "row" and "col"), set to ``sent`` (a
    pattern sent from another page) or else as they were (0 at first)."""
    keys = []
    for number, (name, most) in enumerate(limits.items()):
        if sent:
            st.session_state[f"{KEPT_KEY}{name}-{source}"] = int(sent[number])
        keys.append(kept_choice(f"{name}-{source}", range(most + 1), 0))
    return keys


@st.cache_data(max_entries=32, show_spinner="Computing the explanation")
def cached_explanation(
    model_dir: str,
    modified: float,
    source: str,
    source_modified: float,
    index: int,
    method: str,
    target,
    shap_method,
    views: dict | None,
    layer: str | None,
    compare: str | None,
):
    """One explanation per model and source file version (an upload of the same name replaces the file)."""
    explanation = explain_pattern(
        model_dir,
        source,
        index,
        method,
        target=target,
        layer=layer,
        compare=compare,
        shap_method=shap_method,
        views=views,
    )
    return explanation.figures, explanation.captions, explanation.numbers, explanation.notes


def layer_picker(place, sizes: dict[str, ConvMaps], default: str, key: str, help: str) -> str:
    """A picker of a model's convolutions (``sizes``, input to output), named with their maps' size."""
    names = list(sizes)
    return place.selectbox(
        "Layer (input to output)",
        names,
        format_func=lambda n: f"{n} ({sizes[n].height} px)",  # square maps of a square input
        key=kept_choice(key, names, default),
        help=help,
    )


@st.cache_data(max_entries=16, show_spinner=False)
def layer_map_sizes(model_dir: str, modified: float, input_size: int) -> dict[str, ConvMaps]:
    """The model's convolutions and their maps (number, height, width), input to output; its own copy of the model,
    as hooks on the shared one would meet other sessions' passes."""
    from ebsd_core.store import load_model

    return conv_map_sizes(load_model(model_dir)[0], input_size)


def session_map_header(source_path: str, count: int) -> dict | None:
    """What the session's phase map records of itself (its rows and columns, the views its points got) when
    ``source_path`` is its scan, else None."""
    map_path = st.session_state.get("map_path")
    if source_path != st.session_state.get("map_scan") or not map_path:
        return None
    header = saved_map_header(map_path)
    rows, cols = (header or {}).get("nav_shape") or (0, 0)
    return header if rows * cols == count else None


#: The most images a folder's pattern picker lists by name; a larger folder's patterns are picked by index (a
#: picker sends all its names to the browser), their names shown once explained.
MOST_NAMED = 10_000


def file_names(opened: PatternSource) -> list[str] | None:
    """The image file of each of a folder's or zip's patterns (``Fm-3m/p3.png``), as a page shows them; None for a file
    of patterns, and for a folder of more than :data:`MOST_NAMED` images."""
    if len(opened) > MOST_NAMED or not opened.named_images:
        return None
    return [opened.file_name(index) for index in range(len(opened))]


def image_name_box(place, opened: PatternSource, source_path: str, index_key: str) -> None:
    """A box for the name of one of a large folder's images (over :data:`MOST_NAMED`, too many to list): the name
    typed picks its pattern's index, or is said to be none of the folder's."""
    name_key = f"explain-image-name-{source_path}"

    def find() -> None:
        if name := st.session_state.get(name_key, "").strip():
            try:
                st.session_state[index_key] = opened.index_of_file(name)
            except EbsdError as exc:  # kept in the box, to be mended
                st.session_state[f"{name_key}-problem"] = str(exc)
                return
            st.session_state[name_key] = ""  # found: the index shows it, and the pattern's title its name

    place.text_input(
        "Or an image's name", key=name_key, on_change=find, placeholder="p12.png", help="Its index is then picked."
    )
    if problem := st.session_state.pop(f"{name_key}-problem", None):
        st.error(for_the_user(problem))


def _truth(numbers: dict) -> str:
    """What the dataset says the pattern is: ``"; true class: Pm-3m (Al3Sc)"``, or nothing when it does not say."""
    material = material_label(numbers["material"]) if numbers.get("material") else None
    if numbers.get("true_class"):
        return f"; true class: **{numbers['true_class']}**" + (f" ({material})" if material else "")
    return f"; true material: {material}" if material else ""


models = [m for m in list_models() if not m.get("error")]
if not models:
    st.info("No saved model yet: train one on **Train** or run a demo first.")
    st.stop()
model_name = select_model([m["name"] for m in models])
model_dir = default_store() / model_name
try:  # another session may delete the model after the picker listed it
    card = read_card(model_dir)
    weights_modified = (model_dir / "weights.safetensors").stat().st_mtime
except (EbsdError, OSError) as exc:
    show_error(exc)
    st.stop()

sources = {}
if active_dataset_path():
    sources[f"dataset: {active_dataset_name()}"] = str(active_dataset_path())
if st.session_state.get("map_scan") and Path(st.session_state.map_scan).exists():
    sources[f"phase-map scan: {shown_name(st.session_state.map_scan)}"] = st.session_state.map_scan
# a map's scan, or (from Results) a model's training data or the patterns a model was scored on
sent_from = st.session_state.get("explain_from")
# a file already offered under another spelling of its path (a model's card records it resolved) is that one
if sent_from:
    sent_from = next((p for p in sources.values() if Path(p).resolve() == Path(sent_from).resolve()), sent_from)
if sent_from and sent_from not in sources.values() and Path(sent_from).exists():
    sources[f"{st.session_state.get('explain_from_kind', 'training data')}: {shown_name(sent_from)}"] = sent_from
# measured on the 2-core CPU with EfficientNet-Lite0: 4 s at a 128 px input, 25 s at 224 px (bench/RESULTS.md)
shap_time = "about 25 s on a 2-core CPU" if card.input_size > 160 else "a few seconds"
labels = METHOD_LABELS | {"shap": f"SHAP (Shapley values, {shap_time})"}
keep_hidden_widgets_of(KEPT_KEY)
keep_hidden_widgets("explain_method")  # the method last used, after a visit to another page
if "explain_index" in st.session_state and st.session_state.get("explain_method") == "filters":
    st.session_state.explain_method = "gradcam"  # a pattern sent here is shown, which the filters are not of
method = st.radio("Method", list(labels), format_func=labels.get, horizontal=True, key="explain_method")
source_path, index, target, shap_method, pattern_name, map_views = None, 0, None, SHAP_METHODS[0], "", None
layer, compare = None, None
if method == "filters":  # the paper's comparison: a transfer model's filters beside its scratch twin's
    others = [m["name"] for m in models if m["name"] != model_name]
    partner = sweep_partner(model_name, others)
    options = ["no other model", *others]
    beside = st.selectbox(
        "Beside the filters of",
        options,
        key=kept_choice(f"beside-{model_name}", options, partner or options[0]),
        help="Another saved model's first-layer filters, drawn beside these: a model trained from scratch keeps "
        "few of the edge and blob detectors that ImageNet gives a transfer model. A model trained beside this one "
        "(transfer and scratch, side by side on Train) is chosen at first.",
    )
    compare = None if beside == "no other model" else str(default_store() / beside)
if method != "filters":
    tab_upload, tab_server = kept_tabs(["Upload", "Server path"], key="explain_tab")
    with tab_upload:
        uploaded = one_scan_upload_or_folder(
            "Explain a pattern of your own (an image, or a scan file; a NORDIF Pattern.dat together with its "
            "Setting.txt)",
            key="explain_upload",
            folder_label="Or a folder: images (in class folders, to see each one's true class), a scan exported as "
            "images, or a NORDIF acquisition",
        )
    with tab_server:  # a lab's scans on the server's disk, too large to upload for a look at one pattern
        on_server = server_path_input("Scan path", "explain patterns of large scans", key="explain_server_path")
    # given just now: a path typed since the last run, or an upload in its uploader (not one kept while hidden)
    typed = str(on_server) if on_server else None
    fresh = typed not in (None, st.session_state.get("explain_server_seen")) or (
        uploaded is not None and any(st.session_state.get(k) for k in ("explain_upload", "explain_upload-folder"))
    )
    st.session_state.explain_server_seen = typed
    if on_server is not None:  # as on Phase map and Results, a path typed takes the upload's place
        sources = {f"server: {shown_name(on_server)}": str(on_server)} | sources  # the one given first
    elif uploaded is not None:
        sources = {f"upload: {shown_name(uploaded)}": str(uploaded)} | sources
    if not sources:
        st.info(
            "No patterns yet: upload one above (or give its path on the server), choose a dataset on **Data**, or "
            "make a phase map first."
        )
        st.stop()
    paths = list(sources.values())
    # a file just uploaded (first) comes first; then a pattern just sent from another page (of the Phase map's scan, or
    # a model's training data); else the source last chosen, which the filters hid
    chosen = st.session_state.get("explain_source")
    if sent_from not in paths:  # a pattern sent of a file gone since: nothing to open it in
        st.session_state.pop("explain_index", None)
    if not fresh and "explain_index" not in st.session_state and chosen in paths:
        first = paths.index(chosen)
    else:
        first = 0 if fresh or sent_from not in paths else paths.index(sent_from)
    label = st.selectbox("Patterns from", list(sources), index=first)
    source_path = st.session_state.explain_source = sources[label]
    try:
        opened = opened_source(source_path)
    except EbsdError as exc:
        show_error(exc)
        st.stop()
    show_source_warnings(shown_name(source_path), opened)
    count = len(opened)
    # a pattern sent from Results or the Phase map, once; the pattern chosen of each source stays while another
    # method (the filters) hides the pickers
    sent = st.session_state.pop("explain_index", None) if source_path == sent_from else None
    sent = None if sent is None else min(int(sent), count - 1)
    map_header = session_map_header(source_path, count)
    if map_header and map_header.get("model") == card.name:  # its model answers as on the map
        map_views = map_header.get("views") or None
    # the rows and columns the session's map gave the scan (one exported as images has none of its own), else its own
    grid = map_header["nav_shape"] if map_header else opened.nav_shape
    if grid and len(grid) == 2:  # a scan's point is found by its row and column, as on the Phase map page
        # labels wrap on narrow pages; activation maps take no class, so their layer picker gets its room (a 1,024 px
        # screen cut "blocks.1.0.conv_pw (64 px)" short)
        widths = [1, 1, 4] if method == "activations" else [1, 1, 2, 2]
        c1, c2, c3, *rest = st.columns(widths, vertical_alignment="bottom")
        c4 = rest[0] if rest else None
        rows, cols = grid
        row_key, col_key = pattern_keys(
            source_path, None if sent is None else divmod(sent, cols), {"row": rows - 1, "col": cols - 1}
        )
        row = int(c1.number_input(f"Row (0 to {rows - 1})", 0, rows - 1, key=row_key))
        col = int(c2.number_input(f"Column (0 to {cols - 1})", 0, cols - 1, key=col_key))
        index, pattern_name = row * cols + col, f"Row {row}, column {col}"
    else:
        widths = [1, 2] if method == "activations" else [1, 1, 1]
        c1, c3, *rest = st.columns(widths, vertical_alignment="bottom")
        c4 = rest[0] if rest else None
        (index_key,) = pattern_keys(source_path, None if sent is None else (sent,), {"index": count - 1})
        if names := file_names(opened):  # a folder's images are known by their names: picked by them, searchably
            index = c1.selectbox(
                f"Pattern ({count:,} images)",
                range(count),
                format_func=names.__getitem__,
                key=index_key,
                help="The images in the order of their names (p2 before p10). Type part of a name to find it.",
            )
        else:
            index = int(c1.number_input(f"Pattern index (0 to {count - 1})", 0, count - 1, key=index_key))
            if opened.named_images:  # too many images to list: found by a name typed
                image_name_box(c1, opened, source_path, index_key)
        pattern_name = f"Pattern {index}"
    if file_name := opened.file_name(index):  # a scan exported as images, class folders
        pattern_name += f" ({file_name})"
    if method != "activations":  # what a layer responds to does not depend on a class
        targets = ["predicted class", *card.class_symbols]
        choice = c3.selectbox("Class to explain", targets, key=kept_choice(f"class-{model_name}", targets, targets[0]))
        target = None if choice == "predicted class" else card.class_symbols.index(choice)
    if method in ("activations", "gradcam"):  # both read a layer's maps
        try:
            sizes = layer_map_sizes(str(model_dir), weights_modified, card.input_size)
        except EbsdError as exc:  # weights that cannot be read: said here, as the explanation would say it
            show_error(exc)
            st.stop()
    if method == "activations":  # early layers show the bands, deeper ones parts of them at coarser scales (--layer)
        layer = layer_picker(
            c3,
            sizes,
            default_activation_layer(sizes, card.input_size),
            f"layer-activations-{model_name}",
            "The convolutions of the network, from its first (the pattern at half its size) to its last. Early "
            "layers follow bands and edges; deeper ones answer to parts of bands and zone axes on ever coarser maps.",
        )
    if method == "gradcam":
        layer = layer_picker(
            c4,
            sizes,
            list(sizes)[-1],
            f"layer-gradcam-{model_name}",
            "Grad-CAM weighs this layer's maps by how much they raise the class's score. The last (the default) is "
            "the most specific to the class but coarse (a 128 px input gives it 4 x 4 px maps); earlier layers give "
            "finer maps that say less of the class.",
        )
    if method == "shap":
        shap_method = c4.radio(
            "SHAP explainer",
            SHAP_METHODS,
            horizontal=True,
            key=kept_choice("shap-method", SHAP_METHODS, SHAP_METHODS[0]),
            help="deep: DeepLIFT, whose values add up exactly to the class's score; where it cannot follow the "
            "network (ResNet, ConvNeXt, MobileNetV3) the caption says so and gradient is used. gradient: expected "
            "gradients, sampled at random, so the values add up only on average and other samples change the map in "
            "detail.",
        )

if st.button("Explain", type="primary") or st.session_state.get("explain_shown") == (model_name, method, index):
    st.session_state.explain_shown = (model_name, method, index)
    try:
        source_modified = Path(source_path).stat().st_mtime if source_path else 0.0
        figures, captions, numbers, notes = cached_explanation(
            str(model_dir),
            weights_modified,
            source_path,
            source_modified,
            index,
            method,
            target,
            shap_method,
            map_views,
            layer,
            compare,
        )
    except (EbsdError, OSError) as exc:  # OSError: a file gone since the page was drawn
        show_error(exc)
        st.stop()
    if "predicted" in numbers:
        top = f"{numbers['predicted']}** ({numbers['probabilities'][numbers['predicted']]:.0%})"
        if numbers.get("decision") == "unknown":
            answer = f"**unknown**: top class **{top}, below the model's {numbers['threshold']:.0%} threshold"
        else:
            answer = f"predicted **{top}"
        st.write(f"{pattern_name}: {answer}; explaining **{numbers['explained_class']}**{_truth(numbers)}")
        if map_views and map_views.get("own"):
            st.caption(
                "The pattern alone, with the views the phase map gave it: the map's answer before its grain clean-up, "
                "which averages each point with its grain."
            )
        show_notes(notes)
    bands = numbers.get("bands")
    if bands:
        with metric_row():
            st.metric("Evidence on Kikuchi bands", f"{bands['band_mass']:.0%}", help="share of |attribution| on bands")
            st.metric("Band pixels", f"{bands['band_area']:.0%}", help="share of the pattern the bands cover")
            st.metric("Enrichment", f"{bands['band_enrichment']:.2f}x", help="above 1: the model looks at bands")
        if "superlattice_mass" in bands:
            st.caption(
                f"Superlattice bands hold {bands['superlattice_mass']:.0%} of the evidence on "
                f"{bands['superlattice_area']:.0%} of the pixels (enrichment {bands['superlattice_enrichment']:.2f}x)."
            )
    # grids of filters side by side, to compare; a pattern's figures one under the other, each as wide as it was drawn
    # or the page is: in half a 1,024 px page SHAP's panels and class names were unreadable
    columns = st.columns(2) if method == "filters" and len(figures) > 1 else [st.container()]
    places = [columns[i % len(columns)] for i in range(len(figures))]
    for name, place in zip(figures, places):
        place.image(figures[name], caption=captions.get(name, ""))
        download_button(f"Download {name}.png", figures[name], f"{name}.png", where=place, key=f"dl-{name}")
    if method == "filters" and numbers.get("change_ranking"):
        st.caption("Filters that fine-tuning changed most (Euclidean distance):")
        st.dataframe(numbers["change_ranking"], hide_index=True)
