"""Explain one pattern end to end: the shared workflow of ``explain`` (CLI) and the Explain page.

:func:`explain_pattern` loads a model and one pattern, runs one method
(filters, activations, gradcam or shap), writes PNG figures and returns a JSON
summary with plain-language captions. When the pattern's orientation and
detector geometry are known (simulated data), Grad-CAM and SHAP are checked
against the geometrical Kikuchi bands (:mod:`ebsd_core.band_check`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ebsd_core.caveats import reading_notes
from ebsd_core.errors import EbsdError, InputError
from ebsd_core.explain import (
    GRADIENT_SAMPLES,
    METHODS,
    PATTERN_METHODS,
    SHAP_METHODS,
    DeepLiftUnsupported,
    ShapResult,
    activation_maps,
    as_input,
    conv_map_sizes,
    default_activation_layer,
    default_cam_layer,
    filter_changes,
    filter_grid,
    first_layer_filters,
    grad_cam,
    shap_values,
)
from ebsd_core.figures import png_bytes, pyplot
from ebsd_core.inference import UNKNOWN, decide, inference_precision, model_device, predict_tensor
from ebsd_core.io.readers import PatternSource, open_patterns
from ebsd_core.phases import M3M_SPACE_GROUPS, space_group_of_label, space_group_symbol
from ebsd_core.preprocess import BLANK_CAUSES, blank_patterns, preprocess
from ebsd_core.store import ModelCard, load_model
from ebsd_core.wording import counted, is_whole_number

log = logging.getLogger(__name__)
SHAP_BACKGROUND = 16


@dataclass
class Explanation:
    """Figures (PNG bytes by name), captions and numbers of one explanation."""

    method: str
    figures: dict[str, bytes] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what to know before trusting the model's reading

    def save(self, folder: str | Path) -> list[str]:
        from ebsd_core.atomic import atomic_path

        folder = Path(folder)
        written = []
        for name, data in self.figures.items():
            with atomic_path(folder / f"{name}.png") as tmp:
                tmp.write_bytes(data)
            written.append(str(folder / f"{name}.png"))
        return written

    def _repr_html_(self) -> str:
        """Its figures with their captions, under the model's reading and the notes on it: what a notebook shows."""
        import base64
        from html import escape

        reading = ""
        if "predicted" in self.numbers:
            odds = ", ".join(f"{k} {v:.0%}" for k, v in self.numbers["probabilities"].items())
            reading = f"<p>Read as <b>{escape(self.numbers['decision'])}</b> ({escape(odds)}); explaining "
            reading += f"<b>{escape(self.numbers['explained_class'])}</b></p>"
        notes = "".join(f"<p><i>Note: {escape(note)}</i></p>" for note in self.notes)
        figures = "".join(
            f'<figure><img src="data:image/png;base64,{base64.b64encode(data).decode()}" style="max-width:100%">'
            f"<figcaption>{escape(self.captions.get(name, ''))}</figcaption></figure>"
            for name, data in self.figures.items()
        )
        return reading + notes + figures


def _overlay_png(
    pattern: np.ndarray, heat: np.ndarray, title: str, lines=(), cmap="jet", symmetric=False, unit_range=False
) -> bytes:
    limit = np.abs(heat).max() or 1.0
    kwargs = {"vmin": -limit, "vmax": limit} if symmetric else {}
    if unit_range:  # a flat map (e.g. Grad-CAM of a 1x1 last layer) must not get a stretched colour scale
        kwargs = {"vmin": 0.0, "vmax": 1.0}
    with pyplot() as plt:
        fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
        axes[0].imshow(pattern, cmap="gray")
        axes[0].set_title("pattern (preprocessed)", fontsize=9)
        axes[1].imshow(pattern, cmap="gray")
        shown = axes[1].imshow(heat, cmap="bwr" if symmetric else cmap, alpha=0.55, **kwargs)
        for colour, group in lines:
            for x0, y0, x1, y1 in group:
                axes[1].plot([x0, x1], [y0, y1], color=colour, lw=0.6, alpha=0.8)
        axes[1].set_xlim(0, pattern.shape[1] - 1)
        axes[1].set_ylim(pattern.shape[0] - 1, 0)
        axes[1].set_title(title, fontsize=9)
        fig.colorbar(shown, ax=axes[1], fraction=0.046)
        for ax in axes:
            ax.set_axis_off()
        return png_bytes(fig)


def _grid_png(image: np.ndarray, title: str, cmap="gray") -> bytes:
    with pyplot() as plt:
        fig, ax = plt.subplots(figsize=(6, 6 * image.shape[0] / max(image.shape[1], 1) + 0.4))
        ax.imshow(np.ma.masked_invalid(image), cmap=cmap)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
        return png_bytes(fig)


@dataclass
class PatternContext:
    """One preprocessed pattern with what is known about it."""

    pattern: np.ndarray  # (S, S) preprocessed
    index: int
    material: str | None = None
    true_class: str | None = None  # the space-group symbol a labelled dataset or class folder gives it
    quaternion: np.ndarray | None = None
    pc: np.ndarray | None = None
    detector_tilt: float = 0.0
    sample_tilt: float = 70.0


def pattern_index(source: PatternSource, index: int | tuple[int, int] | str) -> int:
    """A pattern's index in ``source`` from its index, its (row, column) in a map or the name of its image file."""
    if isinstance(index, int | np.integer):
        return int(index)
    if isinstance(index, str):
        return source.index_of_file(index)
    row, column = index
    shape = source.nav_shape
    if shape is None or len(shape) != 2:
        held = counted(len(source), "pattern")
        raise InputError(f"holds {held}, not a map of rows and columns: give the pattern's index", source.path)
    if not (0 <= row < shape[0] and 0 <= column < shape[1]):
        raise InputError(
            f"row {row}, column {column} is outside the {shape[0]}x{shape[1]} map (rows 0..{shape[0] - 1}, "
            f"columns 0..{shape[1] - 1})",
            source.path,
        )
    return row * shape[1] + column


def load_pattern(source: PatternSource, card: ModelCard, index: int) -> PatternContext:
    if not 0 <= index < len(source):
        raise InputError(f"pattern index {index} is outside 0..{len(source) - 1}", source.path)
    if not source.has_image(index):
        shape = source.nav_shape
        place = f" (row {index // shape[1]}, column {index % shape[1]})" if shape and len(shape) == 2 else ""
        raise InputError(
            f"point {index}{place} has no image (none of the images' names gives it, or its image could not be read): "
            "there is nothing to explain; pick another",
            source.path,
        )
    raw = source.batch(index, index + 1)
    if blank_patterns(raw)[0]:
        raise InputError(
            f"pattern {index} holds one value everywhere ({BLANK_CAUSES}): "
            "there is nothing in it to explain; pick another",
            source.path,
        )
    pattern = preprocess(raw, card.preprocess, source.static_background, source.path)[0]
    context = PatternContext(pattern, index)
    if source.labelled and source.kind != "dataset":  # class folders of images: the folder's space group
        context.true_class = space_group_symbol(source.classes[int(source.labels[index])])
    if source.kind == "dataset":
        from ebsd_core.io.dataset import read_dataset

        ds = read_dataset(source.path, lazy=True)
        if 0 <= (label := int(ds.labels[index])) < len(ds.classes):
            context.true_class = ds.class_symbols[label]
        finite = ds.pc is not None and np.isfinite(ds.pc[index]).all() and np.isfinite(ds.quaternions[index]).all()
        if finite:
            context.material = str(ds.material[index])
            context.quaternion = np.asarray(ds.quaternions[index], float)
            context.pc = np.asarray(ds.pc[index], float)
            context.detector_tilt = float(ds.detector_tilt[index])
            context.sample_tilt = float(ds.sample_tilt[index])
    return context


def background_patterns(
    card: ModelCard, source: PatternSource, index: int, n: int = SHAP_BACKGROUND
) -> tuple[np.ndarray, str]:
    """A SHAP background and what it is: patterns of the model's training dataset, else other patterns of the
    input, else (one pattern explained with a model whose data is elsewhere) patterns simulated for its classes."""
    dataset_path = card.training.get("dataset_path")
    background_source, kind = source, "of this input"
    if dataset_path and Path(dataset_path).is_file():
        with contextlib.suppress(EbsdError):  # unreadable now: the input's own patterns serve
            background_source, kind = open_patterns(dataset_path), "of the model's training data"
    rng = np.random.default_rng(0)
    candidates = np.setdiff1d(np.arange(len(background_source)), [index] if background_source is source else [])
    if len(candidates) == 0:
        return _simulated_background(card, n, source.path), "simulated for the model's classes"
    pick = np.sort(rng.choice(candidates, size=min(n, len(candidates)), replace=False))
    raw = np.stack([background_source.batch(int(i), int(i) + 1)[0] for i in pick])
    return preprocess(raw, card.preprocess, background_source.static_background, background_source.path), kind


def _simulated_background(card: ModelCard, n: int, path: str) -> np.ndarray:
    """``n`` patterns simulated for the model's classes at its input size, as its training data was made."""
    from ebsd_core.datasets import simulate_dataset

    try:
        dataset = simulate_dataset(-(-n // len(card.classes)), classes=card.classes, size=card.input_size, seed=0)
    except EbsdError as exc:
        raise InputError(
            f"SHAP needs background patterns: the input holds only this one, and none can be simulated ({exc})", path
        ) from None
    pick = np.sort(np.random.default_rng(0).choice(len(dataset.patterns), size=n, replace=False))
    return preprocess(np.asarray(dataset.patterns)[pick], card.preprocess, None, "simulated background")


def _band_lines_and_report(context: PatternContext, heat: np.ndarray, numbers: dict) -> list:
    """Band overlay lines and the physics numbers, when the pattern's geometry is known."""
    if context.quaternion is None or context.material is None:
        return []
    from ebsd_core.band_check import band_masks, band_report
    from ebsd_core.phases import get_material

    try:
        material = get_material(context.material)
    except EbsdError:
        return []
    masks = band_masks(
        material, context.quaternion, context.pc, heat.shape[0], context.detector_tilt, context.sample_tilt
    )
    numbers["bands"] = band_report(heat, masks)
    return [("lime", masks.lines), ("magenta", masks.superlattice_lines)]


def starting_filters(card: ModelCard) -> tuple[np.ndarray, str, str]:
    """The first-layer filters ``card``'s training started from, with a title and a caption: those of the EBSD prior
    or saved model it started from while that is in the store, else ImageNet's (said so when training started
    elsewhere). Raises :class:`EbsdError` when neither can be had."""
    from ebsd_core.backbones import create_model

    kind, name = card.initialisation
    if kind in ("EBSD prior", "saved model"):
        with contextlib.suppress(EbsdError):
            started, _ = load_model(card.weights_file)
            caption = f"Before fine-tuning: the filters of the {kind} it started from, {name}."
            return first_layer_filters(started), f"the same filters in {name}", caption
    imagenet = create_model(card.backbone, len(card.classes), pretrained=True, channel_mode=card.channel_mode)
    caption = "Before fine-tuning: edge and blob detectors learned from photographs."
    if kind != "ImageNet":  # a prior's or a file's own training changed them too
        caption = f"ImageNet's filters, before {name} ({kind}, not in the store here) and fine-tuning changed them."
    return first_layer_filters(imagenet), "the same filters from ImageNet", caption


def explain_filters(model, card: ModelCard, compare: str | None = None) -> Explanation:
    out = Explanation("filters")
    after = first_layer_filters(model)
    out.figures["filters_finetuned"] = _grid_png(filter_grid(after), "first-layer filters after fine-tuning")
    out.captions["filters_finetuned"] = "The first convolution's kernels after training on EBSD patterns."
    if card.pretrained:
        try:
            before, title, caption = starting_filters(card)
        except EbsdError as exc:
            out.numbers["imagenet"] = f"not available: {exc}"
        else:
            change = filter_changes(before, after)
            order = np.argsort(change)[::-1]
            out.figures["filters_imagenet"] = _grid_png(filter_grid(before), title)
            out.captions["filters_imagenet"] = caption
            out.figures["filters_most_changed"] = _grid_png(
                filter_grid(after[order[:16]], columns=8), "the 16 filters fine-tuning changed most"
            )
            out.captions["filters_most_changed"] = (
                "Ranked by the Euclidean distance between the kernel before and after fine-tuning."
            )
            out.numbers["change_ranking"] = [
                {"filter": int(i), "distance": round(float(change[i]), 4)} for i in order[:16]
            ]
            out.numbers["mean_change"] = round(float(change.mean()), 4)
    if compare:
        other, other_card = load_model(compare)
        name = Path(compare).name
        out.figures["filters_other"] = _grid_png(filter_grid(first_layer_filters(other)), f"filters of {name}")
        out.captions["filters_other"] = f"{name}'s first-layer filters" + (
            "." if other_card.pretrained else ", trained from scratch: from random kernels, with no photographs'."
        )
    return out


def class_index(card: ModelCard, target: int | str) -> int:
    """A class of the model as its index: from an index, a space-group number (221-230), a symbol or a catalogue
    material (``ni3al``: Pm-3m), as labels name a phase."""
    classes = ", ".join(
        f"{i} {symbol} ({group})" for i, (symbol, group) in enumerate(zip(card.class_symbols, card.classes))
    )
    text = str(target).strip()
    if is_whole_number(text) and int(text) not in M3M_SPACE_GROUPS:
        if int(text) < len(card.classes):
            return int(text)
        raise InputError(f"class index {text} is outside 0..{len(card.classes) - 1}; the classes are {classes}")
    try:
        group = space_group_of_label(text)
    except EbsdError:
        raise InputError(f"{text!r} is not a class of the model; its classes are {classes}") from None
    if group not in card.classes:
        raise InputError(f"the model does not know {M3M_SPACE_GROUPS[group]} ({group}); its classes are {classes}")
    return card.classes.index(group)


def explain_pattern(
    model_dir: str | Path,
    input_path: str | Path,
    index: int | tuple[int, int] | str,
    method: str,
    target: int | str | None = None,
    layer: str | None = None,
    compare: str | None = None,
    shap_method: str | None = None,
    views: dict | None = None,
) -> Explanation:
    """Run one explanation method on pattern ``index`` of ``input_path`` (an index, a (row, column) of a map or an
    image's file name).

    ``target``: the class to explain (default: the predicted one), as the model's class index, a space-group
    number or a symbol (``2``, ``225`` or ``"Fm-3m"``). ``views``: the test-time views a phase map gave its points
    (:attr:`ebsd_core.phasemap.PhaseMap.views`), for the model's answer as the map gave it before its grain
    clean-up; by default the model's own, as ``predict`` gives them."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    model, card = load_model(model_dir)
    if method == "filters":
        return explain_filters(model, card, compare)
    return explain_in_source(model, card, open_patterns(input_path), index, method, target, layer, shap_method, views)


def explain_in_source(
    model,
    card: ModelCard,
    source: PatternSource,
    index: int | tuple[int, int] | str,
    method: str,
    target: int | str | None = None,
    layer: str | None = None,
    shap_method: str | None = None,
    views: dict | None = None,
) -> Explanation:
    """:func:`explain_pattern` of a loaded model and an opened source: ``activations``, ``gradcam`` or ``shap``."""
    if method not in PATTERN_METHODS:
        raise InputError(f"unknown method {method!r} for a pattern; use one of {', '.join(PATTERN_METHODS)}")
    index = pattern_index(source, index)
    context = load_pattern(source, card, index)
    # the model's answer as predict (or the map) gives it, with its test-time views; the methods below explain one view
    precision = inference_precision(model_device(model), "auto", card)
    views = views or {"views": card.views, "views_below": card.views_below}
    first_point = index if views.get("own") else None  # a map's point: the views the map gave it
    probabilities = predict_tensor(
        model, context.pattern[None], precision, int(views["views"]), views.get("views_below"), first_point
    )[0]
    predicted = int(np.argmax(probabilities))
    decided = int(decide(probabilities[None], card.unknown_threshold)[0])
    target = predicted if target is None else class_index(card, target)
    out = Explanation(method, notes=reading_notes(source, card))
    out.numbers.update(
        {
            "index": index,
            "file": source.file_name(index),
            "predicted": card.class_symbols[predicted],
            "decision": card.class_symbols[decided] if decided >= 0 else UNKNOWN,
            "threshold": card.unknown_threshold,
            "probabilities": {s: round(float(p), 4) for s, p in zip(card.class_symbols, probabilities)},
            "explained_class": card.class_symbols[target],
            "material": context.material,
            "true_class": context.true_class,
        }
    )
    symbol = card.class_symbols[target]
    if method == "activations":
        layer = layer or default_activation_layer(conv_map_sizes(model, card.input_size), card.input_size)
        maps, channels = activation_maps(model, context.pattern, layer)
        out.figures["activations"] = _grid_png(filter_grid(maps[:, None], columns=4), f"16 most active maps of {layer}")
        out.captions["activations"] = (
            f"What layer {layer} responds to in this pattern: bright = strong response. Early layers follow bands "
            "and edges; deeper ones respond to zone axes and band intersections."
        )
        out.numbers["layer"], out.numbers["channels"] = layer, [int(c) for c in channels]
    elif method == "gradcam":
        layer = layer or default_cam_layer(model)
        cam = grad_cam(model, context.pattern, target, layer)
        lines = _band_lines_and_report(context, cam, out.numbers)
        out.figures["gradcam"] = _overlay_png(context.pattern, cam, f"Grad-CAM for {symbol}", lines, unit_range=True)
        out.captions["gradcam"] = (
            f"Where the evidence for {symbol} comes from, by the maps of {layer} (red = most). Lines: Kikuchi bands "
            "of the true orientation (green) and superlattice bands (magenta) when known."
        )
        out.numbers["layer"] = layer
    else:
        _add_shap(out, model, card, source, context, target, shap_method or SHAP_METHODS[0])
    return out


def _add_shap(
    out: Explanation, model, card: ModelCard, source: PatternSource, context: PatternContext, target: int, method: str
) -> None:
    """SHAP of the pattern for class ``target``: figures, captions (with how far the values add up) and numbers."""
    symbol = card.class_symbols[target]
    background, kind = background_patterns(card, source, context.index)
    result, gave_way = _shap_of(model, context.pattern, background, method)
    values = result.values[0]
    with torch.no_grad():
        logit = float(model.float().eval()(as_input(context.pattern, model))[0, target])
    total, expected = float(values[target].sum()), float(result.expected[target])
    out.numbers |= {"shap_method": result.method, "shap_sum": round(total, 4), "expected_logit": round(expected, 4)}
    out.numbers["logit"] = round(logit, 4)
    lines = _band_lines_and_report(context, values[target], out.numbers)
    out.figures["shap"] = _overlay_png(
        context.pattern, values[target], f"SHAP for {symbol} ({result.method})", lines, symmetric=True
    )
    over = f"the logit minus its mean over {len(background)} background patterns {kind}"
    if result.method == "deep":
        adds_up = f"DeepLIFT: the values add up to {over} ({total:.2f})."
    else:
        adds_up = (
            f"expected gradients from {GRADIENT_SAMPLES} samples{gave_way}: the values add up to {over} only on "
            f"average (here {total:.2f} against {logit - expected:.2f}); other random samples would change the map in "
            "detail."
        )
    out.captions["shap"] = f"Red pixels push the prediction towards {symbol}, blue pixels away from it; {adds_up}"
    out.figures["shap_all_classes"] = shap_image_plot(values, context.pattern, card.class_symbols)
    out.captions["shap_all_classes"] = "The same for every class (shap's image plot)."


def _shap_of(model, pattern: np.ndarray, background: np.ndarray, method: str) -> tuple[ShapResult, str]:
    """SHAP of one pattern, and why DeepLIFT gave way to expected gradients ("" when it did not)."""
    try:
        return shap_values(model, pattern[None], background, method=method), ""
    except DeepLiftUnsupported as exc:
        return shap_values(model, pattern[None], background, method="gradient"), f" ({exc.limit})"


def shap_image_plot(values: np.ndarray, pattern: np.ndarray, labels: list[str]) -> bytes:
    """shap's standard image plot for one pattern and every class."""
    import shap

    with pyplot() as plt:  # shap draws on pyplot's current figure
        shap.image_plot(
            [values[c][None, :, :, None] for c in range(len(labels))],
            pattern[None, :, :, None],
            labels=np.array([labels]),
            show=False,
        )
        return png_bytes(plt.gcf())
