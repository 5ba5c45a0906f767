"""Results: curves, confusion matrices, per-class scores and downloads for any saved model."""

import io
import json
import zipfile

import pandas as pd
import streamlit as st

from ebsd_core.errors import EbsdError
from ebsd_core.store import default_store, list_models, read_card
from pages.common import confusion_figure, curves_figure, show_error

st.title("Results")
models = [m for m in list_models() if "error" not in m]
broken = [m for m in list_models() if "error" in m]
for m in broken:
    st.warning(f"Skipped {m['name']}: {m['error']}")
if not models:
    st.info("No saved models yet: train one on the **Train** page (or run the demo on **Home**).")
    st.stop()

names = [m["name"] for m in models]
preferred = st.session_state.get("model_name")
choice = st.selectbox("Model", names, index=names.index(preferred) if preferred in names else 0)
compare = st.multiselect("Overlay training curves of", [n for n in names if n != choice])
try:
    card = read_card(default_store() / choice)
except EbsdError as exc:
    show_error(exc)
    st.stop()

st.session_state.model_name = choice
test = card.metrics.get("test", {})
c1, c2, c3, c4 = st.columns(4)
c1.metric("Test accuracy (unseen orientations)", f"{test.get('accuracy', float('nan')):.3f}")
if "holdout" in card.metrics:
    c2.metric("Held-out materials", f"{card.metrics['holdout'].get('accuracy', float('nan')):.3f}")
c3.metric("Backbone", card.backbone + (" (ImageNet)" if card.pretrained else " (scratch)"))
c4.metric("Calibration error (ECE)", f"{test.get('ece', float('nan')):.3f}")

histories = {choice: card.history}
for other in compare:
    try:
        histories[other] = read_card(default_store() / other).history
    except EbsdError as exc:
        show_error(exc)
left, right = st.columns(2)
left.plotly_chart(curves_figure(histories, "loss"))
right.plotly_chart(curves_figure(histories, "accuracy"))

if test.get("confusion_matrix"):
    normalise = st.toggle("Normalise confusion matrix by true class", value=True)
    split = st.radio("Split", [s for s in ("test", "holdout") if s in card.metrics], horizontal=True)
    metrics = card.metrics[split]
    fig = confusion_figure(metrics["confusion_matrix"], metrics["classes"], normalise)
    st.plotly_chart(fig)
    table = pd.DataFrame(metrics["per_class"]).T
    st.dataframe(table.style.format({"precision": "{:.3f}", "recall": "{:.3f}", "f1": "{:.3f}"}))
    if metrics.get("same_lattice_confusion"):
        st.caption("Same-lattice confusions (fraction of the true class predicted as the other):")
        st.json(metrics["same_lattice_confusion"])
    if metrics.get("per_material"):
        st.dataframe(pd.DataFrame(metrics["per_material"]).T)

st.subheader("Downloads")
st.download_button("Metrics (JSON)", json.dumps(card.metrics, indent=1), f"{choice}-metrics.json", "application/json")
if test.get("per_class"):
    csv = pd.DataFrame(test["per_class"]).T.to_csv()
    st.download_button("Per-class scores (CSV)", csv, f"{choice}-per-class.csv", "text/csv")
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w") as archive:
    for file in (default_store() / choice).iterdir():
        archive.write(file, f"{choice}/{file.name}")
st.download_button(
    "Model (zip: weights.safetensors + model.json)", buffer.getvalue(), f"{choice}.zip", "application/zip"
)
