"""Training, the model store and inference on tiny settings (CPU, fixed seeds)."""

import copy
import datetime as _dt
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from unittest.mock import ANY

import numpy as np
import pytest
import torch
from conftest import unreadable, unwritable

from ebsd_core import store
from ebsd_core.cli import main
from ebsd_core.errors import CancelledError, InputError, ModelError, StoreError
from ebsd_core.evaluate import evaluate_predictions, expected_calibration_error
from ebsd_core.fewshot import few_shot_split
from ebsd_core.inference import inference_precision, predict_source
from ebsd_core.io.dataset import read_dataset, write_dataset
from ebsd_core.io.readers import open_patterns
from ebsd_core.preprocess import PreprocessConfig
from ebsd_core.store import (
    META,
    STORE_MARK,
    WEIGHTS,
    check_can_save,
    delete_model,
    delete_problem,
    export_model,
    import_model,
    list_models,
    load_model,
    model_as_seen,
    model_zip,
    read_card,
    save_model,
    store_write_problem,
)
from ebsd_core.train import TrainConfig, train_model

TINY = dict(shots=4, epochs=2, input_size=32, batch_size=8, min_steps_per_epoch=2, val_per_class=2)


@pytest.fixture(scope="module")
def trained(tiny_dataset):
    ds = read_dataset(tiny_dataset)
    return ds, train_model(ds, TrainConfig(**TINY, seed=0))


def test_training_history_and_card(trained):
    ds, result = trained
    assert len(result.history) == 2
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(result.history[0])
    assert result.card.classes == ds.classes and result.card.input_size == 32
    assert result.split.sizes()["train"] == 24


def test_training_is_deterministic(tiny_dataset, trained):
    ds, first = trained
    again = train_model(ds, TrainConfig(**TINY, seed=0))
    assert again.history[-1]["train_loss"] == pytest.approx(first.history[-1]["train_loss"], rel=1e-4)


def test_a_seeded_training_is_the_same_with_an_explanation_beside_it(tiny_dataset, trained):
    """SHAP seeds and draws from torch's global generator, from which the network's new head takes its weights:
    with SHAP running in another thread (another session on the Explain page), 3 of 4 seeded runs differed."""
    import threading

    from ebsd_core.explain import shap_values

    ds, first = trained
    explained = copy.deepcopy(first.model)
    patterns = np.random.default_rng(1).normal(size=(5, 32, 32)).astype(np.float32)
    done = threading.Event()

    def explain_until_done() -> None:
        while not done.is_set():
            shap_values(explained, patterns[:1], patterns[1:], method="gradient", nsamples=4)

    thread = threading.Thread(target=explain_until_done)
    thread.start()
    try:
        again = train_model(ds, TrainConfig(**TINY, seed=0))
    finally:
        done.set()
        thread.join()
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name


def test_cancel_stops_training(tiny_dataset):
    ds = read_dataset(tiny_dataset)
    with pytest.raises(CancelledError):
        train_model(ds, TrainConfig(**TINY), should_stop=lambda: True)


def test_progress_reports_epochs(tiny_dataset):
    seen = []
    train_model(read_dataset(tiny_dataset), TrainConfig(**TINY | {"epochs": 1}), progress=seen.append)
    assert seen[-1].epoch == 1 and seen[-1].val_accuracy is not None and seen[-1].fraction == 1.0


def test_store_roundtrip_refuses_overwrite_and_tampering(trained, tmp_path):
    ds, result = trained
    path = save_model(result.model, result.card, tmp_path / "m1")
    with pytest.raises(StoreError, match="already exists"):
        save_model(result.model, result.card, tmp_path / "m1")
    model, card = load_model(path)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), result.model.eval()(x), atol=1e-5)
    assert card.class_symbols == ds.class_symbols
    meta = json.loads((path / "model.json").read_text())
    assert meta["weights_sha256"] and meta["tensors"]
    weights = path / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    with pytest.raises(ModelError, match="checksum"):
        load_model(path)
    (path / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_card(path)
    assert list_models(tmp_path)[0]["error"]


def test_a_model_is_loaded_with_its_saved_weights_as_its_own_also_with_buffers_no_state_dict_holds(
    trained, tmp_path, monkeypatch
):
    """The weights read become the model's, built on the meta device (not copied into random ones built first: a
    96 MiB model took 369 MiB more at its peak, now 187); an architecture with a buffer that no state dict holds
    (kept out of it, made when the model is built) is built for real."""
    _, result = trained
    path = save_model(result.model, result.card, tmp_path / "m")
    x = torch.randn(3, 1, 32, 32)
    model = load_model(path)[0]
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    with torch.no_grad():
        assert torch.equal(model(x), result.model.eval()(x))
    build = store._build

    def with_a_buffer_of_its_own(card):
        built = build(card)
        built.register_buffer("made_when_built", torch.ones(2), persistent=False)
        return built

    monkeypatch.setattr(store, "_build", with_a_buffer_of_its_own)
    model = load_model(path)[0]
    assert torch.equal(model.made_when_built, torch.ones(2))
    with torch.no_grad():
        assert torch.equal(model(x), result.model.eval()(x))


def test_a_model_json_edited_by_hand_names_the_field(trained, tmp_path):
    """Found by fuzzing (bench/fuzz.py): model.json's faults were told in Python's words, as "invalid model
    description (TypeError: 'NoneType' object is not iterable)" or "(KeyError: 'backbone')"."""
    _, result = trained
    path = save_model(result.model, result.card, tmp_path / "m")
    meta = json.loads((path / "model.json").read_text())
    edits = {
        "'backbone' is missing": {k: v for k, v in meta.items() if k != "backbone"},
        "'classes' holds null, not a list of classes, each with its space_group": meta | {"classes": None},
        "'classes' holds \\[225, 229\\], not a list of classes": meta | {"classes": [225, 229]},
        "'views' holds \"two\", not a whole number": meta | {"views": "two"},
        "'unknown_threshold' holds \\[0.5\\], not a number": meta | {"unknown_threshold": [0.5]},
        "'preprocess' holds \"none\", not a record of names and values": meta | {"preprocess": "none"},
        "'history' holds 3, not a list of epochs' records": meta | {"history": 3},
        "'training' holds \"a{36}\\.\\.\\., not a record": meta | {"training": "a" * 80},  # cut short
    }
    for problem, edited in edits.items():
        (path / "model.json").write_text(json.dumps(edited))
        with pytest.raises(ModelError, match=f"model.json: invalid model description: {problem}"):
            read_card(path)


def test_force_replaces_atomically(trained, tmp_path):
    _, result = trained
    save_model(result.model, result.card, tmp_path / "m2")
    save_model(result.model, result.card, tmp_path / "m2", force=True)
    assert sorted(p.name for p in (tmp_path / "m2").iterdir()) == ["model.json", "weights.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m2.") and p.is_dir()]


def test_a_file_of_the_name_is_never_replaced_by_a_model(trained, tmp_path, tiny_dataset, capsys):
    """Found on review: with --force, a file (not a model) of the name was renamed to a hidden .NAME.*.old and left
    there, and a named pipe there hung the save for good (rmtree opened it to read). Both are refused now, forced or
    not, before any training."""
    _, result = trained
    (tmp_path / "notes").write_text("keep")
    os.mkfifo(tmp_path / "pipe")
    for name in ("notes", "pipe"):
        for force in (False, True):
            with pytest.raises(InputError, match="is a file, not a saved model: save under another name"):
                save_model(result.model, result.card, tmp_path / name, force=force)
            train = [
                "train",
                "--data",
                str(tiny_dataset),
                "--shots",
                "2",
                "--epochs",
                "1",
                "--out",
                str(tmp_path / name),
            ]
            assert main(train + ["--force"] * force) == 2
            assert f"error: {tmp_path / name}: is a file, not a saved model" in capsys.readouterr().err
    assert (tmp_path / "notes").read_text() == "keep" and (tmp_path / "pipe").is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["notes", "pipe"]


def test_a_folder_that_holds_more_than_a_model_is_never_replaced_by_one(
    trained, tmp_path, tiny_dataset, capsys, monkeypatch
):
    """Found on review: ``train --out data --force`` beside a folder ``data`` of patterns saved the model in it and
    erased the patterns (a bare name was taken for a folder where the command ran, and --force replaced any folder).
    A bare name now goes into the store, and --force replaces a saved model's own files only: a folder without a
    model.json, or with other files beside it, is refused before any training; an empty one loses nothing."""
    _, result = trained
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EBSD_MODEL_STORE", str(tmp_path / "store"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "p1.png").write_bytes(b"a pattern")
    train = ["train", "--data", str(tiny_dataset), "--shots", "2", "--epochs", "1", "--input-size", "32", "--force"]
    assert main([*train, "--out", "data"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(tmp_path / "store" / "data")
    assert (tmp_path / "store" / "data" / "model.json").is_file()
    for given in ("./data", str(tmp_path / "data")):
        assert main([*train, "--out", given]) == 2
        assert "data: is a folder that holds no saved model (no model.json), and replacing it would erase" in (
            capsys.readouterr().err
        )
        with pytest.raises(InputError, match="holds no saved model"):
            save_model(result.model, result.card, Path(given), force=True)
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["p1.png"]
    mine = save_model(result.model, result.card, tmp_path / "mine")
    (mine / "notes.txt").write_text("how I trained it")
    with pytest.raises(InputError, match=r"holds files of its own beside the saved model \(notes.txt\)"):
        save_model(result.model, result.card, mine, force=True)
    assert (mine / "notes.txt").read_text() == "how I trained it"
    (mine / "notes.txt").unlink()
    (mine / ".DS_Store").write_bytes(b"a Mac's")  # hidden: no one's work
    save_model(result.model, result.card, mine, force=True)  # a model's own files alone: replaced
    (tmp_path / "empty").mkdir()
    save_model(result.model, result.card, tmp_path / "empty", force=True)
    assert (tmp_path / "empty" / "model.json").is_file()


def test_saved_models_are_readable_by_the_group_as_the_umask_allows(trained, tmp_path):
    _, result = trained
    path = save_model(result.model, result.card, tmp_path / "shared")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o777 & ~umask
    for file in ("weights.safetensors", "model.json"):  # safetensors alone writes 0600
        assert (path / file).stat().st_mode & 0o777 == 0o666 & ~umask


def _zip_of(folder, zip_path, top=True):
    with zipfile.ZipFile(zip_path, "w") as archive:
        for file in folder.iterdir():
            archive.write(file, f"{folder.name}/{file.name}" if top else file.name)
    return zip_path


def test_a_model_given_by_a_file_of_it_its_zip_or_its_store_is_told_what_to_give(trained, tmp_path):
    """Found on review: ``--model models`` (the store), ``--model models/NAME/model.json`` and ``--model NAME.zip``
    (the Results page's download) were each "no model.json here: not a saved model", which said nothing of what to
    give instead."""
    _, result = trained
    store = tmp_path / "store"
    path = save_model(result.model, result.card, store / "mine")
    with pytest.raises(
        ModelError, match=re.escape(f"it holds saved models (mine), each a model of its own: give one of them ({path})")
    ):
        load_model(store)
    for file in ("model.json", "weights.safetensors"):
        with pytest.raises(ModelError, match=re.escape(f"is a file of a saved model: give its folder ({path})")):
            load_model(path / file)
    download = _zip_of(path, tmp_path / "mine.zip")
    with pytest.raises(
        ModelError,
        match=re.escape(
            f"is added to the store first (python -m ebsd_core import-model {download}), then given by its name"
        ),
    ):
        load_model(download)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no model.json here: not a saved model"):
        load_model(tmp_path / "empty")


def test_a_downloaded_model_is_imported_checked_and_never_over_another(trained, tmp_path):
    _, result = trained
    card = copy.deepcopy(result.card)
    card.training["dataset_path"] = "/gpu/box/data.h5"
    path = save_model(result.model, card, tmp_path / "elsewhere" / "gpu-model")
    store = tmp_path / "store"
    download = _zip_of(path, tmp_path / "gpu-model.zip")
    imported = import_model(download, store=store)
    assert imported == store / "gpu-model" and read_card(imported).name == "gpu-model"
    training = read_card(imported).training
    assert "dataset_path" not in training and training["dataset_path_where_trained"] == "/gpu/box/data.h5"
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_model(imported)[0](x), load_model(path)[0](x))
    with pytest.raises(StoreError, match="already exists"):
        import_model(download, store=store)
    assert read_card(import_model(_zip_of(path, tmp_path / "flat.zip", top=False), "renamed", store)).name == "renamed"
    assert read_card(import_model(path, "from-folder", store)).name == "from-folder"
    assert import_model(download, store=store, force=True) == imported
    assert main(["import-model", str(download), "--store", str(store), "--name", "via-cli"]) == 0
    assert sorted(m["name"] for m in list_models(store)) == ["from-folder", "gpu-model", "renamed", "via-cli"]
    assert not [p for p in store.iterdir() if p.name.startswith(".") and p.is_dir()]  # no staging left behind


def test_a_models_zip_holds_no_path_of_the_server(trained, tmp_path):
    """Found on review: a model's zip (any user may download one on Results) carried its training dataset's full path,
    which on a hosted server holds the private session id of whoever trained it: the key to their session."""
    _, result = trained
    card = copy.deepcopy(result.card)
    secret = "0123456789abcdef0123456789abcdef"
    card.training["dataset_path"] = f"/srv/ebsd/sessions/{secret}/uploaded-3.h5"
    path = save_model(result.model, card, tmp_path / "store" / "shared")
    data = model_zip(path)
    assert secret.encode() not in data and b"/srv/ebsd" not in data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        meta = json.loads(archive.read("shared/model.json"))
    assert meta["training"]["dataset_path"] == "uploaded-3.h5"
    download = tmp_path / "shared.zip"
    download.write_bytes(data)
    imported = import_model(download, "elsewhere", tmp_path / "other-store")
    assert read_card(imported).training["dataset_path_where_trained"] == "uploaded-3.h5"
    assert json.loads((path / "model.json").read_text())["training"]["dataset_path"].endswith("uploaded-3.h5")


@pytest.mark.parametrize(
    "damage, message",
    [
        ("not a zip", "not a model: give a zip of model.json and weights.safetensors"),
        ("weights only", "no model.json in the zip"),
        ("tampered", "does not match the checksum"),
        ("other backbone", "weights do not fit backbone"),
    ],
)
def test_a_bad_model_is_refused_naming_the_file(trained, tmp_path, damage, message):
    _, result = trained
    path = save_model(result.model, result.card, tmp_path / "m")
    if damage == "weights only":
        (path / "model.json").unlink()
    elif damage == "tampered":
        weights = path / "weights.safetensors"
        weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    elif damage == "other backbone":
        meta = json.loads((path / "model.json").read_text())
        (path / "model.json").write_text(json.dumps(meta | {"backbone": "resnet18"}))
    upload = tmp_path / "upload.zip"
    if damage == "not a zip":
        upload.write_bytes(b"PK but not really")
    else:
        _zip_of(path, upload)
    store = tmp_path / "store"
    with pytest.raises(ModelError, match=message) as caught:
        import_model(upload, store=store)
    assert str(caught.value).startswith(f"{upload}: ")
    assert list_models(store) == [] and not [p for p in store.iterdir() if p.is_dir()]


def test_a_card_naming_a_huge_network_is_refused_before_it_takes_memory(trained, tmp_path, monkeypatch):
    """A billion-parameter architecture would take 4 GB to build: it is compared with the weights on the meta
    device, and refused there."""
    import ebsd_core.store as store

    _, result = trained
    path = save_model(result.model, result.card, tmp_path / "m")
    meta = json.loads((path / "model.json").read_text())
    (path / "model.json").write_text(json.dumps(meta | {"backbone": "vit_giant_patch14_224"}))
    built_on = []

    def spy(*args, **kwargs):
        model = create_model(*args, **kwargs)
        built_on.append({p.device.type for p in model.parameters()})
        return model

    create_model = store.create_model
    monkeypatch.setattr(store, "create_model", spy)
    with pytest.raises(ModelError, match="weights do not fit backbone vit_giant_patch14_224"):
        load_model(path)
    assert built_on == [{"meta"}]


def test_a_deleted_model_leaves_the_listing_but_stays_on_disk(trained, tmp_path):
    _, result = trained
    save_model(result.model, result.card, tmp_path / "old")
    moved = delete_model("old", tmp_path)
    assert list_models(tmp_path) == [] and moved.parent == tmp_path / ".deleted"
    assert read_card(moved).name == "old"
    with pytest.raises(StoreError, match="old: no such saved model: neither a model's folder nor a name in the store"):
        delete_model("old", tmp_path)  # deleted twice: said as of any other name the store lacks
    save_model(result.model, result.card, tmp_path / "old")  # the name is free again


def test_a_store_the_server_cannot_write_to_is_said_to_be_read_only(tmp_path):
    assert store_write_problem(tmp_path / "store") is None  # made at the first save
    (tmp_path / "a-file").write_text("")
    problem = store_write_problem(tmp_path / "a-file" / "store")
    assert problem.startswith("Models can be used here but not trained, added or deleted: this server cannot write ")
    assert "a-file is a file" in problem and "EBSD_MODEL_STORE" in problem


def test_a_store_linked_to_a_share_not_mounted_is_said_so(tmp_path, capsys):
    """Found with EBSD_MODEL_STORE at a link into a share that was not mounted: the store was said to be empty
    ("no saved models"), and a save was refused for "Permission denied" on the folder above the link (or, for an
    account that may write there, failed when made, after the training)."""
    link = tmp_path / "store"
    link.symlink_to(tmp_path / "mnt" / "share" / "models")
    said = f"cannot write in {link} ({link} is a link to {tmp_path / 'mnt' / 'share' / 'models'}, which does not exist)"
    assert said in store_write_problem(link)
    with pytest.raises(InputError, match=re.escape(said)):
        check_can_save(link / "new")
    assert main(["models", "list", "--store", str(link)]) == 0
    assert capsys.readouterr().err == (
        f"no saved models in {link} (a link to {tmp_path / 'mnt' / 'share' / 'models'}, which does not exist)\n"
    )


def test_a_store_on_a_share_not_mounted_is_not_taken_for_a_new_one(trained, tmp_path, capsys, monkeypatch):
    """Found with EBSD_MODEL_STORE on a lab's share, not mounted after a restart: the store was an empty folder (or
    none), said to hold no models, and the next model saved went to the local disk, where the share would hide it."""
    _, result = trained
    share, store = tmp_path / "share", tmp_path / "mnt" / "models"
    monkeypatch.setenv("EBSD_MODEL_STORE", str(store))
    store.parent.mkdir()
    share.mkdir()
    store.symlink_to(share)  # "mounted"
    save_model(result.model, result.card, store / "ni-pair")
    assert store_write_problem(store) is None
    store.unlink()  # "not mounted": the store is not there
    said = (
        f"The model store {store} does not exist, where a model was last saved on {_dt.date.today()} (1 model there "
        "then). If it is on a share, the share may not be mounted: mount it, as a model saved meanwhile would be "
        f"hidden under it. To start a new store there, create the empty file {store / STORE_MARK}."
    )
    assert store_write_problem(store) == said
    for save in (
        lambda: check_can_save(store / "fe-pair"),
        lambda: save_model(result.model, result.card, store / "fe-pair"),
        lambda: import_model(share / "ni-pair", "fe-pair", store=store),
    ):
        with pytest.raises(InputError, match=re.escape("the model store " + said.removeprefix("The model store "))):
            save()
    assert main(["models", "list", "--store", str(store)]) == 0
    assert capsys.readouterr().err == f"no saved models in {store} (no such folder)\n{said}\n"
    store.mkdir()  # an empty mount point
    assert store_write_problem(store).startswith(f"The model store {store} is empty, where a model was last saved")
    record = tmp_path.joinpath(os.environ["EBSD_FEWSHOT_HOME"], "stores.json")  # the test's working folder
    kept = record.read_text()
    record.write_text(json.dumps({os.path.abspath(store): {"date": "then", "models": "many"}}))  # edited by hand
    assert "(0 models there then)" in store_write_problem(store)  # was: ValueError, on every page
    record.write_text(kept)
    with pytest.raises(InputError, match="is empty, where a model was last saved"):
        save_model(result.model, result.card, store / "fe-pair")
    assert list(store.iterdir()) == []  # nothing was written there
    store.rmdir()
    store.symlink_to(share)  # mounted again
    save_model(result.model, result.card, store / "fe-pair")
    for name in ("ni-pair", "fe-pair"):
        delete_model(name, store)
    assert store_write_problem(store) is None  # emptied on purpose: its mark is there
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("EBSD_MODEL_STORE", str(fresh))
    fresh.mkdir()
    (fresh / STORE_MARK).touch()  # a new store started where one was lost
    save_model(result.model, result.card, fresh / "a")
    shutil.rmtree(fresh)
    fresh.mkdir()
    assert store_write_problem(fresh).startswith(f"The model store {fresh} is empty")
    (fresh / STORE_MARK).touch()
    assert store_write_problem(fresh) is None
    runs = tmp_path / "runs"  # not the store: a script's folder, removed and made again for each sweep
    save_model(result.model, result.card, runs / "m1")
    shutil.rmtree(runs)
    save_model(result.model, result.card, runs / "m1")
    assert not (runs / STORE_MARK).exists()


def test_a_model_this_account_may_not_read_is_listed_as_such_not_a_failure_of_the_store(trained, tmp_path, monkeypatch):
    """Found as a lab's server account, with models saved into the shared store by another account under a umask of
    077: one such folder made every model list fail ("PermissionError: [Errno 13] Permission denied:
    '/tmp/mixstore/private/model.json'"), which ended Home, Results, Phase map and Explain in a traceback."""
    _, result = trained
    for name in ("open", "private", "weights-private"):
        save_model(result.model, result.card, tmp_path / name)
    unreadable(monkeypatch, tmp_path / "private", tmp_path / "weights-private" / WEIGHTS)
    said = "this account may not read it (permission denied): whoever saved it can let others read it"
    rows = {row["name"]: row for row in list_models(tmp_path)}
    assert "error" not in rows["open"] and "error" not in rows["weights-private"]
    assert rows["private"]["error"].startswith(f"{tmp_path / 'private'}: {said}")
    with pytest.raises(ModelError, match=f"weights.safetensors: {re.escape(said)}"):
        load_model(tmp_path / "weights-private")
    with pytest.raises(InputError, match="private: this account may not move it \\(permission denied\\): the account"):
        delete_model("private", tmp_path)  # was "PermissionError: [Errno 13] Permission denied: '.../model.json'"


def test_a_model_folder_named_not_in_utf8_is_listed_as_such_and_loaded(trained, tmp_path):
    """The pages take text alone, so the list says what to do; the command line uses it (safetensors opens UTF-8 paths
    alone, "Path ... is not valid UTF-8": the weights are read by Python)."""
    import shutil

    _, result = trained
    saved = save_model(result.model, result.card, tmp_path / "saved")
    folder = os.fsdecode(os.fsencode(tmp_path / "store") + b"/mod\xe8le")
    try:
        shutil.copytree(saved, folder)  # copied from an old Windows share
    except OSError:
        pytest.skip("this file system takes UTF-8 names alone")
    said = (
        "its name is not UTF-8 text (as names copied from old Windows shares can be): rename it to use it here (convmv "
        "does so); the command line uses it as it is"
    )
    assert list_models(tmp_path / "store") == [{"name": "mod\ufffdle", "path": str(folder), "error": said}]
    model, card = load_model(folder)
    assert card.classes == result.card.classes
    for name, weights in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], weights.cpu()), name


def test_a_deleted_folder_of_another_accounts_is_named_when_deleting(trained, tmp_path, monkeypatch):
    """Found as a lab's server account given the store without its .deleted/ (root's, from before): deleting a model
    of its own was said to need "the account that saved it"."""
    _, result = trained
    for name in ("mine", "theirs"):
        save_model(result.model, result.card, tmp_path / name)
    (tmp_path / ".deleted").mkdir()
    assert delete_problem("mine", tmp_path) is None
    unwritable(monkeypatch, tmp_path / ".deleted")
    monkeypatch.setattr(store, "account_name", lambda: "svc")
    owner = (tmp_path / ".deleted").owner()
    with pytest.raises(InputError, match=re.escape(f"chown -R svc {tmp_path / '.deleted'})")) as refused:
        delete_model("mine", tmp_path)
    assert refused.value.reason == (
        f"this account may not write in {tmp_path / '.deleted'} (account {owner}'s), where deleted models go: whoever "
        f"runs the server can give it that folder (chown -R svc {tmp_path / '.deleted'})"
    )
    assert (tmp_path / "mine" / META).is_file()
    monkeypatch.undo()
    unwritable(monkeypatch, tmp_path / "theirs")
    assert delete_problem("theirs", tmp_path) == (
        f"this account may not move it (account {owner}'s): the account that saved it can, or whoever runs the server"
    )
    assert delete_model("mine", tmp_path).parent == tmp_path / ".deleted"


def test_a_name_lock_of_another_accounts_is_shared_not_a_failure(trained, tmp_path, monkeypatch):
    """Found as a lab's server account in a store another account had saved to: the name's lock file was theirs, and
    importing a model of that name failed with "/tmp/mixstore/.x.lock: Permission denied" (after training, for a
    training job). A lock needs only reading."""
    _, result = trained
    lock = tmp_path / ".x.lock"
    lock.touch()
    unwritable(monkeypatch, lock)
    assert (save_model(result.model, result.card, tmp_path / "x") / META).is_file()
    assert delete_model("x", tmp_path).parent == tmp_path / ".deleted"
    unreadable(monkeypatch, lock)
    with pytest.raises(InputError, match=f"this account may not open {re.escape(str(lock))} \\(account "):
        save_model(result.model, result.card, tmp_path / "x")


def test_replacing_a_model_this_account_may_not_remove_is_refused_before_training(trained, tmp_path, monkeypatch):
    """Found as a lab's server account replacing (--force) a model of root's: it was renamed aside to a hidden
    .NAME.old that this account could not remove, and the next replacement failed, after its training, with
    "/tmp/mixstore/.rootmodel.old: Directory not empty"."""
    _, result = trained
    save_model(result.model, result.card, tmp_path / "mine")
    save_model(result.model, result.card, tmp_path / "mine", force=True)
    save_model(result.model, result.card, tmp_path / "mine", force=True)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["mine"]  # nothing hidden left beside it
    save_model(result.model, result.card, tmp_path / "theirs")
    unwritable(monkeypatch, tmp_path / "theirs")
    said = f"this account may not replace it \\(account {(tmp_path / 'theirs').owner()}'s\\): the account that saved"
    with pytest.raises(InputError, match=said):
        check_can_save(tmp_path / "theirs", force=True)
    with pytest.raises(InputError, match=said):
        save_model(result.model, result.card, tmp_path / "theirs", force=True)
    assert check_can_save(tmp_path / "other", force=True) == tmp_path / "other"


def test_links_to_models_that_cannot_be_reached_are_listed_as_broken(trained, tmp_path, monkeypatch):
    """Found as a lab's server account, with vetted models linked into the store from a folder it may not enter:
    "models list" failed ("/srv/ebsdstore/privlink: Permission denied") and Home, Results, Phase map and Explain
    ended in a traceback; a link into a share that is not mounted had its model vanish from every list unsaid."""
    _, result = trained
    share, models = tmp_path / "share", tmp_path / "models"
    save_model(result.model, result.card, share / "vetted")
    save_model(result.model, result.card, models / "mine")
    (models / "vetted").symlink_to(share / "vetted")
    (models / "gone").symlink_to(tmp_path / "unmounted" / "model")
    (models / "README.md").write_text("the lab's models")
    assert read_card(models / "vetted").name == "vetted"
    unreadable(monkeypatch, share)
    rows = {row["name"]: row for row in list_models(models)}
    assert sorted(rows) == ["gone", "mine", "vetted"] and "error" not in rows["mine"]
    assert rows["vetted"]["error"] == (
        f"{models / 'vetted'}: a link to {share / 'vetted'}, which this account may not reach (permission denied): "
        "whoever keeps it there can let others read it and the folders above it"
    )
    assert rows["gone"]["error"] == (
        f"{models / 'gone'}: a link to {tmp_path / 'unmounted' / 'model'}, which does not exist (a share not "
        "mounted, or a model moved since)"
    )
    for read in (read_card, load_model):
        with pytest.raises(ModelError, match="may not reach"):
            read(models / "vetted")
    assert delete_model("vetted", models).is_symlink() and delete_model("gone", models).is_symlink()
    assert [row["name"] for row in list_models(models)] == ["mine"]


def test_a_model_deleted_or_saved_again_since_is_still_downloaded_as_shown(trained, tmp_path):
    """Found on review: the Results page's zip, made on the click, failed for a model another user had deleted
    meanwhile (Streamlit's "Failed to generate file for download"), and would have held another model saved under
    its name since. Deleted models stay in .deleted/, where the one shown is found by its weights' time."""
    _, result = trained
    shown = save_model(result.model, result.card, tmp_path / "old")
    save_model(result.model, result.card, tmp_path / "old-2")  # a name that begins alike is not taken for it
    modified = (shown / WEIGHTS).stat().st_mtime
    assert model_as_seen("old", modified, tmp_path) == shown
    delete_model("old-2", tmp_path)
    delete_model("old", tmp_path)
    again = save_model(result.model, result.card, tmp_path / "old")
    os.utime(again / WEIGHTS, (modified + 5, modified + 5))
    found = model_as_seen("old", modified, tmp_path)
    assert found.parent == tmp_path / ".deleted" and re.fullmatch(r"old-\d{8}T\d{12}", found.name)
    with zipfile.ZipFile(io.BytesIO(model_zip(found, "old"))) as archive:
        assert sorted(archive.namelist()) == ["old/model.json", "old/weights.safetensors"]
    assert model_as_seen("old", modified + 5, tmp_path) == again
    with pytest.raises(StoreError, match="old as shown is no longer in the store"):
        model_as_seen("old", modified - 100, tmp_path)


def test_the_store_is_listed_exported_and_deleted_from_the_command_line(trained, tmp_path, capsys):
    """Headless, as on the Results page: a model of a GPU workstation leaves as a zip that the lab's server takes."""
    _, result = trained
    store, other = tmp_path / "store", tmp_path / "lab-server"
    save_model(result.model, result.card, store / "gpu-model")
    assert main(["models", "list", "--store", str(store)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("gpu-model\tefficientnet_lite0\ttransfer\taccuracy ") and line.endswith("Ia-3d"), line
    assert main(["models", "--store", str(store)]) == 0 and capsys.readouterr().out.strip() == line  # list: the default
    assert main(["models", "show", "gpu-model", "--store", str(store), "--json"]) == 0  # as Results tells it
    told = json.loads(capsys.readouterr().out)
    assert told == {"Name": "gpu-model", **result.card.how_trained(), "Classes": "Pm-3m Pm-3n Fm-3m Fd-3m Im-3m Ia-3d"}
    assert told["Shots per class"] == str(result.card.training["config"]["shots"])
    assert main(["models", "show", "gpu-model", "--store", str(store)]) == 0
    assert capsys.readouterr().out.startswith("Name: gpu-model\nBackbone: efficientnet_lite0, grey input to its ")
    out = tmp_path / "gpu-model.zip"
    assert main(["models", "export", "gpu-model", "--store", str(store), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["zip"] == str(out)
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["gpu-model/model.json", "gpu-model/weights.safetensors"]
    assert main(["models", "export", "gpu-model", "--store", str(store), "--out", str(out)]) == 2
    assert f"{out} exists" in capsys.readouterr().err
    assert read_card(import_model(out, store=other)).name == "gpu-model"
    # a name mistyped, or in another case, is told the model it may mean (delete said only "is not a saved model")
    for command, typed in (("show", "gpu-modle"), ("export", "GPU-Model"), ("delete", "gpu_model")):
        assert main(["models", command, typed, "--store", str(store)]) == 2
        assert capsys.readouterr().err == (
            f"error: {store / typed}: no such saved model: neither a model's folder nor a name in the store "
            "(python -m ebsd_core models lists them); perhaps gpu-model\n"
        )
    assert main(["models", "delete", "gpu-model", "--store", str(store)]) == 0
    assert main(["models", "list", "--json", "--store", str(store)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == []
    assert main(["models", "delete", "--store", str(store)]) == 2
    assert "give the model's NAME" in capsys.readouterr().err


def test_a_damaged_model_is_not_exported(trained, tmp_path):
    _, result = trained
    path = save_model(result.model, result.card, tmp_path / "m")
    weights = path / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    with pytest.raises(ModelError, match="does not match the checksum"):
        export_model(path, tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()


def test_invalid_model_json_is_refused(trained, tmp_path):
    _, result = trained
    path = save_model(result.model, result.card, tmp_path / "m3")
    meta = json.loads((path / "model.json").read_text())
    meta["classes"] = [{"space_group": 194}]
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="invalid model description: 'classes': space group 194 is not one of the"):
        load_model(path)


def test_a_card_whose_records_are_of_another_shape_is_named_broken(trained, tmp_path):
    """A model.json edited by hand or written by another program (added with import-model): a history, training record
    or metrics of another shape than this tool writes is said to be broken, where the Results page and ``models list``
    broke on it; a value of another kind leaves only its own line out of "How it was trained"."""
    _, result = trained
    path = save_model(result.model, result.card, tmp_path / "odd")
    meta = json.loads((path / "model.json").read_text())
    for change, message in (
        ({"history": [{"loss": 1.0}]}, "history record 1 is not an epoch's record with its epoch number"),
        ({"history": [{"epoch": 1, "val_accuracy": "high"}]}, "history record 1: train_loss, train_accuracy, "),
        ({"training": {**meta["training"], "config": [1]}}, "training config must be a record of names and values"),
        ({"training": {**meta["training"], "materials": 5}}, "training materials must be a list"),
        ({"metrics": {**meta["metrics"], "holdout": "x"}}, "metrics holdout must be a record of names and values"),
    ):
        (path / "model.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(ModelError, match=re.escape(message)):
            read_card(path)
        assert list_models(tmp_path) == [{"name": "odd", "path": str(path), "error": ANY}]
    config = {**meta["training"]["config"], "learning_rate": "fast", "shots": [5]}
    (path / "model.json").write_text(json.dumps({**meta, "training": {**meta["training"], "config": config}}))
    told = read_card(path).how_trained()
    assert "Optimiser" not in told and told["Shots per class"] == "[5]" and told["Seed"] == "0"


def test_views_are_stored_and_checked(trained, tmp_path):
    _, result = trained
    card = copy.deepcopy(result.card)
    card.views, card.views_below = 6, 0.75
    path = save_model(result.model, card, tmp_path / "views")
    assert (load_model(path)[1].views, load_model(path)[1].views_below) == (6, 0.75)
    assert result.card.views_below == TrainConfig.views_below  # a newly trained model's
    meta = json.loads((path / "model.json").read_text())
    del meta["views_below"]  # a model saved before views_below existed: every pattern gets every view
    (path / "model.json").write_text(json.dumps(meta))
    assert load_model(path)[1].views_below is None
    for key, value, message in (("views_below", 1.5, "views_below 1.5 is outside"), ("views", 0, "views 0 is outside")):
        (path / "model.json").write_text(json.dumps({**meta, key: value}))
        with pytest.raises(ModelError, match=message):
            load_model(path)


def test_predict_source_with_unknown(trained, tiny_dataset):
    _, result = trained
    source = open_patterns(tiny_dataset)
    result.card.unknown_threshold = 1.01
    prediction = predict_source(result.model, result.card, source, batch_size=16)
    assert prediction.probabilities.shape == (len(source), 6)
    assert np.allclose(prediction.probabilities.sum(1), 1, atol=1e-4)
    assert set(prediction.labels) == {"unknown"}
    result.card.unknown_threshold = 0.0
    assert "unknown" not in predict_source(result.model, result.card, source).labels


def test_bf16_is_used_only_for_models_that_pass_the_check(trained, tiny_dataset):
    _, result = trained
    check = result.card.training["bf16_check"]
    assert {"patterns", "agreement", "mean_shift", "passed"} <= set(check)
    source = open_patterns(tiny_dataset)
    fp32 = predict_source(result.model, result.card, source, precision="fp32").probabilities
    bf16 = predict_source(result.model, result.card, source, precision="bf16").probabilities
    assert np.allclose(bf16.sum(1), 1, atol=1e-3)
    card = copy.deepcopy(result.card)
    card.training["bf16_check"] = {"passed": False}
    assert np.array_equal(predict_source(result.model, card, source).probabilities, fp32)
    card.training["bf16_check"] = {"passed": True}
    expected = bf16 if inference_precision(torch.device("cpu"), "auto", card) == "bf16" else fp32
    assert np.array_equal(predict_source(result.model, card, source).probabilities, expected)


def test_precision_choice(trained):
    card = copy.deepcopy(trained[1].card)
    card.training["bf16_check"] = {"passed": True}
    assert inference_precision(torch.device("cpu"), "fp32", card) == "fp32"
    assert inference_precision(torch.device("cuda"), "auto", card) == "fp32"  # small input: TF32 is faster
    large = copy.deepcopy(card)
    large.preprocess = PreprocessConfig(size=128)
    assert inference_precision(torch.device("cuda"), "auto", large) == "bf16"
    assert inference_precision(torch.device("mps"), "auto", card) == "fp32"
    assert inference_precision(torch.device("cuda"), "auto", None) == "fp32"  # unchecked model
    large.training["bf16_check"] = {"passed": False}
    assert inference_precision(torch.device("cuda"), "auto", large) == "fp32"
    with pytest.raises(ModelError, match="precision must be one of"):
        inference_precision(torch.device("cpu"), "fp16")


def test_metrics_on_known_predictions():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    metrics = evaluate_predictions(probs, labels, [225, 221], np.array(["ni", "ni3al", "ni3al", "ni3al"]))
    assert metrics["accuracy"] == 0.75
    assert metrics["confusion_matrix"] == [[1, 0], [1, 2]]
    assert metrics["same_lattice_confusion"]["Pm-3m as Fm-3m"] == pytest.approx(1 / 3)
    assert metrics["per_material"]["ni3al"]["accuracy"] == pytest.approx(2 / 3)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def test_cli_train_evaluate_predict(tiny_dataset, tmp_path, capsys, caplog, monkeypatch):
    monkeypatch.setenv("EBSD_MODEL_STORE", str(tmp_path / "store"))
    args = ["--data", str(tiny_dataset), "--shots", "3", "--epochs", "1", "--input-size", "32", "--batch-size", "8"]
    assert main(["train", *args, "--out", "cli-model"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["model"].endswith("cli-model") and 0 <= summary["test_accuracy"] <= 1
    assert main(["train", *args, "--out", "cli-model"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["evaluate", "--model", "cli-model", "--data", str(tiny_dataset), "--precision", "fp32"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    # its training file: the patterns it trained and validated on flattered it, and are left out (named)
    learned = metrics["learned_patterns_left_out"]
    assert learned == 3 * 6 + len(few_shot_split(read_dataset(tiny_dataset), 3, 0).val)
    assert metrics["patterns"] == 96 - learned and len(metrics["confusion_matrix"]) == 6
    assert f"the {learned} patterns it was trained and validated on are left out" in caplog.text
    card = read_card(tmp_path / "store" / "cli-model")
    assert metrics["per_material"].keys() >= {"cu", "w"}  # the held-out materials are scored as the card's are
    test_materials = set(metrics["per_material"]) - {"cu", "w"}
    tested = sum(metrics["per_material"][m]["n"] for m in test_materials)
    assert tested == card.metrics["test"]["patterns"]
    shutil.copy(tiny_dataset, tmp_path / "copy.h5")  # the same content elsewhere: known by its SHA-256
    assert main(["evaluate", "--model", "cli-model", "--data", str(tmp_path / "copy.h5")]) == 0
    assert json.loads(capsys.readouterr().out)["learned_patterns_left_out"] == learned
    assert main(["evaluate", "--model", "cli-model", "--data", str(tiny_dataset), "--split", "holdout"]) == 0
    assert "learned_patterns_left_out" not in json.loads(capsys.readouterr().out)  # never trained on
    unsplit = read_dataset(tiny_dataset)
    unsplit.split[:] = "train"
    write_dataset(unsplit, tmp_path / "unsplit.h5")
    assert main(["evaluate", "--model", "cli-model", "--data", str(tmp_path / "unsplit.h5"), "--split", "holdout"]) == 2
    assert "unsplit.h5: has no 'holdout' patterns (splits ['train']); use --split all" in capsys.readouterr().err
    out = tmp_path / "preds.csv"
    assert (
        main(["predict", "--model", "cli-model", "--input", str(tiny_dataset), "--out", str(out), "--views", "3"]) == 0
    )
    header, first = out.read_text().splitlines()[:2]
    assert header.startswith("path,index,prediction,confidence,p_Pm-3m")
    assert first.split(",")[2] in {"Pm-3m", "Pm-3n", "Fm-3m", "Fd-3m", "Im-3m", "Ia-3d", "unknown"}
    capsys.readouterr()
    assert main(["predict", "--model", "nonexistent", "--input", str(tiny_dataset), "--out", str(out)]) == 2
    told = capsys.readouterr().err
    assert "nonexistent: no such saved model: neither a model's folder nor a name in the store" in told
    with pytest.raises(SystemExit):
        main(["predict", "--model", "cli-model", "--input", str(tiny_dataset), "--out", str(out), "--views", "0"])
    assert "views must be a whole number from 1 to 64" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", "--model", "cli-model", "--input", str(tiny_dataset), "--out", str(out), "--views-below", "2"])
    assert "views-below must be a number from 0.01 to 1, not '2'" in capsys.readouterr().err


def test_cli_train_input_size_follows_the_patterns(tiny_dataset, tmp_path, capsys, monkeypatch):
    """Without --input-size the model keeps every pixel of the dataset's 32 px patterns."""
    monkeypatch.setenv("EBSD_MODEL_STORE", str(tmp_path / "store"))
    args = ["--data", str(tiny_dataset), "--shots", "2", "--epochs", "1", "--batch-size", "8", "--views", "1"]
    options = ["--camera-binning", "2", "--noise", "1.5"]
    assert main(["train", *args, *options, "--out", "auto-size"]) == 0
    card = read_card(tmp_path / "store" / "auto-size")
    assert card.input_size == 32
    assert card.training["augment"]["resolution"] == 2  # the card says which cameras it was trained for
    assert card.training["augment"]["noise_std"] == 1.5
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", *args, "--noise", "-1", "--out", "bad-noise"])
    assert "noise must be a number from 0 to 10, not '-1'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused before training: the store would refuse to load such a model
        main(["train", *args, "--unknown-threshold", "5", "--out", "bad-threshold"])
    assert "unknown threshold must be a number from 0 to 1, not '5'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", *args, "--camera-binning", "0", "--out", "bad-binning"])
    assert "camera binning must be a whole number from 1 to 16, not '0'" in capsys.readouterr().err


def test_the_card_says_where_training_started(tmp_path):
    from ebsd_core.preprocess import PreprocessConfig
    from ebsd_core.store import ModelCard

    def card(pretrained=True, weights=None):
        return ModelCard(
            "efficientnet_lite0",
            [225, 229],
            PreprocessConfig(),
            pretrained=pretrained,
            training={"config": {"weights_file": weights}},
        )

    assert card().initialisation == ("ImageNet", "") and card(pretrained=False).initialisation == ("scratch", "")
    weights = tmp_path / "my weights.safetensors"
    assert card(weights=str(weights)).initialisation == ("weights file", "my weights.safetensors")
    assert card(weights=str(tmp_path / "gone")).initialisation == ("saved model", "gone")  # moved away since
    # the store's listing says so in short (it said "transfer" of a model started from another saved model)
    assert [card().kind, card(pretrained=False).kind] == ["transfer", "scratch"]
    assert card(weights=str(weights)).kind == "from weights file my weights.safetensors"


def test_the_card_says_how_its_model_was_trained():
    """A card's training in words (Results' "How it was trained"); a card from elsewhere that records none of it says
    only what the card itself holds."""
    from ebsd_core.preprocess import PreprocessConfig
    from ebsd_core.store import ModelCard

    config = {**TrainConfig(shots=5, epochs=30, lr=1e-3).to_dict(), "learning_rate": 1e-3}
    training = {"config": config, "split": {"train": 10, "val": 4, "test": 6, "holdout": 0}, "best_epoch": 7}
    history = [{"epoch": e, "seconds": 2.0 * e, "val_accuracy": 0.5 if e < 4 else 0.96} for e in range(1, 10)]
    card = ModelCard("efficientnet_lite0", [225, 229], PreprocessConfig(), training=training, history=history)
    told = card.how_trained()
    assert told["Shots per class"] == "5" and told["Patterns"] == "10 training, 4 validation, 6 test"
    assert told["Epochs"] == "9 of at most 30 (the best: 7), 18 s" and told["95% validation accuracy"] == "at epoch 4"
    assert told["Optimiser"] == "AdamW, learning rate 0.001, batch 32, frozen epochs 0, patience 8"
    assert told["Augmentation"].startswith("noise up to 0.3 x the pattern's std, crystal rotation up to 30 deg, ")
    assert told["Rehearsal"] == "off" and told["Test-time views"] == "1"
    bare = ModelCard("resnet18", [225, 229], PreprocessConfig(size=96), views=4, views_below=0.8).how_trained()
    assert bare == {
        "Backbone": "resnet18, grey input to its adapted stem",
        "Started from": "ImageNet",
        "Input": "96 px",
        "Test-time views": "4 (where the first is below 80%)",
        "Unknown below": "0.5",
    }


def test_default_learning_rate_follows_where_training_starts():
    from ebsd_core.backbones import DEFAULT_FINETUNE_LR, REGISTRY
    from ebsd_core.prior import PRIOR_LR
    from ebsd_core.train import SCRATCH_LR

    assert TrainConfig().learning_rate == REGISTRY["efficientnet_lite0"].finetune_lr == 3e-3  # measured for Lite0
    assert TrainConfig(backbone="resnet18").learning_rate == DEFAULT_FINETUNE_LR == 1e-3  # not measured: unchanged
    assert TrainConfig(backbone="some_timm_model").learning_rate == DEFAULT_FINETUNE_LR
    assert TrainConfig(weights_file="models/prior").learning_rate == DEFAULT_FINETUNE_LR  # from an EBSD prior
    assert TrainConfig(pretrained=False).learning_rate == SCRATCH_LR == 3e-3
    assert TrainConfig(lr=5e-4).learning_rate == 5e-4
    assert PRIOR_LR == DEFAULT_FINETUNE_LR  # priors stay as they were built and measured
    assert TrainConfig.from_dict(TrainConfig().to_dict()).learning_rate == 3e-3
    queued_before = {**TrainConfig().to_dict(), "learning_rate": 1e-3}  # a dashboard job queued at the old default
    assert TrainConfig.from_dict(queued_before).learning_rate == 1e-3


def test_misclassified_test_patterns_are_the_test_splits_mistakes(tiny_dataset, tmp_path):
    """What the Results page shows under "Misclassified test patterns", recomputed from the card's seed and shots."""
    from ebsd_core.fewshot import few_shot_split
    from ebsd_core.workflows import misclassified_test_patterns, train_evaluate_save

    config = TrainConfig(shots=2, epochs=1, input_size=32, batch_size=8, views=1)
    dataset = read_dataset(tiny_dataset)
    summary = train_evaluate_save(dataset, config, tmp_path / "m", dataset_path=tiny_dataset)
    model, card = load_model(summary["model"])
    patterns, labels, probabilities, materials, indices = misclassified_test_patterns(model, card, limit=50)
    assert len(patterns) == len(labels) == len(probabilities) == len(materials) == len(indices) > 0  # many mistakes
    assert (probabilities.argmax(1) != labels).all()
    test = np.sort(few_shot_split(dataset, 2, config.seed, config.val_per_class).test)
    assert len(labels) <= 50 and set(indices) <= set(test)
    assert (patterns == dataset.patterns[indices]).all() and (labels == dataset.labels[indices]).all()  # Explain's
    card.training["dataset_path"] = str(tmp_path / "gone.h5")
    assert misclassified_test_patterns(model, card) is None
    changed = dataset.subset(np.flatnonzero(dataset.labels < 2))  # the file now holds two of the six classes
    changed.classes = [221, 223]
    write_dataset(changed, tmp_path / "changed.h5")
    card.training["dataset_path"] = str(tmp_path / "changed.h5")
    with pytest.raises(InputError, match=r"classes \(Pm-3m, Pm-3n\) differ from the model's \(Pm-3m, Pm-3n, Fm-3m"):
        misclassified_test_patterns(model, card)


def test_training_autocasts_to_bf16_only_on_a_gpu_from_128_px():
    from ebsd_core.inference import autocast_context

    def autocast_dtype(device: str, size: int):
        with autocast_context(torch.device(device), size):
            return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None

    assert autocast_dtype("cpu", 224) is None
    if torch.cuda.is_available():
        assert autocast_dtype("cuda", 64) is None
        assert autocast_dtype("cuda", 128) == torch.bfloat16


def test_evaluate_and_predict_run_on_the_device_asked_for(map_model, map_scan_file, tmp_path, capsys, monkeypatch):
    """They loaded every model on the CPU, a GPU machine's too, where predict then ran at the CPU's speed."""
    from ebsd_core import store
    from ebsd_core.backbones import select_device

    devices, load = [], store.load_model
    monkeypatch.setattr(store, "load_model", lambda path, device: devices.append(str(device)) or load(path, device))
    model, scan = str(map_model), str(map_scan_file)
    assert main(["evaluate", "--model", model, "--data", scan, "--split", "all"]) == 0
    predict = ["predict", "--model", model, "--input", scan, "--out"]
    assert main([*predict, str(tmp_path / "auto.csv")]) == 0
    assert main([*predict, str(tmp_path / "cpu.csv"), "--device", "cpu"]) == 0
    assert devices == [str(select_device("auto"))] * 2 + ["cpu"]
    if not torch.cuda.is_available():
        capsys.readouterr()
        assert main(["evaluate", "--model", model, "--data", scan, "--device", "cuda"]) == 2
        assert "no CUDA GPU is available here" in capsys.readouterr().err
