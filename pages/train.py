"""Train: choose backbone, shots and mode; the job runs off the script thread with live curves."""

import re
import time
from pathlib import Path

import streamlit as st

from ebsd_core.backbones import describe_registry
from ebsd_core.errors import EbsdError
from ebsd_core.io.readers import open_patterns
from ebsd_core.jobs import FINISHED, RUNNING
from ebsd_core.preprocess import INPUT_SIZES, input_size_for
from ebsd_core.store import MAX_VIEWS, default_store
from ebsd_core.train import TrainConfig
from ebsd_core.workflows import train_runs_job
from pages.common import (
    active_dataset_path,
    curves_figure,
    job_manager,
    session_id,
    set_active_dataset,
    show_error,
)

st.title("Train")


def default_input_size(path: Path) -> int:
    """The input size that keeps every pixel of the dataset's patterns (64 when it cannot be read)."""
    try:
        return input_size_for(open_patterns(path).pattern_shape)
    except EbsdError:
        return 64


manager = job_manager()


path = active_dataset_path()
job_id = st.session_state.get("train_job")
if not job_id:  # after a browser reload: the latest job of this session
    mine = manager.jobs_of(session_id())
    job_id = mine[0].id if mine else None

if path is None and not job_id:
    st.info("No dataset yet: simulate or upload one on the **Data** page, or run the demo on **Home**.")
elif path is not None:
    registry = describe_registry()
    names = [r["name"] for r in registry]
    with st.form("train"):
        backbone = st.selectbox(
            "Backbone",
            names,
            format_func=lambda n: (
                n
                + (
                    ""
                    if next(r for r in registry if r["name"] == n)["pretrained_offline"]
                    else "  (no offline ImageNet weights: scratch only)"
                )
            ),
        )
        c1, c2, c3 = st.columns(3)
        shots_text = c1.text_input("Shots per class (one value or a sweep: 5,10,20)", "10")
        epochs = c2.number_input("Epochs", 1, 200, 15)
        input_size = c3.select_slider(
            "Input size (px)",
            INPUT_SIZES,
            value=default_input_size(path),
            help="Patterns are resized to this. The default keeps every pixel of the dataset's patterns; "
            "smaller inputs train and predict faster but lose the fine band detail that tells the phases apart.",
        )
        views = st.number_input(
            "Test-time views",
            1,
            MAX_VIEWS,
            TrainConfig.views,
            help="The saved model averages each pattern over this many re-projected views of its crystal: "
            "fewer orientation-specific mistakes, at this many times the prediction time.",
        )
        mode = st.radio("Initialisation", ["ImageNet transfer", "scratch", "both side by side"], horizontal=True)
        name = st.text_input("Model name prefix", f"model-{time.strftime('%Y%m%d-%H%M%S')}")
        submitted = st.form_submit_button("Start training", type="primary")
    if submitted:
        try:
            shots = [int(s) for s in re.split(r"[,\s]+", shots_text.strip()) if s]
            if not shots or min(shots) < 1:
                raise ValueError("give shots per class as positive integers, e.g. 10 or 5,10,20")
            offline = next(r for r in registry if r["name"] == backbone)["pretrained_offline"]
            modes = {"ImageNet transfer": [True], "scratch": [False], "both side by side": [True, False]}[mode]
            if not offline and True in modes:
                raise ValueError(
                    f"{backbone} has no offline ImageNet weights here: choose scratch or efficientnet_lite0"
                )
            if (default_store() / f"{name}-transfer-k{shots[0]}").exists():
                raise ValueError(f"a model named {name} exists in the store; choose another name")
            runs = [
                (
                    f"{'transfer' if pre else 'scratch'}-k{k}",
                    TrainConfig(
                        backbone=backbone,
                        pretrained=pre,
                        shots=k,
                        epochs=int(epochs),
                        input_size=int(input_size),
                        patience=max(5, int(epochs) // 3),
                        views=int(views),
                    ),
                )
                for k in shots
                for pre in modes
            ]
            params = {
                "dataset_path": str(path),
                "runs": [[label, config.to_dict()] for label, config in runs],
                "name": name,
            }
            job = manager.submit(
                "train", f"{name}: {len(runs)} run(s)", session_id(), lambda ctx: train_runs_job(ctx, params), params
            )
            st.session_state.train_job = job
            job_id = job
        except (ValueError, EbsdError) as exc:
            show_error(exc)


@st.fragment(run_every=1.0)
def job_panel(job_id: str) -> None:
    state = manager.get(job_id)
    if state is None or state.owner != session_id():
        st.warning("This job is not known to this session.")
        return
    st.subheader(state.title)
    if state.status == "queued":
        st.info("Queued: another job is using the compute device.")
    st.progress(min(1.0, state.progress), state.message or state.status)
    histories: dict[str, list] = {}
    for event in state.events:
        histories.setdefault(event.get("run", "model"), []).append(event)
    if histories:
        c1, c2 = st.columns(2)
        c1.plotly_chart(curves_figure(histories, "loss"), key=f"loss-{len(state.events)}")
        c2.plotly_chart(curves_figure(histories, "accuracy"), key=f"acc-{len(state.events)}")
    if state.status == RUNNING and st.button("Cancel", key="cancel"):
        manager.cancel(job_id)
    if state.status in FINISHED:
        if state.status == "done":
            st.success("Finished: the model is in the store.")
            for run in state.result.get("runs", [state.result]):
                st.write(
                    f"**{run.get('run', run.get('model_name'))}**: test accuracy {run.get('test_accuracy', 0):.3f}, "
                    f"{run.get('seconds')} s"
                )
            if st.session_state.get("applied_job") != job_id:
                st.session_state.applied_job = job_id
                st.session_state.model_name = state.result.get("model_name")
                if state.result.get("dataset"):
                    set_active_dataset(Path(state.result["dataset"]), "demo")
            st.page_link("pages/results.py", label="See the results", icon=":material/insights:")
        else:
            st.error(f"{state.status}: {state.error or state.message}")
            if state.kind == "train" and state.params and st.button("Start again", key="restart"):
                params = state.params
                st.session_state.train_job = manager.restart(job_id, lambda ctx: train_runs_job(ctx, params))
                st.rerun()
        return


if job_id:
    job_panel(job_id)
