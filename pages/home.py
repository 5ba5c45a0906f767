"""Home: what the tool does, and a one-click demo."""

import streamlit as st

from ebsd_core.datasets import simulate_dataset
from ebsd_core.io.dataset import write_dataset
from ebsd_core.train import TrainConfig
from ebsd_core.workflows import train_evaluate_save
from pages.common import DEMO_PER_CLASS, DEMO_SIZE, enter_page, job_manager, session_dir, session_id

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
    f"Simulates {DEMO_PER_CLASS} patterns for each of the six space groups ({DEMO_SIZE}x{DEMO_SIZE} px), "
    "then fine-tunes EfficientNet-Lite0 on 10 patterns per class for a few epochs (one to two minutes on a CPU; "
    "six epochs reached 0.75 accuracy on unseen orientations in 79 s on 2 CPU cores, chance is 0.17)."
)


def _demo_job(context, folder, epochs):
    context.report(0.02, "simulating the demo dataset")
    dataset = simulate_dataset(per_class=DEMO_PER_CLASS, size=DEMO_SIZE, seed=0)
    path = write_dataset(dataset, folder / "demo.h5")
    config = TrainConfig(shots=10, epochs=epochs, input_size=128, patience=epochs, val_per_class=10)

    def progress(p):
        context.report(
            0.1 + 0.9 * p.fraction,
            p.message or f"epoch {p.epoch}, batch {p.batch}/{p.batches}",
            event={
                "epoch": p.epoch,
                "train_loss": p.train_loss,
                "train_accuracy": p.train_accuracy,
                "val_loss": p.val_loss,
                "val_accuracy": p.val_accuracy,
            }
            if p.message
            else None,
        )

    name = f"demo-{context.job_id}"
    summary = train_evaluate_save(
        dataset, config, name, progress=progress, should_stop=context.should_stop, dataset_path=path
    )
    return {"dataset": str(path), **summary, "model_name": name}


epochs = st.number_input("Demo epochs", min_value=1, max_value=30, value=6, help="More epochs, better accuracy")
if st.button("Run the demo", type="primary"):
    folder = session_dir()
    job_id = job_manager().submit(
        "demo", "Demo: simulate + train", session_id(), lambda ctx: _demo_job(ctx, folder, epochs)
    )
    st.session_state.train_job = job_id
    st.switch_page("pages/train.py")

st.subheader("Pages")
st.page_link("pages/data.py", label="Data: upload scans, image folders, or simulate", icon=":material/dataset:")
st.page_link("pages/train.py", label="Train: backbone, shots, transfer vs scratch", icon=":material/model_training:")
st.page_link("pages/results.py", label="Results: curves, confusion matrix, downloads", icon=":material/insights:")
st.page_link(
    "pages/phasemap.py",
    label="Phase map: classify every point of a scan, export to MTEX/OIM/AZtec",
    icon=":material/map:",
)
st.page_link(
    "pages/explain.py", label="Explain: filters, activation maps, Grad-CAM, SHAP", icon=":material/visibility:"
)
