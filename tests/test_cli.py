import json
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import torch
from conftest import (
    WEAK_TEST,
    damage_pixels,
    not_utf8_folder,
    scan_as_images,
    scan_indexing,
    unreadable,
    with_test_score,
)
from PIL import Image

from ebsd_core.cli import main
from ebsd_core.errors import EbsdError
from ebsd_core.io.dataset import read_dataset
from ebsd_core.io.readers import sources_in_folder


def test_simulate_command_is_deterministic(tmp_path, capsys):
    args = ["simulate", "--phases", "ni,ni3al", "--per-class", "6", "--size", "24", "--seed", "4"]
    assert main([*args, "--out", str(tmp_path / "a.h5")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["classes"] == ["Pm-3m", "Fm-3m"]
    assert main([*args, "--out", str(tmp_path / "b.h5")]) == 0
    a, b = read_dataset(tmp_path / "a.h5"), read_dataset(tmp_path / "b.h5")
    assert (a.patterns == b.patterns).all()
    assert a.provenance["master_kinds"] == {"ni": "dynamical", "ni3al": "dynamical"}


@pytest.mark.parametrize("command", [["simulate", "--per-class", "2"], ["simulate-map", "--phases", "ni,ni3al"]])
def test_a_simulation_never_replaces_a_dataset_unasked(tmp_path, capsys, command):
    out = tmp_path / "hour-long.h5"
    out.write_bytes(b"a dataset simulated earlier")
    assert main([*command, "--size", "24", "--out", str(out)]) == 2
    assert "already exists; choose another --out or pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"a dataset simulated earlier"
    shape = ["--shape", "2x2"] if command[0] == "simulate-map" else ["--phases", "ni,ni3al"]
    assert main([*command, *shape, "--size", "24", "--out", str(out), "--force"]) == 0
    assert len(read_dataset(out)) == 4


def test_holdout_materials(tiny_dataset):
    ds = read_dataset(tiny_dataset)
    assert len(ds.classes) == 6
    assert set(ds.material[ds.split == "holdout"]) == {"cu", "w"}
    assert "cu" not in set(ds.material[ds.split == "train"])
    assert ds.class_counts()["Fm-3m"] == 24


def test_simulate_takes_classes_or_materials_not_both(tmp_path, capsys):
    out = tmp_path / "x.h5"
    assert main(["simulate", "--classes", "225,229", "--phases", "ni,w", "--per-class", "2", "--out", str(out)]) == 2
    assert "--classes picks catalogue materials by space group and --phases names" in capsys.readouterr().err
    assert not out.exists()


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["simulate", "--phases", "kryptonite", "--per-class", "2", "--out", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown phase 'kryptonite'") and "Traceback" not in err
    assert not (tmp_path / "x.h5").exists()
    assert main(["info", str(tmp_path / "missing.h5")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_info_of_a_dataset_says_what_it_holds_per_class(tiny_dataset, capsys):
    """A dataset's info gave its classes as numbers only; training asks for a count of each."""
    assert main(["info", str(tiny_dataset)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classes"] == [221, 223, 225, 227, 229, 230]
    assert list(info["class_counts"]) == ["Pm-3m", "Pm-3n", "Fm-3m", "Fd-3m", "Im-3m", "Ia-3d"]
    assert sum(info["class_counts"].values()) == info["patterns"] == 96
    assert info["holdout_materials"] == ["cu", "w"] and {"cu", "w", "ni"} <= set(info["materials"])


def test_warnings_name_the_file_as_errors_do(tmp_path):
    """Run as a user runs it: a process of its own (where the command line sets up logging), in the folder of the
    patterns (found on review: the venv's python found ebsd_core only in the project folder; `make` now tells it
    where the project is)."""
    for index in range(3):
        Image.fromarray(np.full((16, 16), 40 * index, np.uint8)).save(tmp_path / f"p{index}.png")
    (tmp_path / "p3.png").write_bytes(b"not a png")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "ebsd_core", "info", "."], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("warning: .: 1 image could not be read and was left out (p3.png)")
    assert json.loads(done.stdout)["patterns"] == 3


def _csv_rows(path):
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_reads_a_folder_of_scans_file_by_file(map_model, map_scan_file, tmp_path, capsys, caplog):
    """Found on review: a folder of the session's scans was refused as holding no images; each is now classified as
    if given alone, its rows named by its file, and a file that cannot be read is left out with a warning."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("scan2.h5", "scan10.h5"):
        (folder / name).write_bytes(map_scan_file.read_bytes())
    (folder / "broken.up2").write_bytes(b"not a scan")
    (folder / "._scan2.h5").write_bytes(b"macOS metadata")  # hidden: not even tried
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(map_model), "--input", str(folder), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"] == 2 and summary["left_out"] == ["broken.up2"] and summary["patterns"] == 160
    rows = _csv_rows(out)
    assert [row["path"] for row in rows] == ["scan2.h5"] * 80 + ["scan10.h5"] * 80  # natural order of names
    assert [int(row["index"]) for row in rows] == [*range(80), *range(80)]
    assert "broken.up2" in caplog.text and "left out" in caplog.text and "._scan2" not in caplog.text
    alone = tmp_path / "alone.csv"
    assert main(["predict", "--model", str(map_model), "--input", str(folder / "scan2.h5"), "--out", str(alone)]) == 0
    assert [row["p_Fm-3m"] for row in _csv_rows(alone)] == [row["p_Fm-3m"] for row in rows[:80]]
    sure = tmp_path / "sure.csv"  # another unknown threshold than the model's, as phasemap takes one
    args = ["predict", "--model", str(map_model), "--input", str(folder / "scan2.h5"), "--out", str(sure)]
    assert main([*args, "--unknown-threshold", "0.99"]) == 0
    confident = [max(float(row["p_Fm-3m"]), float(row["p_Im-3m"])) >= 0.99 for row in rows[:80]]
    assert [row["prediction"] != "unknown" for row in _csv_rows(sure)] == confident and not all(confident)

    (folder / "scan2.h5").unlink()
    (folder / "scan10.h5").unlink()
    capsys.readouterr()
    assert main(["predict", "--model", str(map_model), "--input", str(folder), "--out", str(tmp_path / "x.csv")]) == 2
    assert "none of the scan files here could be read (1 scan file" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_predict_leaves_out_a_scan_of_a_folder_found_damaged_in_the_run(
    map_model, map_scan_file, tmp_path, capsys, caplog
):
    """Found on review: in a folder of scans, a file whose header read but whose patterns did not (a chunk of an HDF5
    file damaged on a failing disk) stopped ``predict`` there, and the predictions of the files before it were lost
    with the CSV. It is now left out, as a file that cannot be opened is, naming it and why."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("scan1.h5", "scan2.h5", "scan3.h5"):
        (folder / name).write_bytes(map_scan_file.read_bytes())
    with h5py.File(folder / "scan2.h5") as file:  # zeros in the middle of its patterns' compressed chunk
        chunk = file["patterns"].id.get_chunk_info(0)
    damaged = bytearray((folder / "scan2.h5").read_bytes())
    damaged[chunk.byte_offset + chunk.size // 2 : chunk.byte_offset + chunk.size // 2 + 64] = bytes(64)
    (folder / "scan2.h5").write_bytes(bytes(damaged))
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(map_model), "--input", str(folder), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"] == 2 and summary["left_out"] == ["scan2.h5"] and summary["patterns"] == 160
    assert [row["path"] for row in _csv_rows(out)] == ["scan1.h5"] * 80 + ["scan3.h5"] * 80
    assert f"{folder / 'scan2.h5'}: cannot read patterns 0-80: it is damaged" in caplog.text
    assert "(left out)" in caplog.text
    capsys.readouterr()
    args = ["predict", "--model", str(map_model), "--input", str(folder / "scan2.h5"), "--out", str(tmp_path / "x.csv")]
    assert main(args) == 2  # given by itself, it is the error
    assert "scan2.h5: cannot read patterns 0-80: it is damaged" in capsys.readouterr().err


def test_what_this_account_may_not_read_is_named_not_passed_over(
    map_model, map_scan_file, tmp_path, capsys, caplog, monkeypatch
):
    """Found as a lab's server account over a data tree with private folders: a folder it may not read made the
    whole tree unlistable ("PermissionError: [Errno 13] Permission denied: '/tmp/droot/closed'"), and a file it may
    not read was told "kikuchipy cannot read this file (the system would not open it (Permission denied))"."""
    import shutil

    project = tmp_path / "project"
    for sample in ("closed", "open", "private"):
        (project / sample).mkdir(parents=True)
        shutil.copy(map_scan_file, project / sample / "scan.h5")
    unreadable(monkeypatch, project / "closed", project / "private" / "scan.h5")
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(map_model), "--input", str(project), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["left_out"] == ["closed", "private/scan.h5"] and summary["patterns"] == 80
    assert f"{project / 'closed'}: this account may not read this folder (permission denied)" in caplog.text
    assert f"{project / 'private' / 'scan.h5'}: this account may not read this file (permission denied)" in caplog.text
    assert main(["info", str(project / "private" / "scan.h5")]) == 2
    assert "scan.h5: this account may not read this file (permission denied)" in capsys.readouterr().err
    assert main(["info", str(project / "closed")]) == 2
    assert "closed: this account may not read this folder (permission denied)" in capsys.readouterr().err


def test_predict_follows_linked_sample_folders_once(map_model, map_scan_file, tmp_path, capsys):
    """Found on review: a sample folder linked into the project (from a network share, as labs link them) was passed
    over in silence, its scan missing from the answers."""
    import shutil

    project, share = tmp_path / "project", tmp_path / "share"
    for place in (project / "sample_a", share / "sample_b"):
        place.mkdir(parents=True)
        shutil.copy(map_scan_file, place / "scan.h5")
    (project / "sample_b").symlink_to(share / "sample_b")
    (project / "loop").mkdir()
    (project / "loop" / "up").symlink_to(project)  # a link back up the tree: walked once
    (project / "broken").symlink_to(tmp_path / "nowhere")
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(map_model), "--input", str(project), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"] == 2 and summary["left_out"] == [] and summary["patterns"] == 2 * 80
    assert sorted({row["path"] for row in _csv_rows(out)}) == ["sample_a/scan.h5", "sample_b/scan.h5"]
    # a server's data root: a link out of it is not walked (a link to / would have the whole disk walked)
    assert sources_in_folder(project, within=project) == [project / "sample_a" / "scan.h5"]


def test_predict_names_a_file_whose_name_is_not_utf8_as_ls_does(map_model, map_scan_file, tmp_path, capsys):
    r"""Found on review: a sample folder named in Latin-1 ended predict in "UnicodeEncodeError: 'utf-8' codec can't
    encode character '\udce9' in position 3: surrogates not allowed", and no CSV was written."""
    import shutil

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(map_scan_file, not_utf8_folder(project) / "scan.h5")
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(map_model), "--input", str(project), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["patterns"] == 80
    assert {row["path"] for row in _csv_rows(out)} == {"caf\ufffd/scan.h5"}


def test_predict_reads_a_folder_of_sample_folders_source_by_source(map_model, map_scan_file, tmp_path, capsys):
    """Found on review: a project folder of samples (``real/fe/p.tif``, ``real/ni/patterns.h5``) was read as class
    folders and refused, as its folders do not name space groups; predict needs no labels. info lists them."""
    import shutil

    project = tmp_path / "project"
    (project / "sample_b" / "thumbs").mkdir(parents=True)
    (project / "sample_a").mkdir()
    (project / ".git").mkdir()
    shutil.copy(map_scan_file, project / "sample_a" / "scan.h5")
    shutil.copy(map_scan_file, project / ".git" / "hidden.h5")  # passed over, as a saved model in the tree is
    shutil.copytree(map_model, project / "sample_a" / "my-model")
    rng = np.random.default_rng(0)
    for place, name, size in (
        ("sample_b", "p2.png", 40),
        ("sample_b", "p10.png", 40),
        ("sample_b/thumbs", "t.png", 24),
    ):
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(project / place / name)
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(map_model), "--input", str(project), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"] == 3 and summary["left_out"] == [] and summary["patterns"] == 80 + 2 + 1
    paths = [row["path"] for row in _csv_rows(out)]
    assert paths == ["sample_a/scan.h5"] * 80 + ["sample_b/p2.png", "sample_b/p10.png", "sample_b/thumbs/t.png"]
    (project / "sample_c").mkdir()
    (project / "sample_c" / "broken.up2").write_bytes(b"not a scan")
    with zipfile.ZipFile(project / "sample_c" / "exported.zip", "w") as archive:  # a scan's images, zipped
        archive.write(project / "sample_b" / "p2.png", "p2.png")
    assert main(["info", str(project)]) == 0  # what is there, as predict reads it
    described = json.loads(capsys.readouterr().out)["sources"]
    assert [(s["name"], s.get("patterns")) for s in described] == [
        ("sample_a/scan.h5", 80),
        ("sample_b", 2),
        ("sample_b/thumbs", 1),
        ("sample_c/broken.up2", None),
        ("sample_c/exported.zip", 1),
    ]
    assert described[-2]["error"].startswith("kikuchipy cannot read this file")
    # a zip beside a scan file is read too (only the scan files were), its images named in it, as a folder's are
    # (they were all named by the zip alone)
    assert main(["predict", "--model", str(map_model), "--input", str(project / "sample_c"), "--out", str(out)]) == 0
    assert [row["path"] for row in _csv_rows(out)] == ["exported.zip/p2.png"]
    capsys.readouterr()
    # a folder of images given by itself, as before: its own images (with a warning that thumbs/ was not read)
    assert main(["predict", "--model", str(map_model), "--input", str(project / "sample_b"), "--out", str(out)]) == 0
    assert [row["path"] for row in _csv_rows(out)] == ["p2.png", "p10.png"]  # its images, beside thumbs/
    capsys.readouterr()
    (project / "sample_b").rename(project / "Fm-3m")  # a folder of class folders: one labelled set, as before
    shutil.rmtree(project / "sample_a")
    shutil.rmtree(project / "sample_c")
    assert main(["predict", "--model", str(map_model), "--input", str(project), "--out", str(out)]) == 0
    assert "files" not in json.loads(capsys.readouterr().out)
    assert [row["path"] for row in _csv_rows(out)] == ["Fm-3m/p2.png", "Fm-3m/p10.png"]  # thumbs/: not a class
    # a labelled set deeper in a lab's tree is one source, as when given by itself (its class folders were listed
    # each alone, unlabelled, by info and by the dashboard's server path)
    labelled = tmp_path / "lab" / "training" / "ni_fe"
    shutil.copytree(project / "Fm-3m", labelled / "Fm-3m")
    shutil.copytree(project / "Fm-3m", labelled / "Im-3m")
    assert sources_in_folder(tmp_path / "lab", within=tmp_path / "lab") == [labelled]
    assert main(["info", str(tmp_path / "lab")]) == 0
    described = json.loads(capsys.readouterr().out)["sources"]
    assert [(s["name"], s["patterns"], s["classes"]) for s in described] == [("training/ni_fe", 4, [225, 229])]
    assert main(["predict", "--model", str(map_model), "--input", str(tmp_path / "lab"), "--out", str(out)]) == 0
    assert [row["path"] for row in _csv_rows(out)] == [
        f"training/ni_fe/{group}/{name}" for group in ("Fm-3m", "Im-3m") for name in ("p2.png", "p10.png")
    ]


def test_phasemap_writes_the_formats_a_one_pattern_scan_fits_and_names_the_one_it_does_not(map_model, tmp_path, capsys):
    """Found on review: mapping a single recorded pattern with ``--out map.ang`` ended in a traceback from orix."""
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)).save(tmp_path / "p.png")
    outs = [tmp_path / "map.ang", tmp_path / "map.ctf"]
    args = ["phasemap", "--model", str(map_model), "--scan", str(tmp_path / "p.png")]
    assert main([*args, "--out", str(outs[0]), "--out", str(outs[1])]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["refused"] == [str(outs[0])] and "Traceback" not in captured.err
    assert not outs[0].exists() and outs[1].exists()


def test_a_scan_exported_as_images_with_an_image_lost_is_mapped_with_that_point_unknown(
    map_model, map_scan_file, tmp_path, capsys, caplog, monkeypatch
):
    """Found on review: one image lost from a scan exported as images took the map's shape away, and ``phasemap``
    refused the folder; read image by image (a scan too large to decode at once), its last image cut short (an export
    that did not finish) stopped the run at its end. Their points are now blank: unknown in the predictions and on the
    map, which says why."""
    from ebsd_core.io import images

    monkeypatch.setattr(images, "IN_MEMORY_BYTES", 0)
    folder = scan_as_images(map_scan_file, tmp_path / "exported")
    (folder / "x3_y4.png").unlink()
    (folder / "x9_y7.png").write_bytes((folder / "x9_y7.png").read_bytes()[:-30])
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(map_model), "--input", str(folder), "--out", str(out)]) == 0
    rows = _csv_rows(out)
    assert len(rows) == 80 and rows[43]["prediction"] == "unknown" and rows[43]["path"] == str(folder)
    assert rows[44]["path"] == "x4_y4.png" and rows[79]["prediction"] == "unknown"
    assert "2 of 80 points have no image (index 43, 79)" in caplog.text
    ang = tmp_path / "map.ang"
    assert main(["phasemap", "--model", str(map_model), "--scan", str(folder), "--out", str(ang)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["nav_shape"] == [8, 10] and summary["notes"][-1].startswith(
        "2 of 80 points have no image (index 43, 79)"
    )
    points = [line.split() for line in ang.read_text().splitlines() if not line.startswith("#")]
    assert len(points) == 80 and points[43][5:8] == ["0.00000", "-1.00000", "0"]  # IQ 0, CI -1, not indexed


def test_an_image_that_cannot_be_decoded_when_the_run_reaches_it_leaves_its_point_unknown(
    map_model, map_scan_file, tmp_path, capsys, caplog, monkeypatch
):
    """Found on review: in a scan too large to decode when opened, one image damaged past its header (its length
    whole: only decoding it finds the damage) stopped ``predict`` and ``phasemap`` where the run reached it, after
    minutes of work. Its point is now unknown, and the run's notes name it."""
    from ebsd_core.io import images

    monkeypatch.setattr(images, "IN_MEMORY_BYTES", 0)
    folder = scan_as_images(map_scan_file, tmp_path / "exported")
    damage_pixels(folder / "x3_y4.png")
    note = (
        "1 of 80 images could not be read when the run reached it (index 43; x3_y4.png: cannot read this image (its "
        "image data is damaged: the header reads, the pixels do not)). Read as a blank pattern, it is unknown"
    )
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(map_model), "--input", str(folder), "--out", str(out)]) == 0
    rows = _csv_rows(out)
    assert len(rows) == 80 and rows[43]["prediction"] == "unknown" and rows[43]["path"] == "x3_y4.png"
    assert note in caplog.text
    ang = tmp_path / "map.ang"
    assert main(["phasemap", "--model", str(map_model), "--scan", str(folder), "--out", str(ang)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["nav_shape"] == [8, 10] and summary["notes"][-1] == note
    points = [line.split() for line in ang.read_text().splitlines() if not line.startswith("#")]
    assert len(points) == 80 and points[43][5:8] == ["0.00000", "-1.00000", "0"]  # IQ 0, CI -1, not indexed


def test_a_model_surely_weak_on_its_own_tests_is_named_with_its_readings_not_its_scores(
    map_model, map_scan_file, tmp_path, capsys, caplog
):
    """``predict`` and ``phasemap`` of a model that read 5 of its 24 test patterns right say so, with its most frequent
    mistake; ``evaluate`` does not (its scores are its accuracy there); right enough, nothing is said."""
    model = with_test_score(map_model, tmp_path / "weak", WEAK_TEST)
    note = "this model read 21% of its 24 test patterns right (most often Im-3m read Fm-3m: 12 of 12): expect many"
    assert (
        main(["predict", "--model", str(model), "--input", str(map_scan_file), "--out", str(tmp_path / "p.csv")]) == 0
    )
    assert note in caplog.text
    mapping = ["phasemap", "--model", str(model), "--scan", str(map_scan_file), "--out", str(tmp_path / "m.csv")]
    assert main(mapping) == 0
    assert any(n.startswith(note) for n in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["notes"])
    caplog.clear()
    assert main(["evaluate", "--model", str(model), "--data", str(map_scan_file)]) == 0
    assert "test patterns right" not in caplog.text + capsys.readouterr().out
    assert main(["models", "show", str(model), "--json"]) == 0  # and where it is looked at
    assert json.loads(capsys.readouterr().out)["Tested"] == "21% of its 24 test patterns right"
    model = with_test_score(map_model, tmp_path / "strong", WEAK_TEST | {"accuracy": 23 / 24})
    assert main([*mapping[:2], str(model), *mapping[3:]]) == 0
    assert not any("test patterns right" in n for n in json.loads(capsys.readouterr().out.splitlines()[-1])["notes"])


def test_a_folder_of_the_models_name_where_the_command_runs_hides_it_only_when_it_is_a_model(
    map_model, map_scan_file, tmp_path, capsys, monkeypatch
):
    """Found on review: ``--model duplex`` run beside a folder ``duplex`` of patterns said "no model.json here: not a
    saved model", with the store's model of that name one lookup away. A model folder there still comes first."""
    import shutil

    monkeypatch.setenv("EBSD_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(map_model, tmp_path / "store" / "duplex")
    (tmp_path / "duplex").mkdir()
    (tmp_path / "duplex" / "readme.txt").write_text("patterns of the duplex sample")
    mapping = ["phasemap", "--model", "duplex", "--scan", str(map_scan_file), "--out", str(tmp_path / "m.csv")]
    assert main(mapping) == 0
    capsys.readouterr()
    assert main(["models", "show", "duplex", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["Name"] == "duplex"
    assert main(["models", "show", "elsewhere", "--json"]) == 2  # nothing of that name anywhere: the store's words
    capsys.readouterr()
    shutil.rmtree(tmp_path / "store" / "duplex")
    assert main(mapping) == 2  # no model in the store either: the folder named is the one said
    assert "duplex: no model.json here: not a saved model" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "duplex")
    shutil.copytree(map_model, tmp_path / "duplex")
    (tmp_path / "store" / "duplex").mkdir()  # a store's folder of that name: the model here comes first
    assert main(mapping) == 0


def test_evaluate_names_the_classes_the_model_does_not_know(map_model, tiny_dataset, capsys):
    assert main(["evaluate", "--model", str(map_model), "--data", str(tiny_dataset)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tiny_dataset}: holds patterns of Pm-3m (221), Pm-3n (223), Fd-3m (227), Ia-3d (230), which the "
        "model does not know (it knows Fm-3m (225), Im-3m (229)): score it on data of its classes"
    )


def test_train_on_every_pattern_warns_that_nothing_is_left_to_test(tiny_dataset, tmp_path, capsys, caplog):
    seen = read_dataset(tiny_dataset)
    shots = int(np.bincount(seen.labels[seen.split != "holdout"]).min()) - 1  # and one each to validate on
    args = ["--data", str(tiny_dataset), "--shots", str(shots), "--epochs", "1", "--input-size", "32", "--views", "1"]
    assert main(["train", *args, "--batch-size", "8", "--out", str(tmp_path / "m")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_accuracy"] is None
    assert f"{tiny_dataset}: no pattern was left to test on" in caplog.text


def test_a_model_saved_outside_the_dashboards_store_is_said_so(tiny_dataset, tmp_path, capsys, caplog, monkeypatch):
    """Found on review: ``--out models/NAME`` run from another folder than the project's, or beside a lab's
    EBSD_MODEL_STORE, saved the model where no page of the dashboard looks, without a word."""
    store = tmp_path / "lab-store"
    monkeypatch.setenv("EBSD_MODEL_STORE", str(store))
    monkeypatch.chdir(tmp_path)
    args = ["train", "--data", str(tiny_dataset), "--shots", "2", "--epochs", "1", "--input-size", "32", "--views", "1"]
    assert main([*args, "--out", "models/mine"]) == 0
    assert (tmp_path / "models" / "mine" / "model.json").is_file()
    assert (
        f"models/mine: saved outside the model store whose models the dashboard offers, {store} (EBSD_MODEL_STORE): "
        "to see it there, save it with --out mine (a bare name goes into the store) or add it with python -m "
        "ebsd_core import-model models/mine"
    ) in caplog.text
    caplog.clear()
    assert main([*args, "--out", "mine"]) == 0
    assert (store / "mine" / "model.json").is_file() and "outside the model store" not in caplog.text
    assert main([*args, "--out", str(store / "theirs")]) == 0  # the store's own path
    assert "outside the model store" not in caplog.text
    capsys.readouterr()


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


@pytest.mark.parametrize(
    "args, message",
    [
        (["simulate", "--per-class", "0"], "patterns per class must be a whole number from 1 to 100000, not '0'"),
        (["simulate", "--per-class", "2", "--size", "8"], "pattern size must be a whole number from 16 to 1024"),
        (["simulate", "--per-class", "2", "--seed", "-1"], "seed must be a whole number from 0 to 4294967295"),
        (["train", "--data", "d.h5", "--input-size", "8"], "input size must be a whole number from 16 to 1024"),
        (["train", "--data", "d.h5", "--rotation", "-5"], "rotation must be a number from 0 to 180, not '-5'"),
        (["prior", "--exclude", "ni", "--epochs", "0"], "epochs must be a whole number from 1 to 10000, not '0'"),
        (["predict", "--model", "m", "--input", "x.png", "--batch-size", "0"], "batch size must be a whole number"),
        (["phasemap", "--model", "m", "--scan", "s.h5", "--workers", "0"], "workers must be a whole number from 1"),
        (["simulate-map", "--phases", "ni,ni3al", "--step", "-1"], "step must be a number from 0.0001 to 10000"),
        (["simulate-map", "--phases", "ni,ni3al", "--grain-size", "0"], "grain size must be a number from 1 to"),
    ],
)
def test_bad_numbers_are_refused_naming_the_option(tmp_path, capsys, args, message):
    """Found on review: a negative seed ended in numpy's traceback, --workers 0 waited forever for a dask worker,
    a negative scan step was written into the exported map."""
    out = tmp_path / "out.h5"
    with pytest.raises(SystemExit):
        main([*args, "--out", str(out)])
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_fewshot_curve_refuses_negative_seeds(tiny_dataset, tmp_path, capsys):
    assert main(["fewshot-curve", "--data", str(tiny_dataset), "--seeds", "0,-1", "--out", str(tmp_path)]) == 2
    assert "error: --seeds: '0,-1' holds a number below 0" in capsys.readouterr().err
    binned = ["--data", str(tiny_dataset), "--shots", "2", "--also-binning", "2,4", "--out", str(tmp_path)]  # 32 px: 8
    assert main(["fewshot-curve", *binned]) == 2
    assert "tiny.h5: --also-binning 4 leaves 8 px of its 32 px patterns; bin them at most 2x" in capsys.readouterr().err


def test_scratch_starts_from_random_weights_whatever_weights_says(tiny_dataset, tmp_path, capsys):
    """Found on review: fewshot-curve --weights PRIOR started its scratch runs from the prior too (and rehearsed),
    so the comparison compared the prior with itself; train --scratch --weights did the same silently. A frozen
    warm-up of a random backbone only trains the head on random features."""
    from ebsd_core.cli import _train_config, build_parser

    prior = str(tmp_path / "prior")
    args = build_parser().parse_args(
        ["fewshot-curve", "--data", str(tiny_dataset), "--weights", prior, "--rehearse", "5", "--frozen-epochs", "2"]
        + ["--out", str(tmp_path)]
    )
    transfer, scratch = (_train_config(args, 2, pretrained, 0, (32, 32)) for pretrained in (True, False))
    assert (transfer.weights_file, transfer.rehearsal_per_class, transfer.frozen_warmup_epochs) == (prior, 5, 2)
    assert (scratch.pretrained, scratch.weights_file, scratch.rehearsal_per_class) == (False, None, 0)
    assert scratch.frozen_warmup_epochs == 0

    train = ["train", "--data", str(tiny_dataset), "--shots", "2", "--scratch", "--out", str(tmp_path / "m")]
    assert main([*train, "--weights", prior]) == 2
    assert "error: --scratch starts from random weights and cannot take --weights" in capsys.readouterr().err
    assert main([*train, "--rehearse", "5"]) == 2
    assert "cannot take --rehearse: leave out one of them" in capsys.readouterr().err
    assert main([*train, "--frozen-epochs", "1"]) == 2
    assert "cannot take --frozen-epochs" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_outputs_that_cannot_be_written_are_refused_before_the_work(tiny_dataset, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    train = ["train", "--data", str(tiny_dataset), "--shots", "2", "--epochs", "1", "--out", str(blocker / "m")]
    assert main(train) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {blocker / 'm'}: cannot write in {blocker} ({blocker} is a file)")
    assert "Traceback" not in err
    assert main(["simulate", "--phases", "ni,ni3al", "--per-class", "2", "--out", str(tmp_path)]) == 2
    assert f"error: {tmp_path}: is a folder; give a file name" in capsys.readouterr().err
    # a new folder, named by its trailing slash: a file named "results" was written
    for command, example in (
        (["simulate", "--phases", "ni,ni3al", "--per-class", "2"], "data.h5"),
        (["predict", "--model", "m", "--input", str(tiny_dataset)], "preds.csv"),
        (["phasemap", "--model", "m", "--scan", str(tiny_dataset), "--out", "map.png"], "map.ang"),
        (["models", "export", "m"], "NAME.zip"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--out", f"{tmp_path}/results/"])
        assert exit_info.value.code == 2
        assert (
            f"error: argument --out: '{tmp_path}/results/' names a folder (it ends in '/'): give the file to write, "
            f"such as '{tmp_path}/results/{example}'"
        ) in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_hash_password_without_a_terminal_says_so(monkeypatch, capsys):
    import getpass

    def no_input(prompt=""):
        raise EOFError

    monkeypatch.setattr(getpass, "getpass", no_input)
    assert main(["hash-password"]) == 2
    assert "error: no password was typed" in capsys.readouterr().err


def test_hash_password_from_a_script(monkeypatch, capsys):
    """A lab's deployment script pipes the password in (`echo ... | hash-password` had asked for it "Again")."""
    import io

    from ebsd_core.access import verify_password

    monkeypatch.setattr(sys, "stdin", io.StringIO("lab password 1\nnot read\n"))
    assert main(["hash-password", "--stdin"]) == 0
    stored = capsys.readouterr().out.split('"')[1]
    assert verify_password("lab password 1", stored)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["hash-password", "--stdin"]) == 2
    assert "error: no password on the first line of standard input" in capsys.readouterr().err


def test_backbones_lists_the_registry_and_what_works_offline(capsys):
    assert main(["backbones"]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_name = {line.split()[0]: line for line in lines[:-2]}
    assert set(by_name) == {"efficientnet_lite0", "resnet18", "mobilenetv3_small_100", "convnext_atto", "xception41"}
    assert by_name["efficientnet_lite0"].endswith("[ImageNet weights offline]")  # the package is a requirement
    assert "online only" in by_name["xception41"]
    assert lines[-1].startswith("runs on: ")  # as the sidebar's Compute


def test_backbones_says_why_a_gpu_here_is_left_unused(monkeypatch, capsys):
    from ebsd_core import backbones

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(backbones, "unused_gpu_reason", lambda: "this machine has an NVIDIA GPU, but its driver ...")
    assert main(["backbones"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("runs on: CPU (")
    assert last.endswith(") (GPU unused: this machine has an NVIDIA GPU, but its driver ...)")


def test_phasemap_replaces_an_existing_ang_ctf_or_h5_only_with_force(map_model, map_scan_file, tmp_path, capsys):
    """Found on review: ``phasemap --scan scan.up2 --out scan.ang`` (its --orientations forgotten) replaced OIM's own
    indexing of the scan beside it, unasked. An existing .ang, .ctf or .h5 is now replaced only with --force, named
    before any work; a .csv or .png, derived from the map alone, is replaced as before."""
    hough = scan_indexing(tmp_path / "scan.ang")
    kept = hough.read_bytes()
    (tmp_path / "map.csv").write_text("an older map")
    mapping = ["phasemap", "--model", str(map_model), "--scan", str(map_scan_file), "--out", str(tmp_path / "map.csv")]
    assert main([*mapping, "--out", str(hough)]) == 2
    assert f"error: {hough} already exists, and may be the microscope's own indexing of a scan; choose another" in (
        capsys.readouterr().err
    )
    assert hough.read_bytes() == kept and (tmp_path / "map.csv").read_text() == "an older map"
    assert main(mapping) == 0  # a CSV: replaced
    assert (tmp_path / "map.csv").read_text().startswith("row,col,")
    assert main([*mapping, "--out", str(hough), "--force"]) == 0
    assert hough.read_bytes() != kept
    capsys.readouterr()


def test_no_output_replaces_what_the_command_reads(map_model, map_scan_file, tmp_path, capsys):
    """`predict --input scan.h5 --out scan.h5` replaced 11,700 patterns with a CSV; an image of the folder it reads
    too, and a new image there would be read as a pattern next time. A CSV of predictions may sit among the images
    (no reader takes it), and be written again."""
    import shutil

    scan = tmp_path / "scan.h5"
    shutil.copy(map_scan_file, scan)
    before = scan.read_bytes()
    predict = ["predict", "--model", str(map_model), "--input"]
    assert main([*predict, str(scan), "--out", str(scan)]) == 2
    assert "scan.h5: is the --input file, which this command reads: writing there would replace it" in (
        capsys.readouterr().err
    )
    assert scan.read_bytes() == before
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32), 40 * i + 10, dtype=np.uint8)).save(folder / f"p{i}.png")
    assert main([*predict, str(folder), "--out", str(folder / "p1.png")]) == 2
    assert "p1.png: is in the --input folder" in capsys.readouterr().err
    phasemap = ["phasemap", "--model", str(map_model), "--scan", str(folder), "--nav-shape", "1x3", "--out"]
    assert main([*phasemap, str(folder / "map.png")]) == 2  # a new image there would be a pattern of the next run
    assert "map.png: is in the --scan folder, whose images are read: it would be read as a pattern" in (
        capsys.readouterr().err
    )
    assert not (folder / "map.png").exists()
    for _ in range(2):
        assert main([*predict, str(folder), "--out", str(folder / "preds.csv")]) == 0
        assert json.loads(capsys.readouterr().out)["patterns"] == 3
    dataset = ["dataset", "--scan", f"{scan}=Fm-3m", "--scan", f"{folder}=Im-3m", "--force", "--out", str(scan)]
    assert main(dataset) == 2
    assert "scan.h5: is the --scan file" in capsys.readouterr().err
    in_model = ["predict", "--model", str(map_model), "--input", str(folder), "--out", str(map_model / "model.json")]
    assert main(in_model) == 2
    assert "model.json: is in the --model folder" in capsys.readouterr().err


def test_every_option_with_a_default_says_what_it_is():
    """A user reads the help, not the code: an option that does something when left out says what."""
    import argparse

    from ebsd_core.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    silent = [
        f"{name} {action.option_strings[0]}"
        for name, command in commands.items()
        for action in command._actions
        if action.option_strings
        and action.default is not None
        and action.default is not False  # a flag (0, a number, is a default to name)
        and action.default != argparse.SUPPRESS
        and "default" not in (action.help or "")
    ]
    assert not silent, f"options whose help does not name their default: {silent}"


def test_the_usage_line_names_commands_by_a_word():
    """Found on review: the usage line listed all 18 commands in braces, twice, before the help said what they do."""
    from ebsd_core.cli import build_parser

    assert build_parser().format_usage() == "usage: python -m ebsd_core [-h] [-v] COMMAND ...\n"


def test_the_training_help_states_the_engines_defaults():
    """The help spells the defaults out (the CLI does not import the engine to start): they must stay the same."""
    from ebsd_core.augment import AugmentConfig
    from ebsd_core.cli import TRAINING_DEFAULTS, build_parser
    from ebsd_core.train import TrainConfig

    engine = {"crystal_rotation": AugmentConfig.crystal_rotation, "noise_std": AugmentConfig.noise_std}
    assert {**engine, "views_below": TrainConfig.views_below} == TRAINING_DEFAULTS
    args = build_parser().parse_args(["train", "--data", "d.h5", "--shots", "5", "--out", "m"])
    given = {name: getattr(args, name) for name in ("epochs", "batch_size", "patience", "unknown_threshold")}
    engine = {"epochs": TrainConfig.epochs, "batch_size": TrainConfig.batch_size, "patience": TrainConfig.patience}
    assert given == {**engine, "unknown_threshold": TrainConfig.unknown_threshold}


def test_running_out_of_memory_is_one_line_with_what_to_try(monkeypatch, capsys):
    import torch

    from ebsd_core import cli

    def too_large(args):
        torch.empty(2**50, dtype=torch.uint8)  # a real allocation failure: 1 PiB

    def gpu_full(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.\nSee the documentation.")

    def a_bug(args):
        raise RuntimeError("shape mismatch")

    monkeypatch.setitem(cli.COMMANDS, "models", too_large)
    assert main(["models", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory (") and "smaller batch size" in err and "Traceback" not in err
    monkeypatch.setitem(cli.COMMANDS, "models", gpu_full)
    assert main(["models", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the GPU ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB.)")
    assert "run on the CPU" in err and err.count("\n") == 1
    monkeypatch.setitem(cli.COMMANDS, "models", a_bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # a bug keeps its traceback
        main(["models", "list"])


def test_every_command_line_of_the_readme_parses():
    import re
    import shlex
    from pathlib import Path

    from ebsd_core.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    parser, parsed = build_parser(), []
    for line in re.findall(r"python -m ebsd_core ([^`\n]*)", readme):
        command = re.sub(r"\[[^\]]*\]", "", line.split(" #")[0]).strip()  # comments and [--optional] parts out
        if command in ("", "--help") or "..." in command:  # "train ...": an elision, not a command
            continue
        parser.parse_args(shlex.split(command))  # argparse exits (the test fails) on an option the CLI lacks
        parsed.append(command.split()[0])
    assert {"simulate", "train", "evaluate", "predict", "phasemap", "explain", "fewshot-curve"} <= set(parsed)


def test_output_piped_to_a_reader_that_stops_early_ends_quietly(tmp_path):
    """Found on review: `python -m ebsd_core phases | head -1` printed "error: Broken pipe" once head had its line.
    The reader here closes the pipe before the command writes anything, as head does before a long listing ends."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    done = subprocess.run(
        [sys.executable, "-m", "ebsd_core", "phases"], stdout=write_end, stderr=subprocess.PIPE, text=True
    )
    os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141  # as a tool that SIGPIPE ended: `set -o pipefail` sees it


def test_a_broken_pipe_elsewhere_is_still_an_error(monkeypatch, capsys):
    """Only standard output's reader going away is quiet: a broken connection (a dask worker's) is still said."""

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setitem(__import__("ebsd_core.cli").cli.COMMANDS, "phases", broken)
    assert main(["phases"]) == 2
    assert capsys.readouterr().err == "error: Broken pipe\n"


def test_an_output_that_is_no_file_is_refused_and_left_as_it_was(tiny_dataset, tmp_path, capsys):
    """Found on review: run as root, `predict --out /dev/stdout` renamed its CSV onto /dev/stdout (a link to the
    process's standard output), and `--out /dev/null` would have replaced /dev/null with a file; `--out -` wrote a file
    named '-'. A pipe (and a link to one, as /dev/stdout is) stands in for them here."""
    from ebsd_core.atomic import atomic_path
    from ebsd_core.errors import InputError

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "stdout"
    link.symlink_to(fifo)
    for out in (fifo, link):
        for command in (
            ["predict", "--model", "m", "--input", str(tiny_dataset)],
            ["simulate", "--phases", "ni,ni3al", "--per-class", "2"],
        ):
            assert main([*command, "--out", str(out)]) == 2
            message = f"error: {out}: is not a file (a pipe or device): give the name of a file to write"
            assert capsys.readouterr().err.startswith(message)
        with pytest.raises(InputError, match="is not a file"), atomic_path(out) as tmp:  # the dashboard's writes
            tmp.write_text("a,b\n")
    assert link.is_symlink() and fifo.is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "stdout"]

    with pytest.raises(SystemExit):
        main(["predict", "--model", "m", "--input", str(tiny_dataset), "--out", "-"])
    assert "'-' would be a file named '-' (standard output carries the command's summary)" in capsys.readouterr().err
    assert not os.path.exists("-")


@pytest.mark.parametrize(
    "command",
    [
        ["import-model", "{pipe}"],
        ["fewshot-merge", "--curve", "{pipe}", "--out", "{tmp}/curve"],
        ["info", "{pipe}"],
        ["train", "--data", "{pipe}", "--out", "{tmp}/m"],
        ["phasemap", "--model", "m", "--scan", "{data}", "--orientations", "{pipe}", "--out", "{tmp}/map.ang"],
    ],
    ids=lambda command: command[0],
)
def test_a_named_pipe_to_read_is_refused_not_waited_on(tiny_dataset, tmp_path, capsys, command):
    """Found on review: `import-model` and `fewshot-merge` given a named pipe waited for a writer for good, `info`
    and `predict` too where its name ended in .h5 or .png; no reader here reads a stream."""
    pipe = tmp_path / "patterns.h5"
    os.mkfifo(pipe)
    args = [part.format(pipe=pipe, tmp=tmp_path, data=tiny_dataset) for part in command]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith(f"error: {pipe}: is not a file (a pipe or device)")


def test_sigterm_ends_a_command_as_ctrl_c_does(monkeypatch, tmp_path, capsys):
    """Found on review: a batch system's time limit (SIGTERM) ended a sweep with no word of the runs it kept, and a
    phase map on a local dask cluster with a warning of leaked semaphores. SIGTERM now ends a command through the
    clean-up Ctrl-C runs, with status 143; the process's own handling of SIGTERM is as before once it returns."""
    import signal
    import time

    from ebsd_core import cli

    def sweep_then_terminated(args):
        args.out.mkdir()
        (args.out / "curve.json").write_text("{}")  # a finished run kept
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # not reached: the signal ends the command here
        return 0

    monkeypatch.setitem(cli.COMMANDS, "fewshot-curve", sweep_then_terminated)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["fewshot-curve", "--data", "d.h5", "--out", str(tmp_path / "curve")]) == 143
    err = capsys.readouterr().err
    assert err.startswith("error: terminated (SIGTERM)\n")
    assert f"the finished runs are kept in {tmp_path / 'curve' / 'curve.json'}: add --resume" in err
    assert signal.getsignal(signal.SIGTERM) is before


def test_outputs_are_utf8_whatever_the_locale(map_model, tmp_path):
    """Found on review: in an ASCII locale, `predict` over a folder of sample folders, one named `café`, ended in a
    UnicodeEncodeError traceback when its CSV row was written. Text outputs are UTF-8 now, as the readers expect."""
    for sample in ("café", "plain"):
        (tmp_path / "samples" / sample).mkdir(parents=True)
        Image.fromarray(np.full((16, 16), 90, np.uint8)).save(tmp_path / "samples" / sample / "p1.png")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONUTF8": "0", "LC_ALL": "C"}
    command = [sys.executable, "-m", "ebsd_core", "predict", "--model", str(map_model), "--input", "samples"]
    done = subprocess.run([*command, "--out", "p.csv"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    rows = (tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["café/p1.png", "plain/p1.png"]


def test_digits_of_other_kinds_are_refused_in_words(tiny_dataset, tmp_path, capsys):
    """Found on review: `simulate --classes ²` and `explain --target ²` ended in a traceback ("invalid literal for
    int()"), as "²".isdigit() holds; each is now told apart from a space group or class in words."""
    from ebsd_core.explain_report import class_index
    from ebsd_core.preprocess import PreprocessConfig
    from ebsd_core.store import ModelCard

    assert main(["simulate", "--classes", "²", "--per-class", "2", "--out", str(tmp_path / "x.h5")]) == 2
    assert capsys.readouterr().err.startswith("error: unknown space group '²': use a number 221-230")
    for shots in ("5,٢", "1_000"):  # int() reads both; --shots elsewhere takes ASCII digits alone
        curve = ["fewshot-curve", "--data", str(tiny_dataset), "--shots", shots, "--out", str(tmp_path / "c")]
        assert main(curve) == 2
        assert f"error: --shots: {shots!r} is not a comma-separated list of whole numbers" in capsys.readouterr().err
    card = ModelCard(backbone="efficientnet_lite0", classes=[225, 229], preprocess=PreprocessConfig())
    with pytest.raises(EbsdError, match=r"'²' is not a class of the model; its classes are 0 Fm-3m \(225\)"):
        class_index(card, "²")
    assert class_index(card, "ferrite") == 1  # a material, as a label names a phase
    with pytest.raises(EbsdError, match=r"the model does not know Pm-3m \(221\); its classes are 0 Fm-3m"):
        class_index(card, "ni3al")


def test_a_gpu_left_unused_is_a_warning_of_the_commands_that_run_the_network(
    map_model, map_scan_file, tmp_path, monkeypatch, caplog
):
    from ebsd_core import backbones

    reason = "this machine has an NVIDIA GPU, but its driver (535.154.05) is older than this PyTorch's CUDA 13.0 needs"
    monkeypatch.setattr(backbones, "unused_gpu_reason", lambda: reason)
    predict = ["predict", "--model", str(map_model), "--input", str(map_scan_file), "--out"]
    assert main([*predict, str(tmp_path / "a.csv")]) == 0
    assert f"{reason}; running on the CPU" in caplog.text
    caplog.clear()
    assert main([*predict, str(tmp_path / "b.csv"), "--device", "cpu"]) == 0
    assert reason not in caplog.text  # the CPU was asked for
    assert main(["phases"]) == 0
    assert reason not in caplog.text
