"""Home: what the tool does, and a one-click demo."""

import contextlib
import shutil

import streamlit as st

from ebsd_core.atomic import atomic_path
from ebsd_core.wording import counted, since
from ebsd_core.workflows import DEMO, demo_train_job, latest_demo_model
from pages.common import (
    active_dataset_path,
    enter_page,
    job_manager,
    keep_hidden_widgets,
    link_to_job,
    new_session_file,
    read_only_store_warning,
    session_dir,
    session_id,
    set_active_dataset,
    start_job,
)

enter_page()

st.title("Few-shot EBSD pattern classification")
st.markdown(
    "This tool tells crystal structures apart from their electron backscatter diffraction patterns. "
    "It fine-tunes an ImageNet-pretrained network on **a handful of labelled patterns per space group** "
    "(Kaufmann et al., *Sci. Rep.* 11, 8172, 2021), and compares it with the same network trained from scratch. "
    "Bring your own scans, or simulate realistic patterns of the six cubic m-3m space groups from dynamical "
    "master patterns."
)

st.subheader("Try it: the demo")
st.write(
    f"Simulates {DEMO.per_class} patterns for each of the six space groups ({DEMO.pattern_size}x"
    f"{DEMO.pattern_size} px), then fine-tunes EfficientNet-Lite0 on {DEMO.shots} patterns per class for a few "
    "epochs (a minute or two on a CPU; on 2 CPU cores six epochs reached 0.75-0.78 accuracy on unseen orientations "
    "in 38-101 s on different days, chance is 0.17)."
)

running, queued = job_manager().occupancy()
own = job_manager().unfinished_job_of(session_id())
if own is not None:  # one job per session at a time (ebsd_core.jobs)
    st.info(f"Your job {own.title!r} is {own.status}: a demo can start once it has ended.")
    link_to_job(own)
elif running or queued:
    waiting = f" and {counted(queued, 'job')} queued" if queued else ""
    st.info(f"The compute device is busy: {counted(running, 'job')} running{waiting}. A new demo starts after them.")
read_only = read_only_store_warning()  # the demo saves the model it trains
keep_hidden_widgets("demo_epochs")  # as set, after a visit to another page
epochs = st.number_input(
    "Demo epochs", min_value=1, max_value=30, value=6, help="More epochs, better accuracy", key="demo_epochs"
)
if st.button("Run the demo", type="primary", disabled=own is not None or read_only):
    folder = session_dir()
    job_id = start_job(
        "demo", "Demo: simulate + train", lambda ctx: demo_train_job(ctx, folder, epochs), {"epochs": int(epochs)}
    )
    if job_id:
        st.session_state.train_job = job_id
        st.switch_page("pages/train.py")
ready = latest_demo_model()
if ready is not None:
    accuracy = "" if ready["accuracy"] is None else f", {ready['accuracy']:.2f} on unseen orientations"
    trained = f"{counted(ready['epochs'], 'epoch')}{accuracy}, trained {since(ready['created'])}"
    if st.button(
        f"See the latest demo's results at once ({trained})",
        help="A demo someone on this server has run already: no waiting for the compute device.",
    ):
        st.session_state.model_name = ready["name"]
        if ready["dataset"] and active_dataset_path() is None:  # a copy of its simulated patterns, to explain them
            with contextlib.suppress(OSError):  # its session has just gone: the results need no dataset
                copy = new_session_file("demo")
                with atomic_path(copy) as tmp:
                    shutil.copyfile(ready["dataset"], tmp)
                set_active_dataset(copy, "demo")
        st.switch_page("pages/results.py")

st.subheader("Pages")
st.page_link("pages/data.py", label="Data: upload scans, image folders, or simulate", icon=":material/dataset:")
st.page_link("pages/train.py", label="Train: backbone, shots, transfer vs scratch", icon=":material/model_training:")
st.page_link(
    "pages/results.py",
    label="Results: curves, confusion matrix, scores on your scans, downloads",
    icon=":material/insights:",
)
# short enough for one line of a 1,024 px screen: a page link does not wrap, and a longer one was cut
st.page_link(
    "pages/phasemap.py",
    label="Phase map: map a scan, export to MTEX/OIM/AZtec, train on its grains",
    icon=":material/map:",
)
st.page_link(
    "pages/explain.py", label="Explain: filters, activation maps, Grad-CAM, SHAP", icon=":material/visibility:"
)
