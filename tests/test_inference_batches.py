"""Batched prediction from a pattern source: batches, test-time views, pipelining on a GPU, CPU/GPU agreement."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ebsd_core.augment import scattered_view_grids, view_grids
from ebsd_core.backbones import create_model
from ebsd_core.inference import classify_batch, compile_wanted, default_batch_size, predict_source, views_for_all
from ebsd_core.io.readers import PatternSource
from ebsd_core.preprocess import PreprocessConfig
from ebsd_core.store import ModelCard


@pytest.fixture(scope="module")
def model_and_card():
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 3, pretrained=False).eval()
    return model, ModelCard("efficientnet_lite0", [221, 225, 229], PreprocessConfig(size=32))


@pytest.fixture(scope="module")
def source():
    rng = np.random.default_rng(3)
    patterns = rng.integers(0, 255, (70, 40, 40), dtype=np.uint8)
    return PatternSource("scan.h5", "test", patterns, static_background=rng.random((40, 40)).astype(np.float32))


def test_batches_give_the_same_answer_as_one_call(model_and_card, source):
    model, card = model_and_card
    seen = []
    prediction = predict_source(model, card, source, batch_size=16, progress=lambda f, m: seen.append(m))
    probs, quality = classify_batch(model, card, source.patterns, source.static_background, precision="fp32")
    assert np.allclose(prediction.probabilities, probs, atol=1e-5)
    assert np.allclose(prediction.quality, quality, atol=1e-6)
    assert seen[-1] == "70/70 patterns" and len(seen) == 5


def test_compiling_pays_off_for_large_scans_only():
    card = ModelCard("efficientnet_lite0", [225, 229], PreprocessConfig(size=64), views=4, views_below=0.8)
    assert views_for_all(card) == 1  # only the unsure patterns get the other views
    assert views_for_all(dataclasses.replace(card, views_below=None)) == 4
    assert not compile_wanted("auto", 20_000, 64)
    assert compile_wanted("auto", 20_000, 64, views=4)
    assert compile_wanted("auto", 50_000, 64) and compile_wanted("auto", 5_000, 224)
    assert not compile_wanted("auto", 3_000, 224)
    assert compile_wanted("always", 1, 64) and not compile_wanted("never", 10**7, 224)


def test_default_batch_sizes():
    cuda = torch.device("cuda")
    assert default_batch_size(torch.device("cpu")) == 256
    assert default_batch_size(cuda, (60, 60)) == 4096
    assert default_batch_size(cuda, (240, 240)) == 256  # bounded GPU memory for large patterns
    assert default_batch_size(cuda, (2000, 2000)) == 64


def test_read_only_patterns_are_accepted(model_and_card, source):
    model, card = model_and_card
    frozen = source.patterns.copy()
    frozen.flags.writeable = False
    probs, _ = classify_batch(model, card, frozen[:4], precision="fp32")
    assert probs.shape == (4, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_prediction_matches_cpu(model_and_card, source):
    model, card = model_and_card
    on_cpu = predict_source(model, card, source, precision="fp32")
    gpu_model = create_model("efficientnet_lite0", 3, pretrained=False)
    gpu_model.load_state_dict(model.state_dict())
    gpu_model = gpu_model.cuda().eval()
    on_gpu = predict_source(gpu_model, card, source, batch_size=16, precision="fp32")
    assert np.abs(on_gpu.probabilities - on_cpu.probabilities).max() < 1e-3
    assert np.allclose(on_gpu.quality, on_cpu.quality, atol=1e-4)
    in_bf16 = predict_source(gpu_model, card, source, batch_size=16, precision="bf16")
    assert np.isfinite(in_bf16.probabilities).all()


def test_views_average_reprojections_independent_of_batching(model_and_card, source):
    model, card = model_and_card
    multi = dataclasses.replace(card, views=5)
    single = predict_source(model, card, source, precision="fp32").probabilities
    averaged = predict_source(model, multi, source, batch_size=16, precision="fp32").probabilities
    at_once, _ = classify_batch(model, multi, source.patterns, source.static_background, precision="fp32")
    assert np.allclose(averaged.sum(1), 1, atol=1e-5)
    assert np.allclose(averaged, at_once, atol=1e-5)  # the same views for every pattern, whatever the batch
    assert not np.allclose(averaged, single, atol=1e-4)


def test_only_unsure_patterns_get_the_other_views(model_and_card, source):
    """With ``views_below``, a pattern sure of its first view keeps it; an unsure one gets every view, the
    same views as without the cut (shared, or its own scan point's)."""
    model, card = model_and_card
    single = predict_source(model, card, source, precision="fp32").probabilities
    first = single.max(1)
    ranked = np.sort(first)
    cut = float(ranked[len(ranked) // 2 - 1] + ranked[len(ranked) // 2]) / 2  # between two patterns: half and half
    unsure = first < cut
    every = dataclasses.replace(card, views=3)
    some = dataclasses.replace(every, views_below=cut)
    full = {}
    for scatter in (False, True):
        full[scatter] = predict_source(model, every, source, 16, precision="fp32", scatter_views=scatter).probabilities
        mixed = predict_source(model, some, source, 16, precision="fp32", scatter_views=scatter).probabilities
        assert np.allclose(mixed[~unsure], single[~unsure], atol=1e-5)
        assert np.allclose(mixed[unsure], full[scatter][unsure], atol=1e-5)
        assert not np.allclose(mixed[unsure], single[unsure], atol=1e-4)
    at_one = dataclasses.replace(every, views_below=1.0)  # 1: every pattern gets every view
    everything = predict_source(model, at_one, source, 16, precision="fp32").probabilities
    assert np.allclose(everything, full[False], atol=1e-6)


def test_views_are_mirrored_crystal_rotations():
    grids = view_grids(24, 5, "cpu", max_degrees=1e-6)
    assert grids.shape == (4, 24, 24, 2)
    identity = torch.nn.functional.affine_grid(torch.eye(2, 3)[None], [1, 1, 24, 24], align_corners=False)[0]
    mirrored = identity * torch.tensor([-1.0, 1.0])
    assert torch.allclose(grids[0], identity, atol=1e-4) and torch.allclose(grids[1], mirrored, atol=1e-4)
    turned = view_grids(24, 5, "cpu")
    assert (turned - identity).abs().amax() > 0.05


def test_scattered_views_belong_to_each_point_whatever_the_batching(model_and_card, source):
    model, card = model_and_card
    multi = dataclasses.replace(card, views=3)
    shared = predict_source(model, multi, source, precision="fp32").probabilities
    own = predict_source(model, multi, source, batch_size=16, precision="fp32", scatter_views=True).probabilities
    background = source.static_background
    at_once, _ = classify_batch(model, multi, source.patterns, background, precision="fp32", first_point=0)
    assert np.allclose(own, at_once, atol=1e-5) and np.allclose(own.sum(1), 1, atol=1e-5)
    point, _ = classify_batch(model, multi, source.patterns[37:38], background, precision="fp32", first_point=37)
    assert np.allclose(point[0], own[37], atol=1e-5)  # a point's views depend on its index alone
    assert not np.allclose(own, shared, atol=1e-4)


def test_each_point_gets_different_views():
    points = torch.arange(0, 200)
    grids = scattered_view_grids(16, points, 1)
    assert grids.shape == (200, 16, 16, 2)
    assert torch.equal(grids[5], scattered_view_grids(16, torch.tensor([5]), 1)[0])
    flat = grids.reshape(200, -1)
    distinct = torch.cdist(flat, flat) + torch.eye(200) > 1e-3
    assert distinct.all()  # no two of 200 neighbouring points share a view
    assert not torch.equal(grids, scattered_view_grids(16, points, 2))


def test_blank_patterns_get_every_class_equally_and_no_decision(model_and_card, source):
    """Even with a background to remove, and at a threshold of 0 (never unknown otherwise)."""
    from ebsd_core.inference import decide

    model, card = model_and_card
    patterns = np.array(source.patterns)
    patterns[[2, 5]] = 0  # dropped frames
    patterns[7] = 255  # a saturated camera
    probs, quality = classify_batch(model, card, patterns[:10], source.static_background, precision="fp32")
    np.testing.assert_array_equal(probs[[2, 5, 7]], np.full((3, 3), 1 / 3, np.float32))
    np.testing.assert_array_equal(quality[[2, 5, 7]], 0)
    assert (quality[[0, 1, 3, 4, 6, 8, 9]] > 0).all()
    decided = decide(probs, threshold=0.0)
    assert (decided[[2, 5, 7]] == -1).all() and (decided[[0, 1, 3]] >= 0).all()


def test_compiling_on_a_cpu_beside_a_cuda_toolkit_does_not_warn_of_a_missing_cuda_runtime(tmp_path):
    """A phase map compiled on the CPU (``phasemap --compile always``, or a large map) printed torch's "No CUDA runtime
    is found, using CUDA_HOME='/usr/local'" where a CUDA toolkit is installed: it read as a fault, and where a GPU is
    there but unusable the engine says so itself."""
    import os
    import subprocess
    import sys

    code = "import ebsd_core.inference, torch.utils.cpp_extension as c; print(c.CUDA_HOME)"  # what compiling imports
    env = os.environ | {"CUDA_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}  # a toolkit, no GPU
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == str(tmp_path)  # the toolkit was found, as where the warning was seen
    assert "No CUDA runtime" not in run.stderr
