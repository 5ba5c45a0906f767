"""Results: curves, confusion matrices, per-class scores and downloads for any saved model."""

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ebsd_core.errors import EbsdError
from ebsd_core.io.dataset import made_by_simulator
from ebsd_core.jobs import FINISHED
from ebsd_core.phases import catalogue_material, material_label, space_group_symbol
from ebsd_core.store import (
    VALIDATION_TARGET,
    default_store,
    delete_model,
    delete_problem,
    import_model,
    list_models,
    model_as_seen,
    model_zip,
    read_card,
)
from ebsd_core.wording import counted, since
from ebsd_core.workflows import MAX_MISREAD_LISTED, misclassified_test_patterns, score_job
from pages.common import (
    SWEEP_NAME,
    active_dataset_name,
    active_dataset_path,
    cached_model,
    confusion_figure,
    confusion_png,
    curves_figure,
    download_button,
    enter_page,
    for_the_user,
    how_trained_section,
    in_another_sessions_folder,
    job_manager,
    keep_hidden_widgets,
    kept_tabs,
    latest_job_shown_on,
    make_current,
    metric_row,
    modified_time,
    montage_figure,
    one_scan_upload_or_folder,
    opened_source,
    select_model,
    send_to_explain,
    server_path_input,
    session_id,
    show_error,
    show_job,
    show_notes,
    show_unfinished_job,
    shown_name,
    space_group_choice,
    start_job,
    store_write_problem,
    test_set,
    tidy,
    trained_on_here,
    upload_to_session,
)

enter_page()


def sweep_runs(prefix: str, models: list[dict]) -> dict[str, dict[int, list[dict]]]:
    """The models of one sweep (:data:`SWEEP_NAME`) by initialisation ("transfer", "scratch") and shots per class,
    each shots' repeats together."""
    runs: dict[str, dict[int, list[dict]]] = {}
    for m in models:
        match = SWEEP_NAME.match(m["name"])
        if match and match["prefix"] == prefix:
            runs.setdefault(match["mode"], {}).setdefault(int(match["shots"]), []).append(m)
    return runs


def sweep_speed_table(prefix: str, models: list[dict]) -> pd.DataFrame | None:
    """The epoch each run of a sweep first reached 95 % validation accuracy (the mean of its repeats that did), by
    shots per class and initialisation: the paper's other measure of transfer against scratch. None for a sweep of
    one run."""
    runs = sweep_runs(prefix, models)
    if sum(len(by_shots) for by_shots in runs.values()) < 2:
        return None
    table: dict[str, dict[int, str]] = {}
    for mode, by_shots in runs.items():
        for shots, group in by_shots.items():
            reached = [m["epochs_to_95"] for m in group if m["epochs_to_95"] is not None]
            most = max(m["epochs_run"] for m in group)
            table.setdefault(mode, {})[shots] = (
                f"not in {counted(most, 'epoch')}"
                if not reached
                else f"{np.mean(reached):.3g}"
                + (f" ({len(reached)} of {len(group)})" if len(reached) < len(group) else "")
            )
    order = [mode for mode in ("transfer", "scratch") if mode in table]  # the paper's order
    return pd.DataFrame(table)[order].sort_index().rename_axis("shots per class")


def sweep_figure(prefix: str, models: list[dict], scored_on: str = "unseen orientations") -> go.Figure | None:
    """Accuracy vs shots per class for the models of one sweep (name-transfer-kN, name-scratch-kN, and their
    repeats -sS), on their test sets (``scored_on``, as the page names them): the mean of a point's repeats, with
    their standard deviation as error bars."""
    runs = sweep_runs(prefix, [m for m in models if m.get("accuracy") is not None])
    points = {
        mode: {k: [m["accuracy"] for m in group] for k, group in by_shots.items()} for mode, by_shots in runs.items()
    }
    if sum(len(v) for v in points.values()) < 2:
        return None
    classes = max(
        len(m.get("classes") or []) for by_shots in runs.values() for group in by_shots.values() for m in group
    )
    fig = go.Figure()
    for mode, by_shots in sorted(points.items(), key=lambda item: item[0] != "transfer"):  # the paper's order
        shots = sorted(by_shots)
        repeats = [by_shots[k] for k in shots]
        spread = dict(type="data", array=[float(np.std(r)) for r in repeats]) if max(map(len, repeats)) > 1 else None
        fig.add_trace(
            go.Scatter(
                x=shots,
                y=[float(np.mean(r)) for r in repeats],
                error_y=spread,
                customdata=[len(r) for r in repeats],
                hovertemplate="%{x} shots: %{y:.3f} (mean of %{customdata})",
                mode="lines+markers",
                name=mode,
            )
        )
    if classes:  # scratch training on a few shots is often there: a teacher's point
        fig.add_hline(
            1 / classes,
            line_dash="dot",
            line_color="grey",
            annotation_text="chance",
            annotation_position="bottom right",
        )
    # ticked at the shots trained (a sweep of 5 and 10 was ticked 5, 6, 7, 8, 9, 10)
    shots = sorted({k for by_shots in points.values() for k in by_shots})
    axes = {"xaxis_title": "training patterns per class", "xaxis_type": "log", "yaxis_title": scored_on}
    return tidy(fig, 320, **axes).update_xaxes(tickvals=shots)


def weights_mtime(model_dir: Path) -> float:
    return (model_dir / "weights.safetensors").stat().st_mtime


@st.cache_data(max_entries=8, show_spinner="Finding misclassified test patterns")
def misclassified(model_dir: str, modified: float, dataset_path: str):
    """Cached per model (folder and weights' modification time) and dataset file: it runs the model on up to 600
    patterns, which must not happen on every rerun of the page."""
    return misclassified_test_patterns(*cached_model(model_dir, modified), dataset_path=dataset_path)


@st.cache_data(max_entries=4, show_spinner=False)  # made on the click, where no page can show one
def cached_model_zip(name: str, modified: float) -> bytes:
    """The zip of the model as the page showed it, also when deleted or saved again since (:func:`model_as_seen`)."""
    return model_zip(model_as_seen(name, modified), name)


cached_confusion_png = st.cache_data(max_entries=16)(confusion_png)


def same_lattice_table(confusions: dict[str, float]) -> pd.DataFrame:
    """The metrics' ``{"Fm-3m as Pm-3m": 0.2}`` as rows of true class, read as, fraction."""
    rows = [(*key.split(" as "), f"{fraction:.1%}") for key, fraction in confusions.items()]
    return pd.DataFrame(rows, columns=["true class", "read as", "fraction"])


def per_material_table(metrics: dict) -> pd.DataFrame:
    """Each material's accuracy, by space group in the model's class order: rows of material (named as a
    microscopist would), space group, accuracy, n. On cards saved before the space group was recorded, a catalogue
    material's is looked up and any other's left blank."""
    order = {symbol: i for i, symbol in enumerate(metrics.get("classes", []))}
    rows = [
        {
            "material": material_label(key),
            "space group": row.get("space_group") or getattr(catalogue_material(key), "symbol", ""),
            "accuracy": row["accuracy"],
            "n": row["n"],
        }
        for key, row in metrics["per_material"].items()
    ]
    return pd.DataFrame(sorted(rows, key=lambda r: (order.get(r["space group"], len(order)), r["material"].lower())))


def _score(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:.3f}"


def _scored_on(metrics: dict) -> str | None:
    """How many patterns the accuracies rest on, and what one of them is worth: a 10-pattern test split moves by 0.1."""
    parts = [
        f"{counted(n, noun)} (each {1 / n:.3f} of the accuracy)"
        for split, noun in (("test", "test pattern"), ("holdout", "held-out pattern"))
        if (n := metrics.get(split, {}).get("patterns"))
    ]
    return f"Scored on {' and '.join(parts)}." if parts else None


def show_scores(metrics: dict, normalise: bool, key: str | None = None) -> None:
    """A set of scores (a split of the model's, or of a dataset it was scored on): confusion matrix and tables."""
    st.plotly_chart(confusion_figure(metrics["confusion_matrix"], metrics["classes"], normalise), key=key)
    table = pd.DataFrame(metrics["per_class"]).T
    st.dataframe(table.style.format({"precision": "{:.3f}", "recall": "{:.3f}", "f1": "{:.3f}", "support": "{:.0f}"}))
    if metrics.get("same_lattice_confusion"):
        st.caption("Same-lattice confusions: the fraction of each true class read as the other class of its lattice")
        st.dataframe(same_lattice_table(metrics["same_lattice_confusion"]), hide_index=True)
    if metrics.get("per_material"):
        st.caption("Accuracy of each material (n: its patterns scored here):")
        st.dataframe(per_material_table(metrics).style.format({"accuracy": "{:.3f}", "n": "{:.0f}"}), hide_index=True)


SCORE_ON = ("A scan of one known phase", "The session's dataset")


def score_section(choice: str, classes: list[int], normalise: bool) -> None:
    """Score the model on patterns of known phases (the CLI's ``evaluate``): a reference scan of one phase, or the
    session's dataset (scans of known phases, real patterns in class folders, another simulation), as a job; its
    result stays with the model it scored."""
    job_id = st.session_state.get("score_job") or latest_job_shown_on("pages/results.py")
    state = job_manager().get(job_id) if job_id else None
    shown = state is not None and (state.status not in FINISHED or state.params.get("model") == choice)
    with st.expander("Score it on other data", expanded=shown):
        keep_hidden_widgets("score_on", "score_space_group")  # the server path input keeps its own
        on = st.radio("Patterns of known phases", SCORE_ON, horizontal=True, key="score_on")
        if on == SCORE_ON[0]:
            path, group, groups = scan_to_score()
            name = shown_name(path) if path else ""
            ready = bool(groups) and knows_them(choice, classes, groups)
        else:
            path, group = active_dataset_path(), None
            st.caption(
                "Made on **Data**. On the dataset the model was trained on, the patterns it was trained and "
                "validated on are left out."
            )
            if path is None:
                st.info("No dataset in this session: choose or make one on **Data**.")
            name = active_dataset_name()
            ready = path is not None and knows_them(choice, classes, dataset_classes(path))
        if ready and st.button(f"Score {choice} on {name}"):
            model_dir = str(default_store() / choice)
            job = start_job(
                "score",
                f"{choice} on {name}",
                lambda ctx: score_job(ctx, model_dir, str(path), group, name),
                {"model": choice, "dataset_path": str(path), "space_group": group},
            )
            if job:
                st.session_state.score_job = job_id = job
                shown = True
        if shown:
            show_job(job_id, lambda job: score_panel(job, normalise))


def knows_them(choice: str, classes: list[int], groups: list[int]) -> bool:
    """Whether the model knows every one of ``groups``; if not, says so (at once, not when a job has started)."""
    unknown = [g for g in groups if g not in classes]
    if unknown:
        known = ", ".join(space_group_symbol(c) for c in classes)
        st.warning(
            f"{choice} knows {known}: it reads any other phase as one of these, so it cannot be scored on "
            f"{', '.join(space_group_symbol(g) for g in unknown)}."
        )
    return not unknown


def dataset_classes(path: Path) -> list[int]:
    """The space groups of the labelled patterns at ``path`` (a dataset, class folders); none for a scan, or when it
    cannot be read (the job will say why)."""
    try:
        return list(opened_source(path).classes or [])
    except EbsdError:
        return []


def scan_to_score() -> tuple[Path | None, int | None, list[int]]:
    """A scan (or image, or folder of images) of one phase, uploaded or on the server, with its space group; or
    patterns labelled already (class folders, a dataset file), scored on their own labels (no space group asked).
    Also the space groups it holds (none until one is chosen)."""
    upload, server = kept_tabs(["Upload", "Server path"], key="score_tab")
    with upload:
        path = one_scan_upload_or_folder(
            "A scan of one phase (a scan file, a NORDIF Pattern.dat together with its Setting.txt, images)",
            key="score_upload",
            folder_label="Or a folder: a scan exported as images, a NORDIF acquisition, or class folders of images",
        )
    with server:
        path = server_path_input("Scan path", "score models on their scans", key="score_server_path") or path
    if path is None:
        return None, None, []
    if labelled := dataset_classes(path):  # a tree's labelled set, as the server path lists it
        symbols = ", ".join(space_group_symbol(group) for group in labelled)
        st.caption(f"{shown_name(path)} holds labelled patterns of {symbols}: scored on their own labels.")
        return path, None, labelled
    group = space_group_choice("Its space group", key="score_space_group")
    return path, group, [] if group is None else [group]


def score_panel(job_id: str, normalise: bool) -> None:
    """The session's scoring job: queue, progress and Cancel; once done, its scores."""
    state = job_manager().get(job_id)
    if state is None or state.owner != session_id():
        return
    if state.status == "done":
        metrics = state.result["metrics"]
        st.markdown(f"**{state.title}**")
        with metric_row():
            st.metric("Accuracy", _score(metrics.get("accuracy")))
            st.metric("Patterns scored", f"{metrics.get('patterns', 0):,}")
            st.metric("Calibration error (ECE)", _score(metrics.get("ece")))
        show_notes(state.result.get("notes", []))
        show_scores(metrics, normalise, key=f"score-{job_id}")
        if misread := metrics.get("misread"):
            misread_section(job_id, state.result["model"], state.result["dataset"], misread)
        scored = {"model": state.result["model"], "data": state.result["dataset"], **metrics}
        name = f"{state.result['model']}-on-{Path(shown_name(state.result['dataset'])).stem}-scores.json"
        download_button("Scores (JSON)", json.dumps(scored, indent=1), name, "application/json", key=f"dl-{job_id}")
    elif state.status in FINISHED:
        st.error(for_the_user(f"{state.title}: {state.status}: {state.error or state.message}"))
    else:
        show_unfinished_job(job_id, state, "cancel_score", f"{state.title}: {state.message or state.status}")


def add_model_section(expanded: bool) -> bool:
    """Bring in a model trained on another machine (a GPU workstation, the command line), checked before it is
    listed. Whether one was added."""
    with st.expander("Add a model trained elsewhere", expanded=expanded):
        if problem := store_write_problem():
            st.caption(problem)
            return False
        upload = st.file_uploader(
            "Model zip (weights.safetensors + model.json, as this page downloads it)", type="zip", key="model_zip"
        )
        name = st.text_input("Name (empty: the name it was saved under)", key="model_zip_name").strip()
        if upload is not None and st.button("Add to the models", key="model_zip_add"):
            try:
                target = import_model(upload_to_session(upload, "model_zip"), name or None)
            except EbsdError as exc:
                show_error(exc)
            else:
                st.session_state.model_name = target.name
                st.success(f"Added {target.name}.")
                return True
    return False


def explain_one_of(model_name: str, patterns: dict[str, int], path: str, key: str, kind: str) -> None:
    """A misread pattern sent to the Explain page (``patterns``: each one's title and index in the file at ``path``,
    which the page then offers, named by ``kind``)."""
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    keep_hidden_widgets(key)  # as chosen, after a visit to another page
    title = left.selectbox("Explain one of them", list(patterns), key=key)
    if right.button("Explain it", icon=":material/visibility:", key=f"{key}-go"):
        send_to_explain(model_name, path, int(patterns[title]), kind)


def misread_title(pattern: dict) -> str:
    """A misread pattern of a score (:func:`ebsd_core.workflows.misread_patterns`) as the user finds it: by its row
    and column in a scan (and its file, where its images are named by their points), by its file in a folder, else by
    its place in the file."""
    file = pattern.get("file")
    if "row" in pattern:  # a scan exported as images named by their points: both
        return f"Row {pattern['row']}, column {pattern['column']}" + (f" ({file})" if file else "")
    return file or f"#{pattern['index']}"


#: The misread patterns of a score drawn above their table: two rows of six.
MISREAD_DRAWN = 12


@st.cache_data(max_entries=8, show_spinner=False)
def drawn_patterns(path: str, modified: float, indices: tuple[int, ...]) -> np.ndarray:
    """The patterns at ``indices`` (increasing) of the file at ``path``, read once per version of it, not at every
    rerun of the page."""
    return np.asarray(opened_source(path).take(np.array(indices)), dtype=np.float32)


def drawn_title(pattern: dict, most: int = 11) -> str:
    """A misread pattern's title over its drawing, no wider than it (six to a row on a 1,024 px screen, 16 letters ran
    into the next): its row and column (two lines), else its image's own name (``p3.png`` of ``Fm-3m/p3.png``; where
    it is longer than ``most``, the start and the longer end of its stem), else its place in the file."""
    if "row" in pattern:  # on two lines: "Row 12, column 130" is wider than the drawing
        return f"row {pattern['row']}<br>column {pattern['column']}"
    if "file" not in pattern:
        return f"#{pattern['index']}"
    name = pattern["file"].rsplit("/", 1)[-1]
    if len(name) <= most:
        return name
    stem, head = name.rsplit(".", 1)[0], (most - 1) // 3  # the end tells names apart more often (x0_y3, x0_y4)
    return stem if len(stem) <= most else f"{stem[:head]}…{stem[head + 1 - most :]}"


def misread_section(job_id: str, model_name: str, data_path: str, misread: list[dict]) -> None:
    """The patterns a score read as another class: what each is and was read as, and any of them to explain."""
    listed = f" (the first {MAX_MISREAD_LISTED})" if len(misread) >= MAX_MISREAD_LISTED else ""
    st.markdown(f"**Misread patterns**{listed}")
    titles = [misread_title(pattern) for pattern in misread]
    shown = misread[:MISREAD_DRAWN]
    try:  # the first few drawn, as the misclassified test patterns are: a glance finds a blank or a dim one
        patterns = drawn_patterns(data_path, modified_time(data_path), tuple(p["index"] for p in shown))
    except (EbsdError, IndexError) as exc:  # the file gone or changed since: the table still says which they were
        st.caption(f"Not drawn: {for_the_user(str(exc))}")
    else:
        three_lines = [f"{drawn_title(p)}<br>{p['true']}<br>as {p['predicted']}" for p in shown]
        st.plotly_chart(montage_figure(patterns, three_lines, columns=6))
    table = {
        "pattern": titles,
        "class": [p["true"] for p in misread],
        "read as": [p["predicted"] for p in misread],
        "confidence": [p["confidence"] for p in misread],
    }
    st.dataframe(pd.DataFrame(table).style.format({"confidence": "{:.0%}"}), hide_index=True)
    indices = dict(zip(titles, (p["index"] for p in misread)))
    explain_one_of(model_name, indices, data_path, key=f"explain-misread-{job_id}", kind="scored")


def delete_section(choice: str) -> None:
    with st.expander("Delete this model"):
        if problem := store_write_problem():
            st.caption(problem)
            return
        if problem := delete_problem(choice):
            st.caption(f"It cannot be deleted here: {problem}.")
            return
        st.caption(
            "It leaves the model lists of everyone on this server. Nothing is erased: it moves to the models "
            "folder's `.deleted/`, from where whoever runs the server can move it back."
        )
        sure = st.checkbox(f"Yes, delete {choice}", key=f"delete_sure_{choice}")
        if st.button("Delete", disabled=not sure, key="delete_model"):
            try:
                delete_model(choice)
            except EbsdError as exc:
                show_error(exc)
            else:
                st.session_state.pop("model_name", None)
                st.rerun()


STORE_TABLE = "store_table"
#: The store table's columns of numbers, some of them missing on some models; the scores among them.
SCORES = ["test accuracy", "held-out materials"]
NUMBERS = ["shots", *SCORES, f"epoch of {VALIDATION_TARGET:.0%} val.", "input (px)"]


def store_overview(models: list[dict]) -> None:
    """Every saved model in one sortable table (a lab's store fills up); drawn before the model picker, which then
    shows the model of a row clicked."""
    rows = [
        {
            "model": m["name"],  # the scores first: on a 1,024 px screen the last columns are scrolled to
            "initialisation": m["kind"],
            "shots": m.get("shots"),
            "test accuracy": m.get("accuracy"),
            "held-out materials": m.get("holdout_accuracy"),
            f"epoch of {VALIDATION_TARGET:.0%} val.": m.get("epochs_to_95"),
            "input (px)": m.get("input_size"),
            "backbone": m["backbone"],
            "saved": since(m["created"]) if m.get("created") else "",
            "classes": " ".join(m["classes"]),
        }
        for m in models
    ]
    table = pd.DataFrame(rows).set_index("model")
    table[NUMBERS] = table[NUMBERS].apply(pd.to_numeric)  # a column of None alone would be shown as "None"

    with st.expander(f"All {counted(len(models), 'model')} side by side"):
        st.caption(
            "Click a column's name to sort by it, a row to show that model. Test accuracy: on each model's own test "
            "set (unseen orientations of simulated materials, or other patterns of the same scans). None: no "
            f"held-out materials, or {VALIDATION_TARGET:.0%} validation accuracy never reached."
        )
        st.dataframe(
            table,
            column_config={
                column: st.column_config.NumberColumn(format="%.3f" if column in SCORES else "%d") for column in NUMBERS
            },
            on_select="rerun",
            selection_mode="single-row",
            key=STORE_TABLE,
        )
    # a row clicked (not one left selected while another model was chosen below) becomes the model shown
    picked = list(st.session_state[STORE_TABLE]["selection"]["rows"])
    if picked != st.session_state.get("store_table_picked"):
        st.session_state.store_table_picked = picked
        if picked:
            make_current(str(table.index[picked[0]]))


st.title("Results")
stored = list_models()
if add_model_section(expanded=not stored):
    stored = list_models()
models = [m for m in stored if "error" not in m]
broken = [m for m in stored if "error" in m]
for m in broken:
    st.warning(f"Skipped {m['name']}: {m['error']}")
if not models:
    st.info("No saved models yet: train one on the **Train** page, run the demo on **Home**, or add one above.")
    st.stop()

names = [m["name"] for m in models]
if len(models) > 1:
    store_overview(models)
choice = select_model(names)
others = [n for n in names if n != choice]
together = st.session_state.get("job_models", [])  # the models the session's last training job trained together
keep_hidden_widgets(f"compare-{choice}", "normalise_confusion", "confusion_split")  # also after another page
compare = st.multiselect(
    "Overlay training curves of",
    others,
    default=[n for n in together if n in others] if choice in together else [],
    key=f"compare-{choice}",
)
try:
    card = read_card(default_store() / choice)
except EbsdError as exc:
    show_error(exc)
    st.stop()

test = card.metrics.get("test", {})
untested = test.get("patterns") == 0  # every pattern of the training materials went to training and validation
test_label, test_meaning = test_set(card.training.get("dataset"))
start, start_name = card.initialisation  # ("EBSD prior", "duplex-prior"), ("ImageNet", ""), ...
with metric_row():
    st.metric(
        test_label,
        "no test patterns" if untested else _score(test.get("accuracy")),
        help="Every pattern went to training and validation: none was left to test on." if untested else test_meaning,
    )
    if "holdout" in card.metrics:
        st.metric(
            "Held-out materials",
            _score(card.metrics["holdout"].get("accuracy")),
            help="Test accuracy on materials the model never saw (the dataset's held-out split).",
        )
    st.metric("Initialisation", start, help=f"{card.backbone}, from {start_name}" if start_name else card.backbone)
    st.metric("Calibration error (ECE)", _score(test.get("ece")))
if scored := _scored_on(card.metrics):
    st.caption(scored)
how_trained_section(card)
if not test:
    st.info(
        f"{choice} was saved without test metrics (an older sweep model): score it with "
        f"`python -m ebsd_core evaluate --model {default_store() / choice} --data DATASET.h5`."
    )

histories = {choice: card.history}
for other in compare:
    try:
        histories[other] = read_card(default_store() / other).history
    except EbsdError as exc:
        show_error(exc)
left, right = st.columns(2)
left.plotly_chart(curves_figure(histories, "loss"))
right.plotly_chart(curves_figure(histories, "accuracy"))

scored_splits = [s for s in ("test", "holdout") if card.metrics.get(s, {}).get("confusion_matrix")]
normalise = True
if scored_splits:  # a split without patterns (every one went to training) has no matrix
    normalise = st.toggle("Normalise confusion matrix by true class", value=True, key="normalise_confusion")
    split_labels = {"test": test_label, "holdout": "Held-out materials"}
    if len(scored_splits) > 1:
        split = st.radio("Split", scored_splits, horizontal=True, format_func=split_labels.get, key="confusion_split")
    else:
        split = scored_splits[0]
        st.caption(f"Scores below: {split_labels[split].lower()}.")
    show_scores(card.metrics[split], normalise)

match = SWEEP_NAME.match(choice)
if match:
    fig = sweep_figure(match["prefix"], models, test_label.lower())  # one dataset: one kind of test set
    if fig is not None:
        st.subheader("Few-shot curve of this sweep")
        st.plotly_chart(fig)
        if any(trace.error_y.array is not None for trace in fig.data):
            st.caption("Each point: the mean of its repeats (hover for how many); the bars: their standard deviation.")
        if (speed := sweep_speed_table(match["prefix"], models)) is not None:
            st.caption(
                f"The first epoch at {VALIDATION_TARGET:.0%} validation accuracy: how fast each learnt (of repeats, "
                "the mean; in brackets, how many reached it)."
            )
            st.dataframe(speed)

score_section(choice, card.classes, normalise)

with st.expander("Misclassified test patterns"):
    trained_on = trained_on_here(card)
    # the store is shared; the patterns a user uploaded to train on stay private to their session (unless this
    # session holds them too)
    private = (
        trained_on is not None
        and in_another_sessions_folder(trained_on)
        and not made_by_simulator(card.training.get("dataset"))
    )
    try:
        model_dir = default_store() / choice
        found = None
        if trained_on and not (untested or private):
            found = misclassified(str(model_dir), weights_mtime(model_dir), trained_on)
        if untested:
            st.info("No test patterns: every pattern of the training materials went to training and validation.")
        elif private:
            st.info("This model was trained on patterns uploaded in another session: they are shown only there.")
        elif found is None:
            st.info("The dataset this model was trained on is not available here.")
        elif len(found[0]) == 0:
            st.success("No misclassified patterns among the first 600 test patterns.")
        else:
            patterns, labels, probs, materials, indices = found
            symbols = card.class_symbols
            named = [
                (f"#{index} {material_label(material)}", f"{symbols[label]} as {symbols[p.argmax()]}")
                for index, material, label, p in zip(indices, materials, labels, probs)
            ]
            titles = [f"{pattern}: {mistake}" for pattern, mistake in named]
            # six to a row: a line each of the pattern, its class and what it was read as, no wider than the pattern
            # (two lines, "Pm-3m as Fm-3m" under its name, ran into the next title on a 1,024 px screen)
            three_lines = [f"{pattern}<br>{mistake.replace(' as ', '<br>as ')}" for pattern, mistake in named]
            st.plotly_chart(montage_figure(np.asarray(patterns, dtype=np.float32), three_lines, columns=6))
            st.dataframe(pd.DataFrame(probs, columns=symbols, index=titles).style.format("{:.2f}"))
            explain_one_of(choice, dict(zip(titles, indices)), trained_on, f"explain-one@{choice}", "training data")
    except EbsdError as exc:
        show_error(exc)

st.subheader("Downloads")
download_button("Metrics (JSON)", json.dumps(card.metrics, indent=1), f"{choice}-metrics.json", "application/json")
if test.get("per_class"):
    csv = pd.DataFrame(test["per_class"]).T.to_csv()
    download_button("Per-class scores (CSV)", csv, f"{choice}-per-class.csv", "text/csv")
if test.get("confusion_matrix"):
    png = cached_confusion_png(test["confusion_matrix"], test["classes"], f"{choice}: test")
    download_button("Confusion matrix (PNG)", png, f"{choice}-confusion.png", "image/png")
model_dir = default_store() / choice
download_button(
    "Model (zip: weights.safetensors + model.json)",
    functools.partial(cached_model_zip, choice, weights_mtime(model_dir)),  # made only when clicked
    f"{choice}.zip",
    "application/zip",
)
delete_section(choice)
