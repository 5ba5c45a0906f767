"""Notes on how far a model's reading of a scan can be trusted."""

import pytest

from ebsd_core.errors import ModelError


def test_a_recorded_scan_read_by_a_simulation_only_model_gets_the_caution():
    from types import SimpleNamespace

    from ebsd_core.caveats import SIMULATION_ONLY_CAUTION, reading_notes
    from ebsd_core.preprocess import PreprocessConfig
    from ebsd_core.store import ModelCard

    card = ModelCard("efficientnet_lite0", [225, 229], PreprocessConfig(size=64), training={"pattern_size": 60})
    recorded = SimpleNamespace(pattern_shape=(60, 60), path="ni.h5", provenance={})
    real_dataset = SimpleNamespace(pattern_shape=(60, 60), path="real.h5", provenance={"generator": "labelled source"})
    simulated_map = SimpleNamespace(
        pattern_shape=(60, 60), path="map.h5", provenance={"generator": "ebsd_core 0.1 simulate-map"}
    )
    card.training["dataset"] = "ebsd_core 0.1 simulate"
    assert reading_notes(recorded, card) == [SIMULATION_ONLY_CAUTION]
    assert reading_notes(real_dataset, card) == [SIMULATION_ONLY_CAUTION]  # real patterns in a dataset file
    assert reading_notes(simulated_map, card) == []  # the simulator's own scans
    card.training["dataset"] = "single-phase scans"  # fine-tuned on real patterns
    assert reading_notes(recorded, card) == []


def test_a_small_simulated_scan_read_by_a_model_of_larger_patterns_is_named():
    from types import SimpleNamespace

    from ebsd_core.caveats import reading_notes
    from ebsd_core.preprocess import PreprocessConfig
    from ebsd_core.store import ModelCard

    training = {"pattern_size": 240, "dataset": "simulate", "augment": {"resolution": 4}}
    card = ModelCard("efficientnet_lite0", [225, 229], PreprocessConfig(size=224), training=training)
    simulated = {"generator": "ebsd_core 0.1 simulate-map"}
    resized, note = reading_notes(SimpleNamespace(pattern_shape=(60, 60), path="map.h5", provenance=simulated), card)
    assert "resized to 224x224" in resized
    assert "simulated at 60 px" in note and "simulate the scan at the model's pattern size" in note
    notes = reading_notes(SimpleNamespace(pattern_shape=(60, 60), path="ni.h5", provenance={}), card)
    assert not any("simulated at" in n for n in notes)  # a real camera's binned patterns: trained for
    (note,) = reading_notes(SimpleNamespace(pattern_shape=(120, 120), path="map.h5", provenance=simulated), card)
    assert "resized to 224x224" in note  # 2x smaller: only resized


def test_a_much_coarser_camera_gets_advice_on_training_for_it():
    from types import SimpleNamespace

    from ebsd_core.caveats import check_pattern_size
    from ebsd_core.preprocess import PreprocessConfig
    from ebsd_core.store import ModelCard

    card = ModelCard("efficientnet_lite0", [225, 229], PreprocessConfig(size=224), training={"pattern_size": 240})
    scan = SimpleNamespace(pattern_shape=(60, 60), path="scan.h5")
    (note,) = check_pattern_size(scan, card)
    assert "60x60 px" in note and "--camera-binning 4" in note
    (note,) = check_pattern_size(SimpleNamespace(pattern_shape=(120, 120), path="scan.h5"), card)
    assert "--camera-binning" not in note  # 2x coarser: resized, and measured to cost little
    assert "they are resized to 224x224" in note
    (note,) = check_pattern_size(SimpleNamespace(pattern_shape=(1200, 1600), path="fe.tif"), card)
    assert "1600x1200 px" in note and "centre-cropped to a square and resized to 224x224" in note
    card.training["augment"] = {"resolution": 4}
    (note,) = check_pattern_size(scan, card)
    assert "--camera-binning" not in note  # trained for it
    with pytest.raises(ModelError, match="resizing was not allowed"):
        check_pattern_size(scan, card, allow_resize=False)


def test_blank_patterns_are_told_apart_by_why_they_are_blank():
    """Dropped frames, points without an image and images a run could not read each get their own words; an image
    recorded as unreadable by an earlier run but read in this one (mended since) is not counted."""
    import numpy as np

    from ebsd_core.caveats import blank_pattern_note

    blank = np.array([True, False, True, True, True, False, True])
    imageless = np.array([False, False, True, False, False, False, False])
    unread = {3: "p3.png: cannot read this image (damaged)", 4: "p4.png: gone", 5: "p5.png: mended since"}
    notes = blank_pattern_note(blank, imageless, unread)
    assert [note.split(" (")[0] for note in notes] == [
        "2 of 7 patterns hold one value everywhere",
        "1 of 7 points have no image",
        "2 of 7 images could not be read when the run reached them",
    ]
    assert "(index 0, 6)" in notes[0] and "(index 2)" in notes[1]
    assert notes[2].endswith(
        "(index 3, 4; the first, p3.png: cannot read this image (damaged)). Read as blank patterns, they are unknown"
    )
    mended = blank_pattern_note(np.array([True, False]), unread={1: "p1.png: mended since"})
    assert mended == blank_pattern_note(np.array([True, False])) and len(mended) == 1


def test_a_model_surely_weak_on_its_test_patterns_is_named_with_its_worst_mistake():
    """Its readings of a scan get a note (predict, phase maps, explanations) when its test accuracy is surely below
    0.9; its scores on data given to ``evaluate`` do not, being its accuracy there; a card without a test (made
    elsewhere) gets none."""
    from types import SimpleNamespace

    from ebsd_core.caveats import reading_notes, source_notes, weak_model_note
    from ebsd_core.preprocess import PreprocessConfig
    from ebsd_core.store import ModelCard

    test = {"patterns": 20, "accuracy": 0.6, "classes": ["Pm-3m", "Fm-3m"], "confusion_matrix": [[7, 3], [5, 5]]}
    card = ModelCard("efficientnet_lite0", [221, 225], PreprocessConfig(size=64), metrics={"test": test})
    (note,) = weak_model_note(card)
    assert note.startswith("this model read 60% of its 20 test patterns right (most often Fm-3m read Pm-3m: 5 of 10)")
    assert "train --epochs, --shots" in note
    scan = SimpleNamespace(pattern_shape=(60, 60), path="map.h5", provenance={"generator": "ebsd_core simulate-map"})
    assert reading_notes(scan, card) == [note] and source_notes(scan, card) == []
    test |= {"patterns": 1, "accuracy": 0.0, "confusion_matrix": [[0, 1], [0, 0]]}
    (note,) = weak_model_note(card)
    assert note.startswith("this model read 0% of its 1 test pattern right (most often Pm-3m read Fm-3m: 1 of 1)")
    test |= {"patterns": 20, "accuracy": 0.9}
    assert weak_model_note(card) == []  # from 0.9 on, right enough to say nothing
    test |= {"patterns": 10, "accuracy": 0.8}
    assert weak_model_note(card) == []  # 2 of 10 wrong is no sure sign (a demo map's pair model: 1 of 10)
    test["accuracy"] = 0.7
    assert len(weak_model_note(card)) == 1  # 3 of 10 is
    for metrics in ({}, {"test": {"patterns": 0, "accuracy": 0.0}}, {"test": {"accuracy": "n/a"}}):
        assert (
            weak_model_note(ModelCard("efficientnet_lite0", [221, 225], PreprocessConfig(size=64), metrics=metrics))
            == []
        )
    test |= {"accuracy": 0.5, "confusion_matrix": "garbled"}  # a card from elsewhere: the accuracy alone
    (note,) = weak_model_note(card)
    assert note.startswith("this model read 50% of its 10 test patterns right: expect")
