import numpy as np
import pytest

from ebsd_core.errors import InputError
from ebsd_core.fewshot import few_shot_split
from ebsd_core.io.dataset import Dataset, read_dataset
from ebsd_core.store import read_card


def test_split_is_seeded_disjoint_and_stratified(tiny_dataset):
    ds = read_dataset(tiny_dataset)
    a = few_shot_split(ds, shots=3, seed=1, val_per_class=2)
    b = few_shot_split(ds, shots=3, seed=1, val_per_class=2)
    assert np.array_equal(a.train, b.train)
    assert len(a.train) == 3 * 6
    assert np.bincount(ds.labels[a.train]).tolist() == [3] * 6
    all_seen = np.concatenate([a.train, a.val, a.test])
    assert len(set(all_seen)) == len(all_seen)
    assert not set(all_seen) & set(a.holdout)
    assert set(ds.material[a.holdout]) == {"cu", "w"}


def test_too_few_patterns_or_classes():
    ds = Dataset(patterns=np.zeros((4, 8, 8)), labels=[0, 0, 1, 1], classes=[225, 229], material=["a"] * 4)
    with pytest.raises(InputError, match="has 2 patterns of its training materials; 6 are needed for 5 shots"):
        few_shot_split(ds, shots=5)
    one = Dataset(patterns=np.zeros((4, 8, 8)), labels=[0] * 4, classes=[225], material=["a"] * 4)
    with pytest.raises(InputError, match="every pattern is labelled Fm-3m: classification needs two classes"):
        few_shot_split(one, shots=1)


def test_suggested_shots_leave_a_pattern_to_validate_and_one_to_test():
    from ebsd_core.fewshot import suggested_shots

    assert suggested_shots(np.repeat([0, 1], [30, 40]), None) == 10
    assert suggested_shots(np.repeat([0, 1], [4, 40]), None) == 2  # 2 shots, 1 to validate, 1 to test
    assert suggested_shots(np.repeat([0, 1], [2, 2]), None) == 1  # nothing to test on, but it can train
    held_out = np.repeat([0, 1, 0], [30, 30, 20])  # the held-out material's patterns are not the shots'
    assert suggested_shots(held_out, np.repeat(["train", "holdout"], [60, 20])) == 10
    assert suggested_shots(np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, -1]), None, preferred=20) == 3


def test_fewshot_curve_cli_scores_both_modes_and_extra_views(tiny_dataset, tmp_path, capsys):
    import json

    from ebsd_core.cli import main

    args = ["--data", str(tiny_dataset), "--shots", "2", "--seeds", "0", "--epochs", "1", "--input-size", "32"]
    assert main(["fewshot-curve", *args, "--batch-size", "8", "--views", "2", "--out", str(tmp_path / "c")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary) == {"transfer", "scratch"}
    curve = json.loads((tmp_path / "c" / "curve.json").read_text())
    run = curve["runs"][0]
    assert {"test_accuracy", "holdout_accuracy", "test_accuracy_1view", "holdout_accuracy_1view"} <= set(run)
    assert 0 <= run["test_accuracy"] <= 1 and run["shots"] == 2
    assert set(run["holdout_per_material"]) == {"cu", "w"}  # the fixture's held-out materials
    assert set(curve["summary"]["transfer"]["2"]["holdout_per_material"]) == {"cu", "w"}
    assert curve["summary"]["transfer"]["2"]["seeds"] == [0]  # each point says how many seeds it averages
    tested = set(run["test_per_material"])  # unseen orientations: the training materials only
    assert tested and not tested & {"cu", "w"}
    assert all(0 <= v <= 1 for v in run["test_per_material"].values())
    assert (tmp_path / "c" / "curve.png").stat().st_size > 1000


def test_the_curve_has_a_panel_for_each_test_set_the_sweep_scored(tmp_path):
    """A dataset without held-out materials (the Home demo's) got an empty "held-out materials" panel; real patterns
    given with --real-data, none."""
    from PIL import Image

    from ebsd_core.fewshot_curve import TARGETS, plot_curve

    point = {"seeds": [0], "test_accuracy": 0.6, "test_accuracy_std": 0.0}
    for extra, panels in (
        ({}, 1),
        ({"holdout_accuracy": 0.5, "holdout_accuracy_std": 0.1}, 2),
        ({"real_correct": "1/10"}, 2),
        ({"holdout_accuracy": 0.5, "holdout_accuracy_std": 0.1, "real_correct": "0/3"}, 3),
    ):
        plot_curve({"transfer": {"5": point | extra}}, tmp_path / "c.png", targets=TARGETS)
        assert Image.open(tmp_path / "c.png").size == (550 * panels, 440)  # 5 x 4 inches a panel at 110 dpi


def test_fewshot_curve_saves_models_that_reproduce_their_scores(tiny_dataset, tmp_path, capsys):
    import json

    from ebsd_core.cli import main

    args = ["--data", str(tiny_dataset), "--shots", "2", "--seeds", "0", "--epochs", "1", "--input-size", "32"]
    out = tmp_path / "c"
    assert (
        main(["fewshot-curve", *args, "--modes", "transfer", "--save-models", "--also-binning", "2", "--out", str(out)])
        == 0
    )
    curve = json.loads((out / "curve.json").read_text())
    run = curve["runs"][0]
    assert run["model"] == "models/transfer-2shots-seed0"
    assert 0 <= run["test_accuracy_binned2"] <= 1 and 0 <= run["holdout_accuracy_binned2"] <= 1
    assert curve["summary"]["transfer"]["2"]["test_accuracy_binned2"] == pytest.approx(
        run["test_accuracy_binned2"], abs=1e-4
    )
    capsys.readouterr()
    model = str(out / run["model"])
    card = read_card(model)  # what the Results page shows of a sweep's model
    assert card.metrics["test"]["accuracy"] == pytest.approx(run["test_accuracy"])
    assert card.metrics["holdout"]["confusion_matrix"] and card.metrics["accuracy"] == card.metrics["test"]["accuracy"]
    assert main(["evaluate", "--model", model, "--data", str(tiny_dataset), "--split", "holdout"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["accuracy"] == pytest.approx(run["holdout_accuracy"])
    # a rerun into the same folder is refused, naming the curve; --force starts it again
    assert main(["fewshot-curve", *args, "--modes", "transfer", "--save-models", "--out", str(out)]) == 2
    assert f"{out / 'curve.json'} already holds 1 training run: pass --resume" in capsys.readouterr().err
    assert json.loads((out / "curve.json").read_text()) == curve
    assert main(["fewshot-curve", *args, "--modes", "transfer", "--save-models", "--force", "--out", str(out)]) == 0


def test_a_stopped_sweep_resumes_with_the_runs_it_lacks(tiny_dataset, tmp_path, capsys, monkeypatch):
    import json

    import ebsd_core.fewshot_curve as fewshot_curve
    from ebsd_core.cli import main

    args = ["--data", str(tiny_dataset), "--shots", "2", "--seeds", "0,1", "--epochs", "1", "--input-size", "32"]
    args += ["--modes", "transfer"]
    assert main(["fewshot-curve", *args, "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "curve.json").read_text())["runs"]

    trained = []
    train_model = fewshot_curve.train_model

    def stopped_after_one_run(dataset, config, **kwargs):
        if trained:
            raise KeyboardInterrupt
        trained.append(config.seed)
        return train_model(dataset, config, **kwargs)

    monkeypatch.setattr(fewshot_curve, "train_model", stopped_after_one_run)
    out = tmp_path / "stopped"
    capsys.readouterr()
    assert main(["fewshot-curve", *args, "--out", str(out)]) == 130
    assert f"the finished runs are kept in {out / 'curve.json'}: add --resume" in capsys.readouterr().err
    assert [r["seed"] for r in json.loads((out / "curve.json").read_text())["runs"]] == [0]

    # other settings are refused before any training, naming what differs
    assert main(["fewshot-curve", *args, "--epochs", "2", "--resume", "--out", str(out)]) == 2
    assert "shots 2, seed 0 was made with other settings (train.epochs: 1 then, 2 now)" in capsys.readouterr().err

    trained.clear()
    monkeypatch.setattr(fewshot_curve, "train_model", lambda *a, **k: trained.append(a[1].seed) or train_model(*a, **k))
    assert main(["fewshot-curve", *args, "--resume", "--out", str(out)]) == 0
    assert trained == [1]  # only the run it lacked
    assert "curve.json: 1 run kept, 1 to train" in capsys.readouterr().err
    resumed = json.loads((out / "curve.json").read_text())["runs"]
    score = ("seed", "test_accuracy", "holdout_accuracy", "epochs_run", "settings")
    assert [{k: r[k] for k in score} for r in resumed] == [{k: r[k] for k in score} for r in whole]

    # a curve written before runs recorded their settings cannot be resumed
    curve = json.loads((out / "curve.json").read_text())
    for run in curve["runs"]:
        del run["settings"]
    (out / "curve.json").write_text(json.dumps(curve))
    assert main(["fewshot-curve", *args, "--resume", "--out", str(out)]) == 2
    assert "does not record its settings (it was written by an older version)" in capsys.readouterr().err


def test_fewshot_merge_joins_sweeps_run_apart(tiny_dataset, tmp_path, capsys):
    import json

    from ebsd_core.cli import main

    args = ["--data", str(tiny_dataset), "--seeds", "0", "--epochs", "1", "--input-size", "32", "--save-models"]
    for mode in ("transfer", "scratch"):
        assert main(["fewshot-curve", *args, "--modes", mode, "--shots", "2", "--out", str(tmp_path / mode)]) == 0
    capsys.readouterr()
    merged = tmp_path / "sweep" / "all"
    assert (
        main(
            [
                "fewshot-merge",
                "--curve",
                str(tmp_path / "transfer"),
                "--curve",
                str(tmp_path / "scratch" / "curve.json"),
                "--out",
                str(merged),
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    apart = [json.loads((tmp_path / mode / "curve.json").read_text()) for mode in ("transfer", "scratch")]
    assert printed["summary"] == {
        "transfer": apart[0]["summary"]["transfer"],
        "scratch": apart[1]["summary"]["scratch"],
    }
    transfer_won = (
        apart[0]["summary"]["transfer"]["2"]["test_accuracy"] > apart[1]["summary"]["scratch"]["2"]["test_accuracy"]
    )
    assert printed["transfer_beats_scratch"] == {"2": transfer_won}
    curve = json.loads((merged / "curve.json").read_text())
    assert [(r["mode"], r["shots"]) for r in curve["runs"]] == [("scratch", 2), ("transfer", 2)]
    assert read_card(merged / curve["runs"][1]["model"]).metrics["accuracy"] == pytest.approx(
        curve["runs"][1]["test_accuracy"]
    )
    assert (merged / "curve.png").stat().st_size > 1000
    # the same run twice is refused, naming both files; nothing is written
    again = [
        "fewshot-merge",
        "--curve",
        str(tmp_path / "scratch"),
        "--curve",
        str(merged),
        "--out",
        str(tmp_path / "x"),
    ]
    assert main(again) == 2
    assert (
        f"{merged / 'curve.json'}: the scratch run with shots 2, seed 0 is also in {tmp_path / 'scratch'}"
        in capsys.readouterr().err
    )
    # runs made on other data (another SHA-256) are refused too
    other = json.loads((tmp_path / "scratch" / "curve.json").read_text())
    other["runs"][0]["settings"]["data"] = {"file": "other.h5", "sha256": "0" * 64}
    (tmp_path / "other.json").write_text(json.dumps(other))
    refused = ["fewshot-merge", "--curve", str(tmp_path / "transfer"), "--curve", str(tmp_path / "other.json")]
    assert main([*refused, "--out", str(tmp_path / "x")]) == 2
    assert "other.json: the scratch run with shots 2, seed 0 was trained and scored on other data (other.h5) than" in (
        capsys.readouterr().err
    )
    (tmp_path / "bad.json").write_text("{}")
    assert main(["fewshot-merge", "--curve", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x")]) == 2
    assert "bad.json: holds no training runs of fewshot-curve" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_fewshot_curve_cli_names_a_bad_number_list(tiny_dataset, map_model, tmp_path, capsys):
    from ebsd_core.cli import main

    args = ["--data", str(tiny_dataset), "--seeds", "0", "--out", str(tmp_path / "c")]
    assert main(["fewshot-curve", *args, "--shots", "5,twenty"]) == 2
    assert "--shots: '5,twenty' is not a comma-separated list of whole numbers" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    # the largest shot count the data cannot give is refused before the smaller ones are trained
    assert main(["fewshot-curve", *args, "--shots", "1,12", "--epochs", "1"]) == 2
    assert "tiny.h5: class Pm-3m has 12 patterns of its training materials; 14 are needed" in capsys.readouterr().err
    # train may take 11 of 12 (one left to validate on); a curve's run is scored too, so it needs one to test on
    assert main(["fewshot-curve", *args, "--shots", "11", "--epochs", "1"]) == 2
    assert "13 are needed for 11 shots per class (two more to validate and test on)" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    # the scratch runs come first here: a transfer start that cannot be built was refused only after them
    prior = ["--backbone", "resnet18", "--weights", str(map_model), "--modes", "scratch,transfer"]
    assert main(["fewshot-curve", *args, "--shots", "1", "--epochs", "1", *prior]) == 2
    assert "this model is efficientnet_lite0 with adapt channels; the training asks for resnet18" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "c").exists()


def test_real_patterns_are_scored_with_their_most_likely_class_and_the_truths_probability(map_model, map_scan_file):
    from ebsd_core.fewshot_curve import score_real
    from ebsd_core.store import load_model

    model, card = load_model(map_model)
    rows = score_real(model, card, [(map_scan_file, 225), (map_scan_file, 221)])
    assert len(rows) == 2 * 80  # every point of the 8x10 scan, once per (file, space group) pair
    fcc, absent = rows[:80], rows[80:]
    for row in fcc:
        assert row["most_likely"] in ("Fm-3m", "Im-3m") and 0 <= row["p_truth"] <= 1
        assert row["correct"] == (row["prediction"] == "Fm-3m")
    assert all(row["p_truth"] is None and not row["correct"] for row in absent)  # Pm-3m: not a class of the model


def test_blank_real_patterns_are_left_out_of_the_real_scores(map_model, map_scan_file, tmp_path, caplog):
    """A dropped frame's answer is a tie (unknown): it counted as a wrong real pattern, whatever the model."""
    from PIL import Image

    from ebsd_core.fewshot_curve import score_real
    from ebsd_core.io.readers import open_patterns
    from ebsd_core.store import load_model

    patterns = open_patterns(map_scan_file).batch(0, 3)
    folder = tmp_path / "ni"
    folder.mkdir()
    for i, pattern in enumerate([*patterns, np.zeros_like(patterns[0])]):
        Image.fromarray(np.uint8(np.interp(pattern, (pattern.min(), pattern.max() or 1), (0, 255)))).save(
            folder / f"p{i}.png"
        )
    rows = score_real(*load_model(map_model), [(folder, 225)])
    assert [row["file"] for row in rows] == ["ni"] * 3
    assert "1 of 4 patterns hold one value everywhere (index 3)" in caplog.text
    assert "left out of the real patterns' scores" in caplog.text
