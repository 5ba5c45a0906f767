import json

import pytest

from ebsd_core.cli import main
from ebsd_core.io.dataset import read_dataset


def test_simulate_command_is_deterministic(tmp_path, capsys):
    args = ["simulate", "--phases", "ni,ni3al", "--per-class", "6", "--size", "24", "--seed", "4"]
    assert main([*args, "--out", str(tmp_path / "a.h5")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["classes"] == ["Pm-3m", "Fm-3m"]
    assert main([*args, "--out", str(tmp_path / "b.h5")]) == 0
    a, b = read_dataset(tmp_path / "a.h5"), read_dataset(tmp_path / "b.h5")
    assert (a.patterns == b.patterns).all()
    assert a.provenance["master_kinds"] == {"ni": "dynamical", "ni3al": "dynamical"}


def test_holdout_materials(tiny_dataset):
    ds = read_dataset(tiny_dataset)
    assert len(ds.classes) == 6
    assert set(ds.material[ds.split == "holdout"]) == {"cu", "w"}
    assert "cu" not in set(ds.material[ds.split == "train"])
    assert ds.class_counts()["Fm-3m"] == 24


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["simulate", "--phases", "kryptonite", "--per-class", "2", "--out", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown phase 'kryptonite'") and "Traceback" not in err
    assert not (tmp_path / "x.h5").exists()
    assert main(["info", str(tmp_path / "missing.h5")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_train_refuses_more_shots_than_the_data_has_naming_the_file(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "models" / "too-many"
    assert main(["train", "--data", str(tiny_dataset), "--shots", "12", "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tiny_dataset}: class Pm-3m has 12 patterns") and "choose fewer shots" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--lr", "-1", "learning rate must be a number from 1e-07 to 1, not '-1'"),
        ("--batch-size", "0", "batch size must be a whole number from 1 to 4096, not '0'"),
        ("--epochs", "0", "epochs must be a whole number from 1 to 10000, not '0'"),
        ("--patience", "-1", "patience must be a whole number from 1 to 10000, not '-1'"),
        ("--frozen-epochs", "-2", "frozen epochs must be a whole number from 0 to 10000, not '-2'"),
    ],
)
def test_train_refuses_bad_training_options_before_training(tiny_dataset, tmp_path, capsys, option, value, message):
    out = tmp_path / "models" / "bad"
    with pytest.raises(SystemExit):
        main(["train", "--data", str(tiny_dataset), "--shots", "2", option, value, "--out", str(out)])
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
