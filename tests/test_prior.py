"""EBSD priors: what they are trained on, how few-shot training starts from them, and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ebsd_core.cli import build_parser, main
from ebsd_core.datasets import simulate_dataset
from ebsd_core.errors import CancelledError, ModelError, PhaseError
from ebsd_core.phases import get_material, materials_for
from ebsd_core.prior import PriorSettings, minutes_on_two_cores, prior_materials, settings_for
from ebsd_core.rehearsal import REHEARSAL_SOURCES, rehearsal_for, rehearsal_materials
from ebsd_core.store import load_model, read_card, save_model
from ebsd_core.train import TrainConfig, initial_model, train_model

TINY = ["--per-class", "24", "--size", "32", "--input-size", "32", "--epochs", "1"]


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    """A one-epoch prior on 32 px patterns that never saw austenite or ferrite (through the CLI)."""
    store = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EBSD_MODEL_STORE", str(store))
        assert main(["prior", "--exclude", "austenite,ferrite", *TINY, "--out", "prior"]) == 0
    return store / "prior"


def test_prior_materials_leave_out_the_excluded_phases():
    materials = prior_materials(["Austenite", "ferrite"])
    assert "austenite" not in materials and "ferrite" not in materials
    assert {"ni", "w", "ni3al", "si"} <= set(materials)
    with pytest.raises(PhaseError, match="fewer than two space groups"):
        prior_materials([m for m in prior_materials([]) if m != "ni"])
    with pytest.raises(PhaseError):
        prior_materials(["kryptonite"])


def test_prior_settings_follow_the_dataset_patterns():
    sizes = {shape: settings_for(shape) for shape in [(60, 60), (120, 120), (480, 480), (1200, 1600)]}
    assert [(s.pattern_size, s.input_size) for s in sizes.values()] == [(60, 64), (120, 128), (240, 224), (240, 224)]
    assert all(s.per_class == PriorSettings().per_class for s in sizes.values())
    assert settings_for((120, 120), PriorSettings(epochs=3)).epochs == 3
    assert minutes_on_two_cores(sizes[(60, 60)]) < minutes_on_two_cores(sizes[(120, 120)]) == 4
    assert minutes_on_two_cores(sizes[(480, 480)]) == 10


def test_prior_card_records_what_it_saw(prior):
    card = read_card(prior)
    assert card.is_prior
    assert card.training["prior"]["excluded"] == ["austenite", "ferrite"]
    assert set(card.training["materials"]) <= set(card.training["prior"]["materials"])
    assert "austenite" not in card.training["materials"] and len(card.classes) == 6
    told = card.how_trained()  # as Results and "models show" say it
    assert told["Left out of this prior"] == "Austenite, Ferrite" and "Austenite" not in told["Materials"]


def test_prior_is_never_overwritten(prior, capsys, monkeypatch):
    monkeypatch.setenv("EBSD_MODEL_STORE", str(prior.parent))
    before = (prior / "weights.safetensors").read_bytes()
    assert main(["prior", "--exclude", "ni", *TINY, "--out", "prior"]) == 2
    assert "exists" in capsys.readouterr().err
    assert (prior / "weights.safetensors").read_bytes() == before


def test_few_shot_training_starts_from_the_prior(prior):
    """The backbone starts as the prior's; the 2-class head is new; the card says where it started."""
    donor, _ = load_model(prior)
    config = TrainConfig(input_size=32, weights_file=str(prior))
    start = initial_model(config, num_classes=2).state_dict()
    stem = "conv_stem.weight"
    assert torch.equal(start[stem], donor.state_dict()[stem])
    assert start["classifier.weight"].shape[0] == 2

    pair = simulate_dataset(per_class=12, phases=["austenite", "ferrite"], size=32, seed=4)
    config = TrainConfig(
        shots=4, epochs=1, input_size=32, batch_size=8, min_steps_per_epoch=2, val_per_class=4, weights_file=str(prior)
    )
    result = train_model(pair, config)
    assert result.card.training["config"]["weights_file"] == str(prior) and result.card.pretrained


def test_a_prior_of_another_backbone_is_refused(prior):
    config = TrainConfig(backbone="resnet18", pretrained=False, input_size=32, weights_file=str(prior))
    with pytest.raises(ModelError, match="choose the same backbone"):
        initial_model(config, num_classes=2)


def test_cli_train_from_a_prior(prior, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EBSD_MODEL_STORE", str(prior.parent))
    data = tmp_path / "pair.h5"
    simulate = ["simulate", "--phases", "austenite,ferrite", "--per-class", "12", "--size", "32"]
    assert main([*simulate, "--out", str(data)]) == 0
    args = ["--data", str(data), "--shots", "4", "--epochs", "1", "--batch-size", "8", "--views", "1"]
    assert main(["train", *args, "--weights", "prior", "--out", "from-prior"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert read_card(summary["model"]).training["config"]["weights_file"] == "prior"
    rehearse = ["--rehearse", "4", "--rehearse-from", "catalogue"]
    assert main(["train", *args, "--weights", "prior", *rehearse, "--out", "rehearsed"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = read_card(summary["model"]).training["rehearsal"]
    assert record["source"] == "catalogue" and record["patterns"] == 8


def test_rehearsal_simulates_the_prior_materials_the_dataset_lacks(prior):
    pair = simulate_dataset(per_class=12, phases=["austenite", "ni3al"], size=32, seed=4)
    rehearsal = rehearsal_for(str(prior), pair, per_class=6)
    prior_record = read_card(prior).training["prior"]
    assert set(rehearsal.materials) <= set(prior_record["materials"]) - {"austenite", "ni3al"}
    assert {get_material(m).space_group for m in rehearsal.materials} == {221, 225}
    assert rehearsal.dataset.classes == pair.classes and len(rehearsal.dataset) == 12
    assert sorted(rehearsal.dataset.labels.tolist()) == [0] * 6 + [1] * 6
    assert rehearsal.dataset.patterns.shape[1:] == (32, 32)  # the prior's pattern size


def test_catalogue_rehearsal_adds_the_phases_the_prior_lacks():
    """``source="catalogue"``: the prior's materials first, then every other catalogue material of the classes."""
    pair = simulate_dataset(per_class=4, phases=["austenite", "ni3al"], size=32, seed=4)
    record = {"materials": ["ni", "w"]}  # w (Im-3m) is not a class of the pair
    assert rehearsal_materials(record, pair, "prior") == ["ni"]
    catalogue = rehearsal_materials(record, pair, "catalogue")
    expected = {m.key for sg in (221, 225) for m in materials_for(sg)} - {"austenite", "ni3al"}
    assert catalogue[0] == "ni" and set(catalogue) == expected
    assert {"cu3au", "pt3fe", "al3sc"} <= set(catalogue)  # the L1_2 phases besides the dataset's Ni3Al
    with pytest.raises(ModelError, match="unknown rehearsal source 'everything'"):
        rehearsal_materials(record, pair, "everything")
    # the CLI spells the sources out (it does not import the engine to start); they must stay the same
    parse = build_parser().parse_args
    assert [
        parse(["train", "--data", "d.h5", "--out", "m", "--rehearse-from", s]).rehearse_from for s in REHEARSAL_SOURCES
    ] == list(REHEARSAL_SOURCES)
    with pytest.raises(SystemExit):
        parse(["train", "--data", "d.h5", "--out", "m", "--rehearse-from", "everything"])


def test_few_shot_training_rehearses_the_prior(prior):
    pair = simulate_dataset(per_class=12, phases=["austenite", "ferrite"], size=32, seed=4)
    config = TrainConfig(
        shots=4,
        epochs=1,
        input_size=32,
        batch_size=8,
        min_steps_per_epoch=2,
        val_per_class=4,
        views=1,
        weights_file=str(prior),
        rehearsal_per_class=8,
    )
    steps = []
    result = train_model(pair, config, progress=lambda p: steps.append(p.batches))
    record = result.card.training["rehearsal"]
    assert record["patterns"] == 16 and "austenite" not in record["materials"]
    assert result.card.training["split"]["train"] == 8  # the shots; the rehearsal is recorded apart
    assert max(steps) == 4  # (8 shots x 2 repeats + 16 rehearsal patterns) / batches of 8


def test_rehearsal_needs_a_prior_or_a_model_trained_on_simulations(tmp_path):
    """A model of a scan's phases trained on simulated patterns rehearses them while it is fine-tuned on labelled
    regions of the scan (bench/RESULTS.md: 4 grains of each phase, 0.864 of the map right without, 0.999 with)."""
    import dataclasses

    pair = simulate_dataset(per_class=12, phases=["austenite", "ferrite"], size=32, seed=4)
    with pytest.raises(ModelError, match="needs a saved model to start from"):
        rehearsal_for(None, pair, 4)
    config = TrainConfig(shots=4, epochs=1, input_size=32, batch_size=8, min_steps_per_epoch=2, val_per_class=4)
    simulated = save_model(*_trained(pair, config), tmp_path / "simulated")
    assert read_card(simulated).simulated_materials == ["austenite", "ferrite"]
    with pytest.raises(ModelError, match="no prior material is left to rehearse"):  # the dataset holds both
        rehearsal_for(str(simulated), pair, 4)
    regions = dataclasses.replace(pair, material=np.full(len(pair), "scan r0-4 c0-4"), provenance={})
    rehearsal = rehearsal_for(str(simulated), regions, 4)
    assert rehearsal.materials == ["austenite", "ferrite"] and len(rehearsal.dataset) == 8
    assert rehearsal.dataset.patterns.shape[1:] == (32, 32)  # the start model's pattern size
    real = save_model(*_trained(regions, config), tmp_path / "real")  # trained on user data
    assert read_card(real).simulated_materials == []
    with pytest.raises(ModelError, match="neither an EBSD prior nor a model trained on simulated patterns"):
        rehearsal_for(str(real), regions, 4)


def _trained(dataset, config):
    result = train_model(dataset, config)
    return result.model, result.card


def test_a_prior_build_stops_while_it_simulates_when_cancelled(tmp_path):
    """Its ~900 patterns take about 20 s to simulate at 240 px, before any training step could see the Cancel."""
    from ebsd_core.prior import build_prior

    with pytest.raises(CancelledError, match="while simulating the prior's patterns"):
        build_prior(["ni"], tmp_path / "store" / "prior", should_stop=lambda: True)
    assert not (tmp_path / "store" / "prior").exists()
