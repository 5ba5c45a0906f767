"""The engine from Python (ebsd_core.api): a notebook's readings are the command line's, of signals and arrays too."""

import csv
import shutil

import numpy as np
import pytest
from conftest import KIKUCHIPY_DATA, WEAK_TEST, with_test_score

from ebsd_core.api import as_pattern_source, export_map, load_classifier, stored_models, train
from ebsd_core.cli import main
from ebsd_core.errors import EbsdError, InputError
from ebsd_core.io.dataset import read_dataset
from ebsd_core.io.readers import open_patterns
from ebsd_core.phasemap import map_scan
from ebsd_core.store import load_model

NICKEL = KIKUCHIPY_DATA / "kikuchipy_h5ebsd" / "patterns.h5" if KIKUCHIPY_DATA else None
needs_kikuchipy = pytest.mark.skipif(KIKUCHIPY_DATA is None, reason="kikuchipy is not installed")


@pytest.fixture(scope="module")
def classifier(map_model):
    return load_classifier(map_model, device="cpu")


def _predict_csv(model, path, out) -> list[dict]:
    assert main(["predict", "--model", str(model), "--input", str(path), "--out", str(out)]) == 0
    with open(out, newline="") as handle:
        return list(csv.DictReader(handle))


@needs_kikuchipy
def test_a_signal_its_array_and_its_file_are_read_as_predict_reads_the_file(classifier, map_model, tmp_path):
    """kikuchipy's 3 x 3 Ni scan (with a static background): as a loaded signal, as its array with that background,
    and by its path, the readings are ``predict``'s, with a row and a column per point and the same notes."""
    import kikuchipy as kp

    rows = _predict_csv(map_model, NICKEL, tmp_path / "p.csv")
    signal = kp.load(str(NICKEL))
    tables = [
        classifier.classify(NICKEL),
        classifier.classify(signal),
        classifier.classify(signal.data, static_background=signal.static_background),
        classifier.classify(kp.load(str(NICKEL), lazy=True)),
    ]
    for table in tables:
        assert list(table["prediction"]) == [row["prediction"] for row in rows]
        for symbol in classifier.classes:
            assert np.allclose(table[f"p_{symbol}"], [float(row[f"p_{symbol}"]) for row in rows], atol=1e-4)
        assert list(table["row"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2] and list(table["column"]) == [0, 1, 2] * 3
    assert any("60x60 px but the model was trained on 32x32" in note for note in tables[0].attrs["notes"])
    read_as = tables[0].attrs["notes"][:-2]  # how the file was read (it holds 2 scans), then the model's notes
    assert tables[0].attrs["notes"][-2:] == tables[1].attrs["notes"] and "holds 2 scans" in read_as[0]
    without = classifier.classify(signal.data)  # its background left out: another reading
    assert not np.allclose(without.filter(like="p_"), tables[0].filter(like="p_"))
    assert tables[1].attrs["source"] == str(NICKEL)  # the notes name the file the signal was loaded from
    assert classifier.classify(signal.deepcopy().data).attrs["source"] == "<array>"


def test_arrays_of_one_pattern_a_line_and_a_map(classifier, map_scan_file):
    patterns = read_dataset(map_scan_file).patterns.reshape(-1, 32, 32)
    line = classifier.classify(patterns)
    assert len(line) == 80 and "row" not in line and line.index.name == "index"
    grid = classifier.classify(patterns.reshape(8, 10, 32, 32))
    assert list(grid["prediction"]) == list(line["prediction"]) and grid["row"].max() == 7
    one = classifier.classify(patterns[5])
    assert len(one) == 1 and one["prediction"][0] == line["prediction"][5]
    assert np.allclose(one.filter(like="p_").sum(axis=1), 1, atol=1e-5)


def test_what_holds_no_patterns_is_refused_naming_it(classifier):
    with pytest.raises(InputError, match="an array of shape \\(2, 2, 2, 32, 32\\) holds no patterns"):
        classifier.classify(np.zeros((2, 2, 2, 32, 32)))
    with pytest.raises(InputError, match="the array is empty"):
        classifier.classify(np.zeros((0, 32, 32)))
    with pytest.raises(TypeError, match="cannot read patterns from a list"):
        classifier.classify([[1, 2], [3, 4]])
    with pytest.raises(InputError, match="the static background is 20x10 px but the patterns are 32x32 px"):
        classifier.classify(np.ones((3, 32, 32)), static_background=np.zeros((10, 20)))
    with pytest.raises(InputError, match="NaN"):
        classifier.classify(np.full((2, 32, 32), np.nan, dtype=np.float32))


def test_blank_patterns_and_a_weak_model_are_in_the_notes(map_model, map_scan_file, tmp_path):
    weak = load_classifier(with_test_score(map_model, tmp_path / "weak", WEAK_TEST), device="cpu")
    patterns = read_dataset(map_scan_file).patterns.reshape(-1, 32, 32).copy()
    patterns[3] = 0  # a dropped frame
    table = weak.classify(patterns)
    assert table["prediction"][3] == "unknown"
    assert any(note.startswith("this model read 21% of its 24 test patterns right") for note in table.attrs["notes"])
    assert any(note.startswith("1 of 80 patterns hold one value everywhere (index 3)") for note in table.attrs["notes"])
    assert "read 21% of its 24 test patterns right" in repr(weak)


def test_overrides_leave_the_loaded_model_as_it_was(classifier, map_scan_file):
    views, threshold = classifier.card.views, classifier.card.unknown_threshold
    sure = classifier.classify(map_scan_file, unknown_threshold=0.999, views=1)
    assert (classifier.card.views, classifier.card.unknown_threshold) == (views, threshold)
    unsure = sure["confidence"] < 0.999
    assert unsure.any() and (sure["prediction"][unsure] == "unknown").all()
    assert (classifier.classify(map_scan_file)["prediction"] == "unknown").sum() < unsure.sum()


def test_a_phase_map_is_the_command_lines_of_the_file_or_its_array(classifier, map_model, map_scan_file, tmp_path):
    model, card = load_model(map_model)
    expected = map_scan(model, card, open_patterns(map_scan_file))
    from_file = classifier.phase_map(map_scan_file)
    assert np.allclose(from_file.probabilities, expected.probabilities, atol=1e-5)
    assert from_file.accuracy() == expected.accuracy() and from_file.raw_probabilities is not None
    patterns = read_dataset(map_scan_file).patterns
    from_array = classifier.phase_map(patterns.reshape(8, 10, 32, 32), cleanup=False)
    assert from_array.nav_shape == (8, 10) and from_array.raw_probabilities is None
    xmap = from_file.to_crystal_map()
    assert xmap.shape == (8, 10) and set(xmap.phases.names) >= {"Austenite", "Ferrite"}
    with pytest.raises(InputError, match="the array holds 80 patterns without a 2D map shape"):
        classifier.phase_map(patterns.reshape(80, 32, 32))
    assert classifier.phase_map(patterns.reshape(80, 32, 32), nav_shape=(8, 10)).nav_shape == (8, 10)


def test_an_existing_ang_is_replaced_only_when_forced(classifier, map_scan_file, tmp_path):
    phase_map = classifier.phase_map(map_scan_file, cleanup=False)
    ang = tmp_path / "scan.ang"
    ang.write_text("# the microscope's own indexing\n")
    with pytest.raises(EbsdError, match="already exists, and may be the microscope's own indexing"):
        export_map(phase_map, ang)
    assert ang.read_text() == "# the microscope's own indexing\n"
    assert export_map(phase_map, ang, force=True) == ang and "# Phase 1" in ang.read_text()
    png = export_map(phase_map, tmp_path / "map.png")
    assert export_map(phase_map, png).stat().st_size > 0  # a picture is replaced as any export


def test_a_model_is_loaded_by_its_name_in_the_store(map_model, tmp_path, monkeypatch):
    store = tmp_path / "store"
    shutil.copytree(map_model, store / "duplex-api")
    monkeypatch.setenv("EBSD_MODEL_STORE", str(store))
    classifier = load_classifier("duplex-api", device="cpu")
    assert classifier.classes == ["Fm-3m", "Im-3m"] and classifier.device == "cpu"
    # named as the store names it (its folder), not as it was trained ("duplex")
    assert repr(classifier).startswith("Classifier('duplex-api': efficientnet_lite0, Fm-3m, Im-3m; 32 px input")
    with pytest.raises(EbsdError, match="no-such-model"):
        load_classifier("no-such-model")


def test_a_master_pattern_is_refused():
    kp = pytest.importorskip("kikuchipy")
    master = kp.signals.EBSDMasterPattern(np.zeros((5, 5), dtype=np.float32))
    with pytest.raises(InputError, match="master pattern"):
        as_pattern_source(master)


def test_a_pattern_of_an_array_is_explained_as_the_file_it_came_from(classifier, map_model, map_scan_file):
    from ebsd_core.explain_report import explain_pattern

    patterns = read_dataset(map_scan_file).patterns.reshape(8, 10, 32, 32)
    cam = classifier.explain(patterns, index=(2, 3), method="gradcam")
    from_file = explain_pattern(map_model, map_scan_file, (2, 3), "gradcam")
    assert cam.numbers["index"] == 23 and cam.numbers["probabilities"] == from_file.numbers["probabilities"]
    assert set(cam.figures) == {"gradcam"} and "Where the evidence for" in cam.captions["gradcam"]
    shap = classifier.explain(map_scan_file, index=23, method="shap", target="Im-3m")
    assert shap.numbers["explained_class"] == "Im-3m" and "shap" in shap.figures
    html = shap._repr_html_()  # what a notebook shows: the reading, then every figure with its caption
    assert html.startswith("<p>Read as <b>") and html.count("data:image/png;base64,") == len(shap.figures)
    with pytest.raises(InputError, match="unknown method 'filters' for a pattern; use one of activations, gradcam"):
        classifier.explain(patterns, method="filters")
    with pytest.raises(InputError, match="row 9, column 0 is outside the 8x10 map"):
        classifier.explain(patterns, index=(9, 0))
    assert "filters_finetuned" in classifier.filters().figures


def test_scores_are_evaluates_of_a_labelled_file_and_of_patterns_of_one_known_phase(
    classifier, map_model, map_scan_file, capsys
):
    import json

    assert main(["evaluate", "--model", str(map_model), "--data", str(map_scan_file)]) == 0
    expected = json.loads(capsys.readouterr().out)
    scores = classifier.evaluate(map_scan_file)
    assert scores["accuracy"] == expected["accuracy"] and scores["confusion_matrix"] == expected["confusion_matrix"]
    assert isinstance(scores["notes"], list)
    dataset = read_dataset(map_scan_file)
    ferrite = dataset.patterns.reshape(-1, 32, 32)[dataset.labels.reshape(-1) == dataset.classes.index(229)]
    one_phase = classifier.evaluate(ferrite, space_group="ferrite")  # a catalogue material names its space group
    assert one_phase["patterns"] == len(ferrite) and one_phase["classes"] == ["Fm-3m", "Im-3m"]
    assert any("all of one phase" in note for note in one_phase["notes"])
    given = as_pattern_source(ferrite)
    assert classifier.evaluate(given, space_group=229)["accuracy"] == one_phase["accuracy"]
    assert given.labels is None and given.classes is None  # the caller's source is left as it was
    with pytest.raises(InputError, match="has no labels: give the phase its patterns are all of"):
        classifier.evaluate(ferrite)
    with pytest.raises(InputError, match="holds labels of its own"):
        classifier.evaluate(map_scan_file, space_group="Im-3m")
    with pytest.raises(InputError, match="does not name a space group"):
        classifier.evaluate(ferrite, space_group="Fe")


def test_the_readmes_example_calls_what_the_api_has():
    """The README's Python example compiles, imports what ebsd_core.api holds and calls only methods it has."""
    import ast
    import re
    from pathlib import Path

    from ebsd_core import api

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = re.search(r"## From Python.*?```python\n(.*?)```", readme, re.S).group(1)
    tree = ast.parse(example)
    imported = [
        a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "ebsd_core.api" for a in n.names
    ]
    assert imported and all(hasattr(api, name) for name in imported)
    called = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and getattr(n.value, "id", "") == "model"}
    assert called and called <= set(dir(api.Classifier)), called - set(dir(api.Classifier))


def test_a_model_trained_from_python_is_the_train_commands(tiny_dataset, tmp_path, monkeypatch, capsys):
    """The same data, settings and seed give the model ``train`` gives, saved where a bare name saves it; a model of
    that name is replaced only with ``force``, and contradictory starts are refused before any training."""
    import json

    store = tmp_path / "store"
    monkeypatch.setenv("EBSD_MODEL_STORE", str(store))
    args = ["train", "--data", str(tiny_dataset), "--shots", "2", "--epochs", "1", "--input-size", "32", "--views", "1"]
    assert main([*args, "--out", "by-command"]) == 0
    capsys.readouterr()
    model = train(tiny_dataset, "by-python", shots=2, epochs=1, input_size=32, views=1)
    assert model.name == "by-python" and (store / "by-python" / "model.json").is_file()
    assert "epoch 1" in capsys.readouterr().err  # its progress, as the command's
    cards = [json.loads((store / name / "model.json").read_text()) for name in ("by-command", "by-python")]
    assert cards[0]["weights_sha256"] == cards[1]["weights_sha256"]
    assert cards[0]["metrics"]["test"]["accuracy"] == cards[1]["metrics"]["test"]["accuracy"]
    with pytest.raises(EbsdError, match="already exists"):
        train(tiny_dataset, "by-python", shots=2, epochs=1, input_size=32, quiet=True)
    with pytest.raises(InputError, match="scratch=True starts from random weights and cannot take weights="):
        train(tiny_dataset, "scratch", scratch=True, weights=store / "by-command")
    with pytest.raises(TypeError, match="no_such_setting"):
        train(tiny_dataset, "odd", shots=2, epochs=1, no_such_setting=3)
    assert not (store / "scratch").exists() and not (store / "odd").exists()
    listed = stored_models()  # what the store holds, as `models list` says it
    assert list(listed.index) == ["by-command", "by-python"] and listed.loc["by-python", "shots"] == 2
    monkeypatch.setenv("EBSD_MODEL_STORE", str(tmp_path / "empty"))
    assert stored_models().empty


def test_a_phase_map_on_a_dask_cluster_is_the_one_made_here(classifier, map_scan_file):
    from ebsd_core.phasemap import open_cluster

    here = classifier.phase_map(map_scan_file, unknown_threshold=0.9)
    with open_cluster("local", workers=1) as client:
        there = classifier.phase_map(map_scan_file, client=client, unknown_threshold=0.9)
        with pytest.raises(InputError, match="a cluster's workers read the scan from its file: give its path"):
            classifier.phase_map(read_dataset(map_scan_file).patterns, client=client)
    np.testing.assert_allclose(there.probabilities, here.probabilities, atol=1e-4)
    assert there.threshold == here.threshold == 0.9 and there.fractions() == here.fractions()


@needs_kikuchipy
def test_patterns_whose_static_background_was_removed_are_not_given_it_again(classifier, tmp_path):
    """kikuchipy's remove_static_background keeps the background on the signal, and its save writes it: subtracting it
    again moved a model's probabilities 4-30 times as much as reading those patterns without it (bench/RESULTS.md)."""
    import kikuchipy as kp

    signal = kp.load(str(NICKEL))
    signal.remove_static_background(show_progressbar=False)
    assert signal.static_background is not None  # still there
    table = classifier.classify(signal)
    assert table.attrs["notes"][0].startswith("carries a static background, but its patterns seem to have had it")
    plain = classifier.classify(signal.data)
    np.testing.assert_array_equal(table.filter(like="p_"), plain.filter(like="p_"))
    signal.save(tmp_path / "processed.h5")
    source = open_patterns(tmp_path / "processed.h5")
    assert source.static_background is None and "correlates 0.56 with it" in source.warnings[-1]
    assert open_patterns(NICKEL).static_background is not None  # as recorded, it is subtracted


@needs_kikuchipy
def test_a_scan_whose_first_rows_are_dark_keeps_its_static_background():
    """The patterns compared with the background are spread over the scan: a scan that starts off the sample (its first
    rows dark) is recorded as it is, and its background subtracted (left out, its readings moved 0.28-0.42)."""
    import kikuchipy as kp

    recorded = kp.load(str(NICKEL))
    patterns = np.resize(recorded.data.reshape(9, 60, 60), (100, 60, 60)).reshape(10, 10, 60, 60).copy()
    rng = np.random.default_rng(0)
    patterns[:7] = rng.integers(3, 8, size=patterns[:7].shape)  # 70 dark patterns: the first 64 would all be dark
    signal = kp.signals.EBSD(patterns)
    signal.static_background = recorded.static_background
    source = as_pattern_source(signal)
    assert source.static_background is not None and source.warnings == []
