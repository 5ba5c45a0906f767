"""Explanations: they find planted evidence, SHAP adds up, filters have the right shapes, bands line up."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ebsd_core.band_check import band_masks, band_report, parent_centring
from ebsd_core.cli import build_parser, main
from ebsd_core.explain import (
    SHAP_METHODS,
    ConvMaps,
    DeepLiftUnsupported,
    activation_maps,
    conv_map_sizes,
    default_activation_layer,
    filter_changes,
    filter_grid,
    first_layer_filters,
    grad_cam,
    mass_fraction,
    shap_values,
)
from ebsd_core.inference import predict_source
from ebsd_core.io.readers import open_patterns
from ebsd_core.phases import get_material
from ebsd_core.store import load_model

SIZE = 32
EVIDENCE = (slice(2, 12), slice(2, 12))  # class 1 shows a bright square here, nowhere else


def _images(n, rng):
    x = rng.normal(0, 1, (n, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 2, n)
    x[y == 1, EVIDENCE[0], EVIDENCE[1]] += 2.5
    return x, y


@pytest.fixture(scope="module")
def planted():
    """A small CNN trained until it uses the planted square."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 2),
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        x, y = _images(64, rng)
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x)[:, None]), torch.from_numpy(y))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    x, y = _images(64, rng)
    accuracy = (model(torch.from_numpy(x)[:, None]).argmax(1).numpy() == y).mean()
    assert accuracy > 0.9
    return model, x[y == 1][:4], x[:16]


def _region():
    mask = np.zeros((SIZE, SIZE), bool)
    mask[EVIDENCE] = True
    return mask


def test_grad_cam_finds_the_evidence(planted):
    model, positives, _ = planted
    model.zero_grad(set_to_none=True)
    region = _region()  # 10 % of the image
    for image in positives:
        cam = grad_cam(model, image, target=1, layer="2")
        assert cam.shape == (SIZE, SIZE) and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
        assert mass_fraction(cam, region) > 0.5
    assert all(p.grad is None for p in model.parameters())  # the shared model is left without weight gradients


def test_shap_finds_the_evidence_and_adds_up(planted):
    model, positives, background = planted
    result = shap_values(model, positives, background, method="gradient", nsamples=400)
    assert result.values.shape == (4, 2, SIZE, SIZE)
    region = _region()  # 10 % of the pixels
    for values in result.values:
        evidence = values[1]
        # the square carries most of the net evidence, and |SHAP| is concentrated there
        assert evidence[region].sum() / evidence.sum() > 0.6
        assert mass_fraction(evidence, region) > 2 * region.mean()
    with torch.no_grad():
        logits = model(torch.from_numpy(positives)[:, None]).numpy()
    totals = result.values[:, 1].sum(axis=(1, 2))
    np.testing.assert_allclose(totals, logits[:, 1] - result.expected[1], rtol=0.2, atol=0.2)


def test_deep_shap_is_exactly_additive_on_the_efficientnet(map_model, map_scan_file):
    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.preprocess import preprocess

    model, card = load_model(map_model)
    patterns = preprocess(read_dataset(map_scan_file).patterns[:12], card.preprocess)
    result = shap_values(model, patterns[:2], patterns[2:12], method="deep")
    with torch.no_grad():
        logits = model(torch.from_numpy(patterns[:2])[:, None]).numpy()
    np.testing.assert_allclose(result.values.sum(axis=(2, 3)), logits - result.expected, atol=1e-2)


def test_the_default_shap_adds_up_and_says_so(map_model, map_scan_file):
    """DeepLIFT by default: the caption's sum is the logit minus its mean; expected gradients say they add up
    only on average, with both numbers (64 samples gave a 3-epoch model a sum of -3.64 against 1.91)."""
    from ebsd_core.explain_report import explain_pattern

    deep = explain_pattern(map_model, map_scan_file, 3, "shap").numbers
    assert deep["shap_method"] == "deep"
    assert deep["shap_sum"] == pytest.approx(deep["logit"] - deep["expected_logit"], abs=2e-3)
    gradient = explain_pattern(map_model, map_scan_file, 3, "shap", shap_method="gradient")
    assert gradient.numbers["shap_method"] == "gradient"
    here = f"here {gradient.numbers['shap_sum']:.2f} against {deep['logit'] - deep['expected_logit']:.2f}"
    assert "only on average" in gradient.captions["shap"] and here in gradient.captions["shap"]


def test_the_cli_offers_the_engines_shap_methods():
    """The CLI spells them out (it does not import the engine to start): they must stay the same."""
    explain = ["explain", "--model", "m", "--input", "x.h5", "--method", "shap", "--out", "o"]
    parse = build_parser().parse_args
    assert [parse([*explain, "--shap-method", m]).shap_method for m in SHAP_METHODS] == list(SHAP_METHODS)
    with pytest.raises(SystemExit):
        parse([*explain, "--shap-method", "kernel"])


@pytest.mark.parametrize("backbone", ["resnet18", "convnext_atto"])
def test_deep_shap_gives_way_where_it_cannot_follow_the_network(backbone, map_model, map_scan_file, tmp_path):
    """ResNet adds its shortcuts in place (shap's hooks raised a RuntimeError), ConvNeXt's LayerNorm2d broke
    shap's additivity check (an AssertionError): both ended in a traceback."""
    import dataclasses

    from ebsd_core.backbones import create_model
    from ebsd_core.explain_report import explain_pattern
    from ebsd_core.store import read_card, save_model

    torch.manual_seed(0)
    model = create_model(backbone, 2, pretrained=False).eval()
    patterns = np.random.default_rng(0).random((3, SIZE, SIZE)).astype(np.float32)
    with pytest.raises(DeepLiftUnsupported, match="use the gradient explainer"):
        shap_values(model, patterns[:1], patterns[1:], method="deep")
    card = dataclasses.replace(read_card(map_model), backbone=backbone, name=None, training={})
    saved = save_model(model, card, tmp_path / backbone)
    report = explain_pattern(saved, map_scan_file, 3, "shap", shap_method="deep")
    assert report.numbers["shap_method"] == "gradient"
    assert "DeepLIFT cannot follow this network" in report.captions["shap"]


def test_filter_grids_and_changes(map_model):
    model, _ = load_model(map_model)
    weights = first_layer_filters(model)
    assert weights.shape == (32, 1, 3, 3)
    assert filter_grid(weights).shape == (4 * 4 - 1, 8 * 4 - 1)
    assert filter_grid(weights, columns=5).shape == (7 * 4 - 1, 5 * 4 - 1)
    rgb = np.random.default_rng(0).normal(size=(8, 3, 3, 3))  # a stem fed a grey pattern replicated to RGB
    np.testing.assert_allclose(filter_grid(rgb), filter_grid(rgb.sum(axis=1, keepdims=True)), atol=1e-6)
    changes = filter_changes(weights, weights + np.arange(32)[:, None, None, None] * 0.1)
    np.testing.assert_allclose(changes, np.arange(32) * 0.1 * 3, rtol=1e-5)
    np.testing.assert_array_equal(filter_changes(weights, weights), 0)


def test_filters_are_compared_with_those_of_the_model_training_started_from(map_model, tmp_path):
    """A model fine-tuned from an EBSD prior was shown against ImageNet's filters as "before fine-tuning"."""
    import shutil

    from ebsd_core.explain_report import explain_filters

    shutil.copytree(map_model, tmp_path / "start")
    shutil.copytree(map_model, tmp_path / "tuned")  # the same weights: fine-tuning "changed" nothing
    card_file = tmp_path / "tuned" / "model.json"
    card = json.loads(card_file.read_text())
    card["training"]["config"]["weights_file"] = str(tmp_path / "start")
    card_file.write_text(json.dumps(card))
    model, card = load_model(tmp_path / "tuned")
    report = explain_filters(model, card)
    assert (
        report.captions["filters_imagenet"]
        == "Before fine-tuning: the filters of the saved model it started from, start."
    )
    assert report.numbers["mean_change"] == 0
    shutil.rmtree(tmp_path / "start")  # gone from the store: ImageNet's, said so
    report = explain_filters(model, card)
    assert report.captions["filters_imagenet"].startswith("ImageNet's filters, before start (saved model, not in the")
    assert report.numbers["mean_change"] > 0


def test_activation_maps_are_ranked(map_model, map_scan_file):
    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.preprocess import preprocess

    model, card = load_model(map_model)
    pattern = preprocess(read_dataset(map_scan_file).patterns[:1], card.preprocess)[0]
    maps, channels = activation_maps(model, pattern, "conv_stem", top=5)
    assert maps.shape == (5, 16, 16) and len(set(channels.tolist())) == 5
    assert np.all(np.diff(maps.mean(axis=(1, 2))) <= 1e-6)


def test_the_default_activation_layer_is_the_deepest_spatial_one_with_maps_a_quarter_of_the_input(map_model):
    """A middle layer of EfficientNet-Lite0 gave 8 x 8 px maps of a 128 px input: blocks of grey no one could read."""
    model, card = load_model(map_model)
    sizes = conv_map_sizes(model, card.input_size)
    assert list(sizes)[0] == "conv_stem" and sizes["conv_stem"][1:3] == (card.input_size // 2,) * 2
    assert list(sizes)[-1] == "conv_head" and len(sizes) == 49  # every convolution, input to output
    layer = default_activation_layer(sizes, card.input_size)
    assert layer == "blocks.1.1.conv_dw" and sizes[layer].height * 4 == card.input_size and sizes[layer].kernel == 3
    deeper = list(sizes)[list(sizes).index(layer) + 1 :]
    assert all(sizes[n].height * 4 < card.input_size or sizes[n].kernel == 1 for n in deeper)
    assert default_activation_layer({"only": ConvMaps(8, 2, 2, 3)}, 128) == "only"  # none so wide: the first


def test_band_masks_sit_on_bright_bands():
    from ebsd_core.masters import load_master
    from ebsd_core.simulate import project, random_quaternions

    q = random_quaternions(2, np.random.default_rng(3))
    pc = np.array([0.5, 0.25, 0.55])
    for quaternion in q:
        clean = project(load_master(get_material("ni3al")), quaternion[None], pc[None], 64)[0]
        masks = band_masks(get_material("ni3al"), quaternion, pc, 64)
        assert clean[masks.bands].mean() > 1.15 * clean[~masks.bands].mean()
        assert masks.superlattice is not None and len(masks.superlattice_lines) > 0
    assert band_masks(get_material("ni"), q[0], pc, 64).superlattice is None
    assert parent_centring(get_material("ni3al")) == "F" and parent_centring(get_material("nial")) == "I"
    report = band_report(masks.bands.astype(float), masks)
    assert report["band_mass"] == pytest.approx(1.0) and report["band_enrichment"] > 1


@pytest.mark.parametrize("method", ["filters", "activations", "gradcam", "shap"])
def test_explain_command(map_model, map_scan_file, tmp_path, capsys, method):
    args = ["explain", "--model", str(map_model)]
    args += [] if method == "filters" else ["--input", str(map_scan_file), "--index", "3"]
    assert main(args + ["--method", method, "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] and all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in summary["written"])
    if method in ("gradcam", "shap"):
        assert 0 <= summary["bands"]["band_mass"] <= 1


def test_explain_refuses_bad_index(map_model, map_scan_file, tmp_path, capsys):
    args = ["explain", "--model", str(map_model), "--input", str(map_scan_file), "--index", "999"]
    assert main(args + ["--method", "gradcam", "--out", str(tmp_path)]) == 2
    assert "outside 0..79" in capsys.readouterr().err
    # an option the method would ignore is refused, not ignored
    assert main(args + ["--method", "activations", "--target", "1", "--out", str(tmp_path)]) == 2
    assert "--method activations does not use --target: leave it out" in capsys.readouterr().err
    for method in ("activations", "gradcam"):  # a layer without maps ended in a numpy / torch traceback
        assert main([*args[:-1], "3", "--method", method, "--layer", "global_pool", "--out", str(tmp_path)]) == 2
        assert "layer 'global_pool' gives no feature maps (its output is (1, " in capsys.readouterr().err
    filters = ["explain", "--model", str(map_model), "--method", "filters"]
    assert main([*filters, "--layer", "conv_stem", "--out", str(tmp_path)]) == 2
    assert "--method filters does not use --layer" in capsys.readouterr().err


def test_the_class_to_explain_is_named_as_a_symbol_space_group_or_index(map_model, map_scan_file, tmp_path, capsys):
    """`--target` took the model's class index only; microscopists name a phase by its symbol or number."""
    args = ["explain", "--model", str(map_model), "--input", str(map_scan_file), "--method", "gradcam"]
    explained = []
    for target in ("Im-3m", "229", "Im3m", "1"):
        assert main([*args, "--target", target, "--out", str(tmp_path / target)]) == 0
        explained.append(json.loads(capsys.readouterr().out)["explained_class"])
    assert explained == ["Im-3m"] * 4
    for target, message in (
        ("Pm-3m", "the model does not know Pm-3m (221); its classes are 0 Fm-3m (225), 1 Im-3m (229)"),
        ("2", "class index 2 is outside 0..1; the classes are 0 Fm-3m (225), 1 Im-3m (229)"),
        ("bcc", "'bcc' is not a class of the model; its classes are 0 Fm-3m (225), 1 Im-3m (229)"),
    ):
        assert main([*args, "--target", target, "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_pattern_of_a_map_is_named_by_its_row_and_column(map_model, map_scan_file, tmp_path, capsys):
    """The 8x10 scan: row 2, column 3 is pattern 23, as a microscopist reads it off the phase map."""
    args = ["explain", "--model", str(map_model), "--input", str(map_scan_file), "--method", "gradcam"]
    assert main([*args, "--index", "2,3", "--out", str(tmp_path / "a")]) == 0
    assert json.loads(capsys.readouterr().out)["index"] == 23
    assert main([*args, "--index", "8,0", "--out", str(tmp_path / "b")]) == 2
    assert "row 8, column 0 is outside the 8x10 map (rows 0..7, columns 0..9)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--index", "2,3,4", "--out", str(tmp_path / "c")])
    said = "give a pattern's index (17), its row and column in a map (3,4) or its image's name (p17.png), not '2,3,4'"
    assert said in capsys.readouterr().err
    assert main([*args, "--index", "p3.png", "--out", str(tmp_path / "d")]) == 2  # a scan file names no images
    assert "holds no images named one by one: give the pattern's index, not 'p3.png'" in capsys.readouterr().err


def test_a_pattern_of_class_folders_is_explained_with_its_folders_class(map_model, map_scan_file, tmp_path, capsys):
    """Images in class folders say each pattern's space group, as a dataset does: the explanation gives it."""
    from PIL import Image

    scan = open_patterns(map_scan_file)
    for index, (pattern, label) in enumerate(zip(scan.batch(0, 4), scan.labels[:4], strict=True)):
        folder = tmp_path / "mine" / ("Fm-3m" if scan.classes[label] == 225 else "Im-3m")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pattern).save(folder / f"p{index}.png")
    args = ["explain", "--model", str(map_model), "--input", str(tmp_path / "mine"), "--method", "gradcam"]
    for index in (0, 3):
        assert main([*args, "--index", str(index), "--out", str(tmp_path / f"out{index}")]) == 0
        shown = sorted((tmp_path / "mine").glob("*/*.png"))[index]
        explained = json.loads(capsys.readouterr().out)
        assert explained["true_class"] == shown.parent.name
        assert explained["file"] == f"{shown.parent.name}/{shown.name}"
    files = [f"{shown.parent.name}/{shown.name}" for shown in sorted((tmp_path / "mine").glob("*/*.png"))]
    for name in (files[2], files[2].split("/")[1]):  # by its image's name, as the page picks it: with its folder or not
        assert main([*args, "--index", name, "--out", str(tmp_path / "by-name")]) == 0
        explained = json.loads(capsys.readouterr().out)
        assert (explained["index"], explained["file"]) == (2, files[2])
    assert main([*args, "--index", "p9.png", "--out", str(tmp_path / "none")]) == 2
    assert "mine: no image named 'p9.png' (it holds " in capsys.readouterr().err
    for pattern in (tmp_path / "mine").glob("*/*.png"):  # not class folders: no class to give
        pattern.rename(tmp_path / "mine" / f"{pattern.parent.name}-{pattern.name}")
    for folder in (tmp_path / "mine").glob("*/"):
        folder.rmdir()
    assert main([*args, "--index", "0", "--out", str(tmp_path / "out")]) == 0
    assert json.loads(capsys.readouterr().out)["true_class"] is None


def test_an_explanation_answers_unknown_as_predict_does(map_model, map_scan_file, tmp_path):
    """With the model's test-time views and inference precision (bf16 on CPUs that have it), as predict."""
    import shutil

    from ebsd_core.explain_report import explain_pattern
    from ebsd_core.store import read_card

    model, card = load_model(map_model)
    prediction = predict_source(model, card, open_patterns(map_scan_file))
    index = int(prediction.confidence.argmin())  # its least sure pattern: some models are sure of most (p = 1.0)
    numbers = explain_pattern(map_model, map_scan_file, index, "gradcam").numbers
    explained = np.array(list(numbers["probabilities"].values()))
    assert np.abs(explained - prediction.probabilities[index]).max() < 0.002  # one pattern alone, or in a batch
    top = numbers["probabilities"][numbers["predicted"]]
    assert numbers["decision"] == (numbers["predicted"] if top >= read_card(map_model).unknown_threshold else "unknown")
    threshold = round(top + 0.005, 4)
    assert threshold < 1
    unsure = shutil.copytree(map_model, tmp_path / "unsure")  # the same model, not sure enough of that pattern
    meta = json.loads((unsure / "model.json").read_text())
    meta["unknown_threshold"] = threshold
    (unsure / "model.json").write_text(json.dumps(meta))
    numbers = explain_pattern(unsure, map_scan_file, index, "gradcam").numbers
    assert numbers["decision"] == "unknown" and numbers["threshold"] == threshold


def test_a_point_of_a_cleaned_map_is_answered_with_the_views_the_map_gave_it(map_model, map_scan_file, tmp_path):
    """With the grain clean-up every point of a map gets test-time views of its own: Explain gave a map's point the
    model's shared views instead, and so another answer than the map's (68 % where the map said 57 %, found on the
    SDSS layout)."""
    from ebsd_core.explain_report import explain_pattern
    from ebsd_core.phasemap import load_phase_map, map_scan, save_phase_map, saved_map_header

    model, card = load_model(map_model)
    phase_map = map_scan(model, card, open_patterns(map_scan_file), compile="never", views=3)
    saved = save_phase_map(phase_map, tmp_path / "map.npz")
    assert saved_map_header(saved)["views"] == {"views": 3, "views_below": None, "own": True}
    assert load_phase_map(saved).views == phase_map.views
    index = int(np.abs(phase_map.raw_probabilities - 0.5).min(axis=1).argmin())  # the least sure point
    as_mapped = explain_pattern(map_model, map_scan_file, index, "gradcam", views=phase_map.views).numbers
    explained = np.array(list(as_mapped["probabilities"].values()))
    assert np.abs(explained - phase_map.raw_probabilities[index]).max() < 0.002
    shared = explain_pattern(map_model, map_scan_file, index, "gradcam").numbers  # as predict answers
    assert shared["probabilities"] != as_mapped["probabilities"]


def test_shap_of_a_lone_pattern_takes_simulated_patterns_as_its_background(map_model, map_scan_file, tmp_path):
    """One uploaded pattern, with a model whose training data is not on this machine (trained elsewhere)."""
    from PIL import Image

    from ebsd_core.caveats import SIMULATION_ONLY_CAUTION
    from ebsd_core.explain_report import explain_pattern

    pattern = np.asarray(open_patterns(map_scan_file).batch(3, 4)[0])
    Image.fromarray(pattern).save(tmp_path / "lone.tif")
    report = explain_pattern(map_model, tmp_path / "lone.tif", 0, "shap")
    assert "16 background patterns simulated for the model's classes" in report.captions["shap"]
    assert np.isfinite(report.numbers["shap_sum"]) and report.figures["shap"][:4] == b"\x89PNG"
    assert report.notes == [SIMULATION_ONLY_CAUTION]  # an image is a recorded pattern, as far as anyone knows
    on_scan = explain_pattern(map_model, map_scan_file, 3, "shap")
    assert "background patterns of this input" in on_scan.captions["shap"]
    assert on_scan.notes == []  # the simulator's own scan


def test_a_blank_pattern_is_not_explained(map_model, map_scan_file, tmp_path, capsys, caplog):
    from ebsd_core.io.dataset import read_dataset, write_dataset

    scan = read_dataset(map_scan_file)
    scan.patterns[4] = 0
    write_dataset(scan, tmp_path / "dropped.h5")
    args = ["explain", "--model", str(map_model), "--input", str(tmp_path / "dropped.h5"), "--method", "gradcam"]
    assert main([*args, "--index", "4", "--out", str(tmp_path / "x")]) == 2
    assert "pattern 4 holds one value everywhere" in capsys.readouterr().err
    assert (
        main(
            [
                "predict",
                "--model",
                str(map_model),
                "--input",
                str(tmp_path / "dropped.h5"),
                "--out",
                str(tmp_path / "p.csv"),
            ]
        )
        == 0
    )
    assert "1 of 80 patterns hold one value everywhere (index 4)" in caplog.text
    assert (tmp_path / "p.csv").read_text().splitlines()[5].split(",")[2] == "unknown"
