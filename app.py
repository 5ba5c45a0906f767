"""Dashboard entry point: the router (st.navigation) and the sidebar."""

import logging
import sys
import time
from pathlib import Path

import streamlit as st

from ebsd_core.jobs import serialise_ast_parse
from pages.common import (
    active_dataset_path,
    current_model,
    has_access,
    housekeeping,
    lock_button,
    release_memory_of_ended_sessions,
    removed_session_notice,
    require_access,
    require_working_folder,
    session_id,
    shared_session_notice,
)

serialise_ast_parse()  # before any session's thread or job imports a library that parses (CPython < 3.11.8)
# the engine's lines in the server's log (a job's internal error with its trace, ...) dated as Streamlit's own are; once
# per server (a no-op when the root logger has a handler)
logging.basicConfig(format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S")

# A file of the project's: Streamlit fetches a Material icon or an emoji for the browser tab from a CDN, which a
# microscope PC on a closed network cannot reach, and which no lab's page should make every visitor call on.
ICON = Path(__file__).resolve().parent / "assets" / "icon.png"
st.set_page_config(page_title="EBSD few-shot classifier", page_icon=str(ICON), layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/dataset:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/results.py", title="Results", icon=":material/insights:"),
    st.Page("pages/phasemap.py", title="Phase map", icon=":material/map:"),
    st.Page("pages/explain.py", title="Explain", icon=":material/visibility:"),
]
# The page list stays hidden until the visitor is in; open on localhost, password or OIDC login when
# configured in .streamlit/secrets.toml.
navigation = st.navigation(pages, position="sidebar" if has_access() else "hidden")
require_access()
require_working_folder()
if "torch" not in sys.modules:  # the first visit after a server start: say why the page waits
    starting = st.empty()
    starting.info(
        "Starting the engine (PyTorch): about 5 s, once after the server starts.", icon=":material/hourglass_top:"
    )
    time.sleep(0.2)  # the import holds the interpreter: let the server send the note first
    import ebsd_core.train  # noqa: F401
    from ebsd_core.threads import fit_torch_threads

    fit_torch_threads()  # in a container capped below its cores, no more threads than it may run
    starting.empty()
housekeeping()
release_memory_of_ended_sessions()
session_id()  # every browser session gets its own private id (uploads, datasets, jobs)
removed_session_notice()
shared_session_notice()


@st.cache_resource
def _device_label() -> str:
    from ebsd_core.backbones import device_label

    return device_label()


@st.cache_resource
def _unused_gpu_reason() -> str | None:
    from ebsd_core.backbones import unused_gpu_reason

    return unused_gpu_reason()


def _sidebar_status() -> None:
    st.caption(f"Compute: **{_device_label()}**")
    if reason := _unused_gpu_reason():  # a GPU workstation whose driver is too old said only "CPU"
        st.caption(f":material/warning: GPU unused: {reason}.")
    dataset = active_dataset_path()
    st.caption(f"Dataset: **{st.session_state.get('dataset_label', 'none')}**" if dataset else "Dataset: none yet")
    st.caption(f"Model: **{current_model() or 'none'}**")


status = st.sidebar.empty()
with status.container():  # what stays when the page stops early (st.stop draws nothing after it)
    _sidebar_status()
lock_button()
try:
    navigation.run()
finally:  # drawn again after the page, which may have just chosen a model or dataset
    with status.container():
        _sidebar_status()
