"""Data: upload or choose patterns, or simulate them; label single-phase scans; inspect."""

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from ebsd_core.assemble import (
    PER_SCAN,
    SINGLE_PHASE_SCANS_CAUTION,
    blank_notes,
    checked_dataset_file,
    dataset_from_labelled,
    dataset_from_scans,
    sampling_notes,
)
from ebsd_core.datasets import plan_simulation
from ebsd_core.errors import EbsdError, InputError
from ebsd_core.io.dataset import write_dataset
from ebsd_core.jobs import FINISHED
from ebsd_core.phases import CATALOGUE, DEFAULT_CLASSES, M3M_SPACE_GROUPS, material_label, space_group_symbol
from ebsd_core.preprocess import PreprocessConfig, preprocess
from ebsd_core.wording import counted
from ebsd_core.workflows import simulate_job
from pages.common import (
    DROPPED_FOLDER,
    FOLDER_FILE_TYPES,
    IMAGE_FILE_TYPES,
    NORDIF_SETTING_TYPES,
    SCAN_FILE_TYPES,
    active_dataset_path,
    apply_job_dataset,
    enter_page,
    folder_upload,
    for_the_user,
    job_manager,
    keep_hidden_widgets,
    keep_hidden_widgets_of,
    kept_tabs,
    kept_uploads,
    latest_job_shown_on,
    material_choice,
    metric_row,
    montage_figure,
    new_session_file,
    opened_source,
    safe_name,
    server_path_input,
    session_id,
    set_active_dataset,
    show_error,
    show_job,
    show_source_warnings,
    show_unfinished_job,
    shown_name,
    space_group_choice,
    start_job,
    upload_to_session,
    uploaded_name,
    uploads_to_read,
    warn_of_many_uploads,
)

enter_page()

st.title("Data")
UPLOAD_TYPES = SCAN_FILE_TYPES + IMAGE_FILE_TYPES + NORDIF_SETTING_TYPES
#: The start of the keys of the Simulate tab's settings, which it keeps (:func:`pages.common.keep_hidden_widgets`).
SIMULATE_KEY = "simulate-"


MASTER_KINDS = {"dynamical": "dynamical (de-ebsd Bloch waves)", "kinematical": "kinematical (kikuchipy)"}


def master_kinds_caption(kinds: dict[str, str]) -> str:
    """``"Master patterns: dynamical (de-ebsd Bloch waves) for Al, Ni3Al; kinematical (kikuchipy) for Cu."``"""
    by_kind: dict[str, list[str]] = {}
    for material, kind in sorted(kinds.items(), key=lambda item: material_label(item[0]).lower()):
        by_kind.setdefault(kind, []).append(material_label(material))
    described = "; ".join(f"{MASTER_KINDS.get(kind, kind)} for {', '.join(names)}" for kind, names in by_kind.items())
    return f"Master patterns: {described}."


def dataset_ready(dataset, path: Path, label: str) -> None:
    """Make the dataset at ``path`` the session's, and say what was left out of it (``dataset``: None for a
    dataset file used as it is)."""
    set_active_dataset(path, label)
    st.success("Dataset ready: go to **Train**.")
    for note in blank_notes(dataset) if dataset is not None else []:
        st.warning(note)


def own_phases() -> list[Path]:
    """The CIF files uploaded, saved into the session (kept while another page is shown: :func:`kept_uploads`),
    each named with the phase it holds; one that cannot be read is named with the reason and left out."""
    from ebsd_core.phases import phase_from_cif

    def draw() -> list[Path]:
        uploads = st.file_uploader(
            "Phases of your own (CIF files of cubic m-3m phases)",
            type=["cif"],
            accept_multiple_files=True,
            help="Simulated beside the materials above, each named by its file (my_phase.cif: my_phase) and of the "
            "space group its file gives. Its master pattern is computed once, on the first simulation: dynamical "
            "with de-ebsd where installed (15 s for a bcc metal, minutes for large cells on a 2-core CPU), else "
            "kinematical.",
            key="simulate_cifs",
        )
        saved = []
        for upload in uploads or []:
            try:
                saved.append(upload_to_session(upload, "simulate_cifs"))
            except EbsdError as exc:
                show_error(exc)
        return saved

    readable = []
    for path in kept_uploads("simulate_cifs", draw):
        try:
            material = phase_from_cif(path)
        except EbsdError as exc:
            show_error(exc)
            continue
        name = uploaded_name(path)
        st.caption(f"{name}: {material.key}, {material.symbol} ({material.space_group}), a = {material.a:.3f} Å")
        readable.append(path)
    return readable


def queue_simulation(settings: dict) -> None:
    """Queue a simulation of ``settings`` (:func:`ebsd_core.datasets.simulate_dataset`'s keyword arguments, and
    ``cifs``: CIF files of more phases) as this session's job, after checking the choice of classes and materials
    at once."""
    from ebsd_core.phases import phase_from_cif

    try:
        extra = [phase_from_cif(path) for path in settings["cifs"]]
        chosen = {k: settings[k] for k in ("per_class", "classes", "phases", "holdout_materials")}
        plan_simulation(**chosen, extra_materials=extra)
    except EbsdError as exc:  # said now, not when the queued job starts
        show_error(exc)
        return
    out = new_session_file(f"simulated-{settings['seed']}")
    title = f"Simulate {counted(settings['per_class'], 'pattern')} per class at {settings['size']} px"
    if job := start_job("simulate", title, lambda ctx: simulate_job(ctx, settings, out), settings):
        st.session_state.simulate_job = job


def explain_scans_dataset(dataset) -> None:
    """What a dataset of single-phase scans took of each, and what such a dataset can teach a model."""
    for note in sampling_notes(dataset):
        st.caption(f"{note}: enough for few-shot training.")
    st.info(SINGLE_PHASE_SCANS_CAUTION)


def label_server_scan(path: Path) -> None:
    """An unlabelled scan on the server: give it its space group and collect it for a dataset of such scans."""
    st.caption(
        "Unlabelled: map it on **Phase map**, where regions of known phase can be labelled to train on, or, when it "
        "holds one phase, give its space group and add it to the "
        f"scans of a dataset (at most {PER_SCAN:,} patterns of each are taken, spread over it)."
    )
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    choice = space_group_choice(f"Space group of {shown_name(path)}", f"server-sg-{path}", c1)
    if c2.button("Add to the scans", disabled=choice is None, key="add_server_scan"):
        st.session_state.setdefault("server_scans", {})[str(path)] = choice


def server_scans_section() -> None:
    """The single-phase server scans collected so far, and the dataset made of them."""
    scans = st.session_state.get("server_scans", {})
    if not scans:
        return
    named = {p: shown_name(p) for p in scans}
    st.write("Scans for a dataset: " + ", ".join(f"{named[p]} ({M3M_SPACE_GROUPS[sg]})" for p, sg in scans.items()))
    c1, c2 = st.columns(2)
    if c2.button("Clear the list", key="clear_server_scans"):
        st.session_state.server_scans = {}
        st.rerun()
    if c1.button("Make a dataset of these scans", type="primary", key="server_scans_dataset"):
        try:
            with st.spinner("Reading the scans"):
                dataset = dataset_from_scans([(opened_source(Path(p)), sg) for p, sg in scans.items()])
                dataset_path = write_dataset(dataset, new_session_file("server-scans"))
            dataset_ready(dataset, dataset_path, f"server: {len(scans)} scans")
            explain_scans_dataset(dataset)
        except EbsdError as exc:
            show_error(exc)


def saved_uploads() -> list[Path]:
    """The files uploaded here, saved into the session; kept while another page is shown (:func:`kept_uploads`)."""

    def draw() -> list[Path]:
        uploads = st.file_uploader("Files", type=UPLOAD_TYPES, accept_multiple_files=True, key="data_upload")
        warn_of_many_uploads(len(uploads))
        saved, names = [], set()
        for upload in uploads_to_read(uploads, "data_upload") if uploads else []:
            if safe_name(upload.name) in names:  # told apart by nothing: one label, one scan name in the dataset
                show_error(
                    InputError(
                        f"two uploads have this name: rename one of them to use both ({DROPPED_FOLDER}: pick it "
                        "in the uploader of folders below)",
                        upload.name,
                    )
                )
                continue
            names.add(safe_name(upload.name))
            try:
                saved.append(upload_to_session(upload, "data_upload"))
            except EbsdError as exc:  # a disk too full to keep the upload
                show_error(exc)
        return saved

    return kept_uploads("data_upload", draw)


def space_group_key(path: Path) -> str:
    """The key of an uploaded scan's space-group choice: a file uploaded since under its name gets none chosen (it is
    saved apart)."""
    return f"sg-{path}"


def label_uploads(paths: list[Path]) -> None:
    """What each uploaded file holds, a space group chosen for each scan of one phase, and the dataset made of them."""
    rows, unchosen = [], []
    keep_hidden_widgets(*(space_group_key(path) for path in paths))  # also after a visit to another page
    for path in paths:
        name = uploaded_name(path)
        try:
            source = opened_source(path)
        except EbsdError as exc:
            show_error(exc)
            continue
        show_source_warnings(name, source)
        if source.labelled:
            symbols = ", ".join(space_group_symbol(c) for c in source.classes)
            st.success(f"{name}: {len(source):,} labelled patterns, classes {symbols}")
            rows.append((source, None))
        else:
            choice = space_group_choice(
                f"Space group of {name} ({counted(len(source), 'pattern')})", space_group_key(path)
            )
            if choice is None:
                unchosen.append(name)
            else:
                rows.append((source, choice))
    if (rows or unchosen) and st.button("Use these as the dataset", type="primary"):
        try:
            if unchosen:
                raise InputError(f"choose the space group of {', '.join(unchosen)} first")
            names = [uploaded_name(path) for path in paths]
            use_uploads(rows, f"upload: {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else ""))
        except EbsdError as exc:
            show_error(exc)


def use_uploads(rows: list[tuple], label: str) -> None:
    """The session's dataset from one labelled upload, or from scans of one phase each (source, space group)."""
    labelled = [source for source, group in rows if group is None]
    scans = [(source, group) for source, group in rows if group is not None]
    if len(labelled) > 1 or (labelled and scans):
        raise InputError("use one labelled upload (dataset, zip or folder) at a time, or only single-phase scans")
    if labelled and labelled[0].kind == "dataset":
        dataset_ready(None, checked_dataset_file(labelled[0]), label)
    else:
        dataset = dataset_from_labelled(labelled[0]) if labelled else dataset_from_scans(scans)
        dataset_ready(dataset, write_dataset(dataset, new_session_file("uploaded")), label)
    if scans:
        explain_scans_dataset(dataset)


tab_upload, tab_server, tab_simulate = kept_tabs(["Upload", "Server path", "Simulate"], key="data_tab")

with tab_upload:
    st.write(
        "Upload EBSD files (any format kikuchipy reads; a NORDIF `Pattern.dat` together with its `Setting.txt`), "
        "a zip of class folders (`Fm-3m/`, `229/`, ...), images, or a dataset `.h5` made by this tool. Label each "
        "single-phase scan with its space group; label regions of a scan of several phases on its **Phase map**."
    )
    uploads = saved_uploads()
    folder = folder_upload(
        "Or a folder: class folders (`Fm-3m/`, `229/`, ...) of images, a scan exported as images, or a NORDIF "
        "acquisition",
        key="data_folder_upload",
        types=FOLDER_FILE_TYPES,
    )
    label_uploads(uploads + ([folder] if folder else []))

with tab_server:
    path = server_path_input("Path", "pick large scans", key="data_server_path")
    if path is not None:
        try:
            source = opened_source(path)
            height, width = source.pattern_shape
            st.write(f"{counted(len(source), 'pattern')} of {width}x{height} px ({source.kind})")
            show_source_warnings(shown_name(path), source)
            if source.kind == "dataset":
                if st.button("Use this dataset"):
                    set_active_dataset(checked_dataset_file(source), shown_name(path))
            elif source.labelled:
                symbols = ", ".join(space_group_symbol(c) for c in source.classes)
                st.success(f"{shown_name(path)}: labelled patterns of {symbols}")
                if st.button("Make a dataset of these labelled patterns", key="server_labelled"):
                    with st.spinner("Reading every pattern"):
                        dataset = dataset_from_labelled(source)
                        dataset_path = write_dataset(dataset, new_session_file("server"))
                    dataset_ready(dataset, dataset_path, f"server: {shown_name(path)}")
            else:
                label_server_scan(path)
        except EbsdError as exc:
            show_error(exc)
    server_scans_section()

with tab_simulate:
    keep_hidden_widgets_of(SIMULATE_KEY)  # as they were left, after a visit to another page
    groups = st.multiselect(
        "Space groups",
        list(M3M_SPACE_GROUPS),
        default=list(DEFAULT_CLASSES),
        format_func=lambda sg: f"{M3M_SPACE_GROUPS[sg]} ({sg})",
        key=f"{SIMULATE_KEY}groups",
    )
    available = [k for k, m in CATALOGUE.items() if m.space_group in groups]
    phases = st.multiselect(
        "Materials (empty: all of the chosen groups)",
        available,
        format_func=material_choice,
        key=f"{SIMULATE_KEY}materials",
    )
    holdout = st.multiselect(
        "Held-out materials (test only)",
        available,
        format_func=material_choice,
        help="Simulated for the test split only, to score the model on materials it never trained on; they need "
        "not be among the chosen materials, but each class needs a material left to train on.",
        key=f"{SIMULATE_KEY}holdout",
    )
    own = own_phases()
    c1, c2, c3 = st.columns(3)
    per_class = c1.number_input("Patterns per class", 4, 5000, 60, key=f"{SIMULATE_KEY}per-class")
    size = c2.select_slider(
        "Pattern size (px)",
        [40, 60, 80, 120, 160, 240],
        value=120,
        help="60 px trains and maps about 4x faster than 120 px, but telling FCC from BCC needs the detail of "
        "120 px. 240 px (a 224 px network input) tells the same-lattice phases apart best, at 3.5x the "
        "training time of 120 px: 0.99 of new orientations right at 20 shots per class (0.93 at 120 px), from "
        "an EBSD prior built for this dataset on the Train page.",
        key=f"{SIMULATE_KEY}size",
    )
    seed = c3.number_input("Seed", 0, 10_000, 0, key=f"{SIMULATE_KEY}seed")
    if st.button("Simulate", type="primary"):
        queue_simulation(
            {
                "per_class": int(per_class),
                "classes": [int(group) for group in groups],
                "phases": phases or None,
                "holdout_materials": holdout,
                "size": int(size),
                "seed": int(seed),
                "cifs": [str(path) for path in own],
            }
        )


def simulation_progress(job_id: str) -> None:
    """The session's simulation job: queue, progress and Cancel; once done, its dataset becomes the session's."""
    state = job_manager().get(job_id)
    if state is None or state.owner != session_id():
        return
    if state.status == "done":
        if st.session_state.get("applied_simulation") != job_id:
            st.session_state.applied_simulation = job_id
            label = f"simulated ({state.result['patterns']:,} patterns)"
            apply_job_dataset(Path(state.result["dataset"]), label, state.finished)
            st.rerun(scope="app")  # the sidebar and the dataset below show it
        return
    if state.status in FINISHED:
        st.error(for_the_user(f"{state.title}: {state.status}: {state.error or state.message}"))
        return
    show_unfinished_job(job_id, state, "cancel_simulation", f"{state.title}: {state.message or state.status}")


if simulation_job := st.session_state.get("simulate_job") or latest_job_shown_on("pages/data.py", "unfinished"):
    st.session_state.simulate_job = simulation_job
    show_job(simulation_job, simulation_progress)

path = active_dataset_path()
if path:
    st.divider()
    st.subheader(f"Active dataset: {st.session_state.get('dataset_label')}")
    try:
        from ebsd_core.io.dataset import materials_by_class, read_dataset, take

        dataset = read_dataset(path, lazy=True)  # patterns stay on disk: only the montage is read
        summary = dataset.summary()
        with metric_row():
            st.metric("Patterns", summary["patterns"])
            st.metric("Pattern size", "x".join(map(str, summary["pattern_shape"][::-1])))
            st.metric("Classes", len(summary["classes"]))
        # sort=False: space-group order (Pm-3m 221 first), not alphabetical
        st.bar_chart(summary["class_counts"], x_label="space group", y_label="patterns", sort=False)
        if kinds := dataset.provenance.get("master_kinds"):
            st.caption(master_kinds_caption(kinds))
        with st.expander(f"Materials of each class ({counted(len(summary.get('materials', [])), 'material')})"):
            rows = materials_by_class(dataset.labels, dataset.classes, dataset.material, dataset.split)
            table = pd.DataFrame(rows).assign(material=lambda t: t["material"].map(material_label))
            if not table["held out"].any():
                table = table.drop(columns="held out")
            else:
                st.caption(
                    "Held out: every pattern of the material is kept for the test of materials a model never saw (the "
                    "Results page's held-out accuracy); the others give the shots, validation and unseen orientations."
                )
            st.dataframe(table, hide_index=True)
        picks = [
            int(np.flatnonzero(dataset.labels == i)[0])
            for i in range(len(dataset.classes))
            if (dataset.labels == i).any()
        ]
        raw = take(dataset.patterns, np.asarray(picks)).astype(np.float32)  # one per class, in space-group order
        corrected = preprocess(raw, PreprocessConfig(size=raw.shape[-1]), dataset.static_background)
        titles = [dataset.class_symbols[dataset.labels[i]] for i in picks]
        st.caption("One pattern per class, as recorded (top) and after background correction (bottom).")
        st.plotly_chart(
            montage_figure(np.concatenate([raw, corrected]), titles + [f"{t} corrected" for t in titles], len(titles))
        )
        st.caption(
            "Preprocessing: static background removal (if the file has one), dynamic background removal "
            f"(Gaussian, sigma = {PreprocessConfig.dynamic_sigma_fraction:g} of the width), centre crop to square, "
            "resize, per-pattern standardisation."
        )
    except EbsdError as exc:
        show_error(exc)
