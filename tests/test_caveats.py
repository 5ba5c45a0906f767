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
