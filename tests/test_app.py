"""Dashboard tests with Streamlit's AppTest: every page renders, the demo runs end to end, bad input is explained."""

import base64
import contextlib
import io
import json
import logging
import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    KIKUCHIPY_DATA,
    WEAK_TEST,
    as_hexagonal_grid,
    damage_pixels,
    not_utf8_folder,
    scan_as_images,
    scan_indexing,
    unreadable,
    unwritable,
    with_test_score,
)
from PIL import Image
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = [
    "pages/home.py",
    "pages/data.py",
    "pages/train.py",
    "pages/results.py",
    "pages/phasemap.py",
    "pages/explain.py",
]


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSD_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path / "home"))
    from pages.common import job_manager

    job_manager.clear()
    return AppTest.from_file(APP, default_timeout=120)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(app, page):
    app.run()
    app.switch_page(page).run()
    assert not app.exception
    assert not app.error


def test_every_page_renders_beside_a_leftover_it_cannot_remove(app, tmp_path, monkeypatch):
    """Found as a lab's server account: a leftover of a killed save in a model store it could only read ended every
    page in a traceback (the hourly clean-up failed on it, and was tried again at every click)."""
    from pages.common import housekeeping

    leftover = tmp_path / "store" / ".data.h5.abc123.part"
    leftover.parent.mkdir()
    leftover.write_bytes(b"half")
    os.utime(leftover, (time.time() - 7200,) * 2)
    unwritable(monkeypatch, tmp_path / "store")
    housekeeping.clear()
    for page in PAGES:
        app.switch_page(page).run()
        assert not app.exception, page
    assert leftover.exists()


def test_a_working_folder_the_server_cannot_write_to_is_one_line_on_every_page(app, tmp_path, monkeypatch):
    """Found with EBSD_FEWSHOT_HOME at a folder of root's, as another account: every page ended in a traceback
    ("PermissionError: [Errno 13] Permission denied: '/tmp/rohome/jobs'")."""
    (tmp_path / "a-file").write_text("")  # a folder that cannot be made, for root too
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path / "a-file" / "home"))
    assert errors_on_every_page(app) == [
        f"This server cannot write in {tmp_path / 'a-file' / 'home'} ({tmp_path / 'a-file'} is a file), its "
        "working folder for sessions, uploads and jobs. Whoever runs it can give it write access there, or set "
        "EBSD_FEWSHOT_HOME to a folder it can write to."
    ]


def errors_on_every_page(app) -> list[str]:
    """The errors every page shows alike, each page shown without an exception."""
    shown = []
    for page in PAGES:
        app.switch_page(page).run()
        assert not app.exception, page
        shown.append([e.value for e in app.error])
    assert all(errors == shown[0] for errors in shown), shown
    return shown[0]


@pytest.mark.parametrize(
    "variable, role", [("EBSD_FEWSHOT_HOME", "working folder"), ("EBSD_MODEL_STORE", "model store")]
)
def test_a_working_folder_or_store_named_not_in_utf8_is_one_line_on_every_page(
    app, tmp_path, monkeypatch, variable, role
):
    """Found on review: with the working folder or the model store under a folder copied from an old Windows share
    (Latin-1, "caf\xe9"), every page ended in "surrogates not allowed" (a cache key held its path); the command line
    works there."""
    from conftest import not_utf8_folder

    monkeypatch.setenv(variable, str(not_utf8_folder(tmp_path) / "folder"))
    assert errors_on_every_page(app) == [
        f"The {role} {tmp_path}/caf\ufffd/folder ({variable}) has a path that is not UTF-8 text (as names copied "
        "from old Windows shares can be), which the pages cannot show: whoever runs the server can rename it "
        f"(convmv does so) or set {variable} to another folder. The command line works there as it is."
    ]


def test_a_working_folder_with_another_accounts_jobs_folder_is_one_line_on_every_page(app, monkeypatch):
    """Found moving a server from root to a service account given the working folder but not what is in it: every
    page ended in "PermissionError: [Errno 13] Permission denied: '/tmp/mixhome/jobs/.server.lock'"."""
    from ebsd_core.paths import fewshot_home

    (fewshot_home() / "jobs").mkdir(parents=True)
    unwritable(monkeypatch, fewshot_home() / "jobs")
    for page in PAGES:
        app.switch_page(page).run()
        assert not app.exception, page
        assert [e.value for e in app.error if f"cannot write in {fewshot_home() / 'jobs'} (" in e.value], page
        assert "chown -R" in app.error[0].value


def test_a_second_server_on_one_working_folder_says_so_on_every_page(app):
    """Found by starting the dashboard twice with one working folder: the second failed the first's running jobs."""
    import subprocess
    import sys

    from ebsd_core.paths import fewshot_home

    jobs = fewshot_home() / "jobs"
    jobs.mkdir(parents=True)
    holds = f"import sys; sys.path.insert(0, {str(Path(APP).parent)!r}); from ebsd_core.jobs import JobManager; " + (
        f"JobManager(__import__('pathlib').Path({str(jobs)!r})); print('held', flush=True); sys.stdin.read()"
    )
    first = subprocess.Popen([sys.executable, "-c", holds], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "held\n"
        for page in ("pages/home.py", "pages/results.py"):
            app.switch_page(page).run()
            assert not app.exception
            assert [e.value for e in app.error] == [
                f"another dashboard server (process {first.pid} on {__import__('socket').gethostname()}) keeps its "
                f"sessions and jobs in {fewshot_home()}: stop it, or give this one a working folder of its own "
                "(EBSD_FEWSHOT_HOME)"
            ]
    finally:
        first.communicate("", timeout=60)
    app.switch_page("pages/home.py").run()  # the other server has stopped: this one takes the folder
    assert not app.error and any(b.label == "Run the demo" for b in app.button)


def skipped_on_every_page(app) -> list[str]:
    """Every page shown without an exception with a store of "mine" and models it cannot use: what Results says of
    them ("Skipped NAME: why")."""
    for page in PAGES:
        app.switch_page(page).run()
        assert not app.exception, page
    app.switch_page("pages/results.py").run()
    assert app.selectbox[0].options == ["mine"]
    return [w.value for w in app.warning if w.value.startswith("Skipped ")]


def test_a_model_of_another_account_the_server_may_not_read_is_skipped_on_every_page(
    app, tmp_path, map_model, monkeypatch
):
    """Found as a lab's server account: a model saved by another account under a umask of 077 ended Home, Results,
    Phase map and Explain in a traceback."""
    import shutil

    for name in ("mine", "theirs"):
        shutil.copytree(map_model, tmp_path / "store" / name)
    unreadable(monkeypatch, tmp_path / "store" / "theirs")
    assert skipped_on_every_page(app) == [
        f"Skipped theirs: {tmp_path / 'store' / 'theirs'}: this account may not read it (permission denied): whoever "
        "saved it can let others read it (chmod -R a+rX on its folder)"
    ]


def test_a_model_folder_named_not_in_utf8_is_skipped_on_every_page(app, tmp_path, map_model):
    """Found on review: a model folder copied into the store from an old Windows share, its name in Latin-1
    ("mod\xe8le"), ended Results, Phase map and Explain in "surrogates not allowed"."""
    import shutil

    shutil.copytree(map_model, tmp_path / "store" / "mine")
    try:
        shutil.copytree(map_model, os.fsdecode(os.fsencode(tmp_path / "store") + b"/mod\xe8le"))
    except OSError:
        pytest.skip("this file system takes UTF-8 names alone")
    assert skipped_on_every_page(app) == [
        "Skipped mod\ufffdle: its name is not UTF-8 text (as names copied from old Windows shares can be): rename it "
        "to use it here (convmv does so); the command line uses it as it is"
    ]


def test_links_to_models_the_server_cannot_reach_are_skipped_on_every_page(app, tmp_path, map_model, monkeypatch):
    """Found as a lab's server account: a link in the store to a model in a folder it may not enter ended Home,
    Results, Phase map and Explain in "PermissionError: [Errno 13] Permission denied: '/srv/ebsdstore/privlink'"."""
    import shutil

    shutil.copytree(map_model, tmp_path / "store" / "mine")
    shutil.copytree(map_model, tmp_path / "share" / "vetted")
    (tmp_path / "store" / "vetted").symlink_to(tmp_path / "share" / "vetted")
    (tmp_path / "store" / "gone").symlink_to(tmp_path / "unmounted")
    unreadable(monkeypatch, tmp_path / "share")
    assert sorted(warning.split(":")[0] for warning in skipped_on_every_page(app)) == [
        "Skipped gone",
        "Skipped vetted",
    ]


def assert_no_training_on_home_and_train(app, said: str, dataset) -> None:
    """Home and Train say ``said`` (why no model can be saved), and their buttons that would train one are off."""
    app.run()
    assert [w.value for w in app.warning if w.value.startswith(said)]
    assert next(b for b in app.button if b.label == "Run the demo").disabled
    app.session_state["dataset_path"] = str(dataset)
    app.switch_page("pages/train.py").run()
    assert [w.value for w in app.warning if w.value.startswith(said)]
    assert all(b.disabled for b in app.get("form_submit_button"))  # training and the prior


def test_a_store_the_server_cannot_write_to_is_said_so_before_any_training(
    app, tmp_path, tiny_dataset, map_model, monkeypatch
):
    """Found as a lab's server account: the Home demo simulated and trained for its minutes, then failed at the save
    ("cannot write in /work/main/models (Permission denied)"). A store of vetted models may be read-only on purpose:
    its models are used, and what would save, add or delete one says why it cannot."""
    import shutil

    shutil.copytree(map_model, tmp_path / "store" / "vetted")
    unwritable(monkeypatch, tmp_path / "store")
    said = "Models can be used here but not trained, added or deleted: this server cannot write in"
    assert_no_training_on_home_and_train(app, said, tiny_dataset)
    app.switch_page("pages/results.py").run()
    assert not app.exception and app.selectbox[0].value == "vetted"  # its models are shown
    assert len([c.value for c in app.caption if c.value.startswith(said)]) == 2  # adding one, deleting it
    assert "model_zip" not in [u.key for u in app.get("file_uploader")]
    assert not [b for b in app.button if b.label == "Delete"]


def test_a_store_on_a_share_not_mounted_is_said_so_before_any_training(app, tmp_path, tiny_dataset, map_model):
    """Found with the store on a lab's share, not mounted after a restart: every page said "No saved models yet",
    and the demo trained a model onto the local disk, where the share would hide it once mounted."""
    import shutil

    from ebsd_core.store import import_model

    import_model(map_model, "duplex", store=tmp_path / "store")  # a model saved there: the store is remembered
    shutil.move(tmp_path / "store", tmp_path / "share")  # the share is not mounted
    (tmp_path / "store").mkdir()  # its empty mount point
    said = f"The model store {tmp_path / 'store'} is empty, where a model was last saved on"
    assert_no_training_on_home_and_train(app, said, tiny_dataset)
    (tmp_path / "store").rmdir()
    shutil.move(tmp_path / "share", tmp_path / "store")  # mounted again
    app.switch_page("pages/results.py").run()
    assert not app.exception and app.selectbox[0].value == "duplex"


def test_a_demo_map_that_would_train_in_a_read_only_store_is_off_before_the_click(
    app, tmp_path, map_model, monkeypatch
):
    """Left from the session that made the store read-only: the demo map's job was refused after the click, when it
    came to train its model. Now the page knows first; a pair the store's model knows still maps."""
    import shutil

    shutil.copytree(map_model, tmp_path / "store" / "vetted")  # austenite and ferrite
    unwritable(monkeypatch, tmp_path / "store")
    app.switch_page("pages/phasemap.py").run()
    run = next(b for b in app.button if b.label == "Run the demo map")
    assert run.disabled  # Ni and Ni3Al, the first pair: no model knows them
    assert [w.value for w in app.warning if w.value.startswith("A demo map of Ni and Ni")]
    next(s for s in app.selectbox if s.key == "demo_pair").set_value("Austenite + ferrite (duplex steel)").run()
    assert not next(b for b in app.button if b.label == "Run the demo map").disabled
    assert not [w.value for w in app.warning if w.value.startswith("A demo map of")]
    app.radio(key="demo_map_with").set_value("pair").run()  # the model for the pair, which this store cannot train
    assert next(b for b in app.button if b.label == "Run the demo map").disabled
    assert [w.value for w in app.warning if "no earlier demo map has trained one (the model chosen above" in w.value]


def test_a_demo_map_maps_with_the_chosen_model_or_with_the_model_for_the_pair(app, tmp_path, map_model, monkeypatch):
    """Found walking the page: a six-class model trained on Train for 6 epochs knew Ni and Ni3Al, so the demo map
    took it and mapped 34 % of the points right, with no way to see the 99.9 % of the pair's own 20-shot model."""
    import shutil

    from ebsd_core import workflows
    from pages.common import job_manager

    shutil.copytree(map_model, tmp_path / "store" / "duplex")  # austenite and ferrite
    tiny = workflows.DemoMapSettings(shots=4, val_per_class=2, pattern_size=32, input_size=32, epochs=1)
    monkeypatch.setattr(workflows, "DEMO_MAP", tiny)
    app.switch_page("pages/phasemap.py").run()
    assert not [r for r in app.radio if r.key == "demo_map_with"]  # Ni and Ni3Al: the model does not know them
    app.selectbox(key="demo_pair").set_value("Austenite + ferrite (duplex steel)").run()
    app.number_input(key="demo_rows").set_value(10).run()
    app.number_input(key="demo_cols").set_value(10).run()
    with_model = app.radio(key="demo_map_with")
    assert with_model.value == "chosen"  # as before: checking one's own model against a known truth is a use
    assert with_model.options == [
        "the chosen model, duplex",
        "a 20-shot model for the pair (trained first, one to three minutes)",
    ]
    with_model.set_value("pair").run()
    next(b for b in app.button if b.label == "Run the demo map").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    assert state.result["model_name"].startswith("demo-map-austenite-ferrite-")
    assert state.result["demo_pair"] == ["austenite", "ferrite"]  # its scan's, for the hint when mapped poorly
    app.switch_page("pages/home.py").run()
    app.switch_page("pages/phasemap.py").run()
    with_model = app.radio(key="demo_map_with")
    assert with_model.value == "pair"  # kept after another page
    assert with_model.options[1] == "a 20-shot model for the pair (trained earlier)"


def test_a_model_this_account_may_not_move_has_no_delete_button(app, tmp_path, map_model, monkeypatch):
    """Found as a lab's server account: a model of root's, from before the server moved to that account, offered a
    Delete button that then failed; now the page says why first."""
    import shutil

    shutil.copytree(map_model, tmp_path / "store" / "roots")
    unwritable(monkeypatch, tmp_path / "store" / "roots")
    app.switch_page("pages/results.py").run()
    assert not app.exception and app.selectbox[0].value == "roots"
    assert [c.value for c in app.caption if c.value.startswith("It cannot be deleted here: this account may not move")]
    assert not [b for b in app.button if b.label == "Delete"]


def test_the_sidebar_says_why_an_nvidia_gpu_is_left_unused(app, tmp_path, monkeypatch):
    """A lab's GPU workstation whose driver was older than PyTorch's CUDA needed said "Compute: CPU" and no more."""
    import streamlit as st
    import torch

    from ebsd_core import backbones

    version = tmp_path / "nvidia-version"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.154.05  Thu Dec 28 15:37:48 UTC 2023\n")
    monkeypatch.setattr(backbones, "NVIDIA_DRIVER_VERSION_FILE", version)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    st.cache_resource.clear()  # the sidebar asks once per server
    try:
        app.run()
        said = [c.value for c in app.sidebar.caption if "GPU unused" in c.value]
        assert said == [
            ":material/warning: GPU unused: this machine has an NVIDIA GPU, but its driver (535.154.05) is older than "
            "this PyTorch's CUDA 13.0 needs (580 or later): a newer driver would let it be used."
        ]
    finally:
        st.cache_resource.clear()  # the next test's server has no such GPU


def test_sidebar_names_the_model_the_page_has_just_chosen(app, map_model, tmp_path):
    import shutil

    shutil.copytree(map_model, tmp_path / "store" / "duplex")
    app.run()
    app.switch_page("pages/results.py").run()
    assert not app.exception
    assert app.selectbox[0].value == "duplex"
    assert "Model: **duplex**" in [c.value for c in app.sidebar.caption]


def test_the_sessions_model_is_kept_over_a_browser_reload(app, map_model, tmp_path):
    """Found on review: after a reload every model picker started on the store's first model (on a lab's shared
    store, someone else's) and the sidebar said "Model: none"."""
    import shutil

    for name in ("another", "mine"):
        shutil.copytree(map_model, tmp_path / "store" / name)
    app.run()
    app.switch_page("pages/results.py").run()
    app.selectbox[0].select("mine").run()
    reloaded = reloaded_app(app.session_state["session_id"])
    assert "Model: **mine**" in [c.value for c in reloaded.sidebar.caption]
    reloaded.switch_page("pages/explain.py").run()
    assert not reloaded.exception
    assert reloaded.selectbox[0].value == "mine"


def test_sidebar_names_a_model_chosen_on_a_page_that_stops_early(app, map_model, tmp_path):
    """Explain stops when the session has nothing to explain: what a page draws after st.stop is dropped, so the
    sidebar kept naming the model chosen before."""
    import shutil

    for name in ("another", "mine"):
        shutil.copytree(map_model, tmp_path / "store" / name)
    app.run()
    app.switch_page("pages/results.py").run()
    app.switch_page("pages/explain.py").run()
    app.selectbox[0].select("mine").run()
    assert not app.exception
    assert "Model: **mine**" in [c.value for c in app.sidebar.caption]


def test_a_deleted_model_is_no_longer_the_sessions(app, map_model, tmp_path):
    """Found on review: after its model was deleted (on Results, or by someone else on a shared server) the sidebar
    still named it, also after a reload, from the session folder's memory of it."""
    import shutil

    for name in ("another", "mine"):
        shutil.copytree(map_model, tmp_path / "store" / name)
    app.run()
    app.switch_page("pages/results.py").run()
    app.selectbox[0].select("mine").run()
    next(c for c in app.checkbox if c.label == "Yes, delete mine").check().run()
    next(b for b in app.button if b.label == "Delete").click().run()
    assert not app.exception
    assert app.selectbox[0].value == "another"  # shown, as the store's first
    app.switch_page("pages/home.py").run()
    assert "Model: **another**" in [c.value for c in app.sidebar.caption]
    reloaded = reloaded_app(app.session_state["session_id"])
    assert "Model: **none**" in [c.value for c in reloaded.sidebar.caption]  # not "mine"
    # and one deleted by someone else: the session chose "another", which then leaves the store
    reloaded.switch_page("pages/results.py").run()
    assert reloaded.selectbox[0].value == "another"
    reloaded.selectbox[0].select("another").run()
    shutil.move(tmp_path / "store" / "another", tmp_path / "elsewhere")
    reloaded.switch_page("pages/home.py").run()
    assert "Model: **none**" in [c.value for c in reloaded.sidebar.caption]


def test_a_model_chosen_after_training_stays_chosen_over_a_browser_reload(app, map_model, tmp_path):
    """The Train page shows the session's last training job again after a reload and applied its model once more,
    over the one chosen since."""
    import shutil

    from pages.common import job_manager

    for name in ("chosen", "trained"):
        shutil.copytree(map_model, tmp_path / "store" / name)
    run = {"model_name": "trained", "model": str(tmp_path / "store" / "trained"), "test_accuracy": 0.9, "seconds": 1}
    app.run()
    mine = app.session_state["session_id"]
    job_manager().wait(job_manager().submit("train", "Training", mine, lambda ctx: {**run, "runs": [run]}))
    app.switch_page("pages/train.py").run()
    assert app.session_state["model_name"] == "trained"
    app.switch_page("pages/results.py").run()
    app.selectbox[0].select("chosen").run()
    reloaded = reloaded_app(mine)
    reloaded.switch_page("pages/train.py").run()
    assert not reloaded.exception
    assert any(s.value == "Finished: the model is in the store." for s in reloaded.success)  # the job is shown
    assert "Model: **chosen**" in [c.value for c in reloaded.sidebar.caption]


def test_a_model_saved_without_test_metrics_says_how_to_score_it(app, map_model, tmp_path):
    """An older sweep model: its card has no metrics, and the Results page says which command scores it."""
    import shutil

    shutil.copytree(map_model, tmp_path / "store" / "old-sweep")
    card_file = tmp_path / "store" / "old-sweep" / "model.json"
    card_file.write_text(json.dumps({**json.loads(card_file.read_text()), "metrics": {}}))
    app.switch_page("pages/results.py").run()
    assert not app.exception and not app.error
    assert any("old-sweep was saved without test metrics" in i.value for i in app.info)
    assert next(m for m in app.metric if m.label == "Unseen orientations").value == "not recorded"


def test_a_model_whose_scores_are_of_another_shape_is_shown_without_them(app, map_model, tmp_path):
    """A card written by another program (added from elsewhere) whose scores this page cannot draw is named broken, with
    what is wrong, where the page stopped with an error."""
    import shutil

    shutil.copytree(map_model, tmp_path / "store" / "odd")
    card_file = tmp_path / "store" / "odd" / "model.json"
    card = json.loads(card_file.read_text())
    card["metrics"]["test"] = {"accuracy": "high", "confusion_matrix": "diagonal", "classes": ["Fm-3m", "Im-3m"]}
    card_file.write_text(json.dumps(card))
    app.switch_page("pages/results.py").run()
    assert not app.exception
    problem = "invalid model description: metrics test: accuracy, ece and patterns must be numbers"
    assert [w.value for w in app.warning] == [f"Skipped odd: {card_file}: {problem}"]
    card["metrics"]["test"]["accuracy"] = 0.5
    card_file.write_text(json.dumps(card))
    app.run()
    assert any("metrics test: confusion_matrix must be rows of numbers" in w.value for w in app.warning)


def test_same_lattice_confusions_are_a_table_of_true_class_and_what_it_was_read_as(app, map_model, tmp_path):
    import shutil

    from ebsd_core.evaluate import evaluate_predictions

    shutil.copytree(map_model, tmp_path / "store" / "pair")
    card_file = tmp_path / "store" / "pair" / "model.json"
    card = json.loads(card_file.read_text())
    labels = np.repeat([0, 1], [5, 4])  # Fm-3m: 1 of 5 read as Pm-3m; Pm-3m: 1 of 4 read as Fm-3m
    predicted = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0])
    materials = np.repeat(["ni", "ni3al", "my_cif"], [5, 3, 1])
    card["metrics"]["test"] = evaluate_predictions(np.eye(2)[predicted], labels, [225, 221], materials)
    card_file.write_text(json.dumps(card))
    app.switch_page("pages/results.py").run()
    assert not app.exception and not app.error
    table = next(d.value for d in app.dataframe if "read as" in d.value.columns)
    assert table.to_dict("records") == [
        {"true class": "Fm-3m", "read as": "Pm-3m", "fraction": "20.0%"},
        {"true class": "Pm-3m", "read as": "Fm-3m", "fraction": "25.0%"},
    ]
    per_material = next(d.value for d in app.dataframe if "material" in d.value.columns)
    assert per_material[["material", "space group", "n"]].to_dict("records") == [  # in the model's class order
        {"material": "Ni", "space group": "Fm-3m", "n": 5},  # named as a microscopist would
        {"material": "my_cif", "space group": "Pm-3m", "n": 1},  # one not in the catalogue: by its key
        {"material": "Ni3Al", "space group": "Pm-3m", "n": 3},
    ]


def test_the_split_of_the_confusion_matrix_is_named_as_its_metric_is(app, map_model, tmp_path):
    """Both splits: a choice named as the metrics above it; the radio offered "test" and "holdout"."""
    import shutil

    from ebsd_core.evaluate import evaluate_predictions

    shutil.copytree(map_model, tmp_path / "store" / "pair")
    card_file = tmp_path / "store" / "pair" / "model.json"
    card = json.loads(card_file.read_text())
    labels, classes, materials = np.array([0, 0, 1, 1]), [225, 229], ["ni", "ni", "ferrite", "ferrite"]
    card["metrics"]["test"] = evaluate_predictions(np.eye(2)[labels], labels, classes, materials)
    card["metrics"]["holdout"] = evaluate_predictions(np.eye(2)[[0, 1, 1, 1]], labels, classes, ["cu"] * 4)
    card_file.write_text(json.dumps(card))
    app.switch_page("pages/results.py").run()
    split = next(r for r in app.radio if r.label == "Split")
    assert split.options == ["Unseen orientations", "Held-out materials"]
    shown = lambda: next(d.value for d in app.dataframe if "material" in d.value.columns)["material"].tolist()  # noqa: E731
    assert shown() == ["Ni", "Ferrite"]
    split.set_value("holdout").run()
    assert shown() == ["Cu"]


def test_a_model_chosen_on_the_phase_map_page_becomes_the_sessions_model(app, map_model, tmp_path):
    import shutil

    for name in ("duplex", "other"):
        shutil.copytree(map_model, tmp_path / "store" / name)
    app.run()
    app.switch_page("pages/phasemap.py").run()
    app.selectbox(key="map_model").select("other").run()
    assert not app.exception
    assert "Model: **other**" in [c.value for c in app.sidebar.caption]
    app.switch_page("pages/explain.py").run()
    assert app.selectbox[0].value == "other"


@pytest.mark.parametrize("page", ["pages/results.py", "pages/explain.py", "pages/train.py"])
def test_sidebar_status_stays_when_a_page_stops_early(app, page):
    app.run()
    app.switch_page(page).run()  # no models and no dataset: these pages say so and stop
    assert not app.exception and app.info
    assert [c.value for c in app.sidebar.caption][1:] == ["Dataset: none yet", "Model: **none**"]


@pytest.mark.cold_server
def test_a_deep_link_to_a_freshly_started_server_runs_through_the_router(app):
    app.switch_page("pages/train.py").run()  # a bookmark, before any session has run app.py
    assert not app.exception
    assert any("No dataset yet" in i.value for i in app.info)  # the page itself
    assert "Dataset: none yet" in [c.value for c in app.sidebar.caption]  # and app.py's sidebar


def test_demo_end_to_end_shows_confusion_matrix(app):
    from pages.common import job_manager

    app.run()
    app.number_input[0].set_value(1)
    app.button[0].click().run()
    job_id = app.session_state["train_job"]
    state = job_manager().wait(job_id, timeout=600)
    assert state.status == "done", state.error
    assert [event["run"] for event in state.events] == ["demo"]  # one epoch: one point of the live curves
    app.switch_page("pages/train.py").run()
    assert not app.exception
    assert any("Finished" in s.value for s in app.success)
    app.switch_page("pages/results.py").run()
    assert not app.exception
    assert app.selectbox[0].value.startswith("demo-")
    charts = app.get("plotly_chart")
    assert any("predicted" in chart.proto.spec for chart in charts)
    assert "Scored on 120 test patterns (each 0.008 of the accuracy)." in [c.value for c in app.caption]


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("scan.h5", b"\x89HDF\r\n\x1a\n truncated", "scan.h5"),
        ("empty.up2", b"", "the file is empty"),
        ("../outside.h5", None, "not allowed"),
    ],
)
def test_bad_server_file_shows_error_not_traceback(app, tmp_path, monkeypatch, name, content, message):
    root = tmp_path / "root"
    root.mkdir()
    if content is not None:
        (root / name).write_bytes(content)
    monkeypatch.setenv("EBSD_DATA_ROOT", str(root))
    app.switch_page("pages/data.py").run()
    app.text_input[0].input(name).run()
    assert not app.exception
    assert any(message in e.value for e in app.error), [e.value for e in app.error]


def test_the_dataset_names_the_materials_of_each_class_and_those_held_out(app, tiny_dataset):
    """Which materials make up each space group, and which are kept for the held-out test, were the CLI's (simulate's
    JSON) alone."""
    from ebsd_core.io.dataset import read_dataset

    app.session_state["dataset_path"], app.session_state["dataset_label"] = str(tiny_dataset), "tiny"
    app.switch_page("pages/data.py").run()
    assert not app.exception
    table = next(d.value for d in app.dataframe if "held out" in d.value.columns)
    dataset = read_dataset(tiny_dataset)
    assert table["patterns"].sum() == len(dataset.labels)
    held = table[table["held out"]]
    assert len(held) >= 1 and held["patterns"].sum() == (dataset.split == "holdout").sum()
    assert list(dict.fromkeys(table["class"])) == dataset.class_symbols  # in space-group order


def test_a_labelled_folder_on_the_server_becomes_the_dataset(app, tmp_path, monkeypatch):
    from ebsd_core.io.dataset import read_dataset

    root = tmp_path / "root"
    rng = np.random.default_rng(0)
    for name in ("Fm-3m_ni", "229_ferrite"):
        folder = root / "labelled" / name
        folder.mkdir(parents=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(folder / f"{index}.png")
    (root / "labelled" / "Fm-3m_ni" / "bad.png").write_bytes(b"\x89PNG truncated")
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(root / "labelled" / "229_ferrite" / "dropped.png")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(root))
    app.switch_page("pages/data.py").run()
    app.text_input[0].input("labelled").run()
    assert any("1 image could not be read and was left out" in w.value for w in app.warning)
    next(b for b in app.button if b.label == "Make a dataset of these labelled patterns").click().run()
    assert not app.exception and not app.error
    assert any(
        w.value.startswith("labelled: 1 blank pattern (229_ferrite/dropped.png) was left out: it holds")
        for w in app.warning
    )
    dataset = read_dataset(app.session_state["dataset_path"])
    assert dataset.classes == [225, 229] and len(dataset.labels) == 6
    assert sorted(set(dataset.material)) == ["229_ferrite", "Fm-3m_ni"]


def test_a_folder_of_samples_on_the_server_lists_them_to_choose_from(app, tmp_path, monkeypatch):
    """A lab's data folder holds a folder per sample: typing it refused it ("give one at a time"), so that a user had
    to know each file's path; it now lists what it holds to choose one."""
    import kikuchipy as kp

    root = tmp_path / "root"
    rng = np.random.default_rng(0)
    for sample in ("ni_ref", "ni3al_ref"):
        (root / "samples" / sample).mkdir(parents=True)
        kp.signals.EBSD(rng.integers(0, 255, (2, 3, 24, 24), dtype=np.uint8)).save(
            str(root / "samples" / sample / "scan.h5")
        )
    (root / "samples" / "sem_images").mkdir()
    (root / "samples" / "elsewhere.h5").symlink_to(tmp_path / "outside.h5")  # out of the root: not offered
    kp.signals.EBSD(rng.integers(0, 255, (1, 2, 24, 24), dtype=np.uint8)).save(str(tmp_path / "outside.h5"))
    Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(root / "samples" / "sem_images" / "0.png")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(root))
    app.switch_page("pages/data.py").run()
    app.text_input[0].input("samples").run()
    assert not app.exception and not app.error
    found = next(s for s in app.selectbox if s.label.startswith("samples holds 3 sources of patterns"))
    assert found.options == ["ni3al_ref/scan.h5", "ni_ref/scan.h5", "sem_images"] and found.value is None
    found.set_value("ni3al_ref/scan.h5").run()
    assert not app.exception and not app.error
    assert any(m.value.startswith("6 patterns of 24x24 px") for m in app.markdown)
    # named by its path under the root: each sample's scan is a scan.h5
    next(s for s in app.selectbox if s.label == "Space group of samples/ni3al_ref/scan.h5").set_value(221).run()
    next(b for b in app.button if b.label == "Add to the scans").click().run()  # named by its path: many a scan.h5
    assert any(m.value == "Scans for a dataset: samples/ni3al_ref/scan.h5 (Pm-3m)" for m in app.markdown)
    monkeypatch.setattr("pages.common.MAX_LISTED_SOURCES", 2)  # a lab's tree of thousands: the first are listed
    app.text_input[0].input("samples/").run()
    found = next(s for s in app.selectbox if s.label.startswith("samples holds 3 sources of patterns"))
    assert found.options == ["ni3al_ref/scan.h5", "ni_ref/scan.h5"]
    assert "The first 2 are listed: type a folder further in to choose among the others." in [
        c.value for c in app.caption
    ]
    app.text_input[0].input("samples/ni_ref").run()  # one sample's folder, with its one scan: nothing to choose
    assert not app.exception and not app.error
    assert "Reading scan.h5 in ni_ref." in [c.value for c in app.caption]
    assert any(s.label == "Space group of samples/ni_ref/scan.h5" for s in app.selectbox)


def test_a_server_folder_that_cannot_be_listed_is_named(app, tmp_path, monkeypatch):
    def refused(folder, within=None):
        raise PermissionError(13, "Permission denied", str(folder / "locked"))

    (tmp_path / "root" / "shared").mkdir(parents=True)
    monkeypatch.setenv("EBSD_DATA_ROOT", str(tmp_path / "root"))
    monkeypatch.setattr("ebsd_core.io.readers.sources_in_folder", refused)
    app.switch_page("pages/data.py").run()
    app.text_input[0].input("shared").run()
    assert not app.exception
    assert [e.value for e in app.error] == [f"{tmp_path / 'root' / 'shared' / 'locked'}: Permission denied"]


def test_a_server_file_whose_name_is_not_utf8_is_listed_and_said_to_be_renamed(
    app, tmp_path, monkeypatch, map_scan_file
):
    """Found on review: a folder named in Latin-1 under the data root ended the Data and Phase map pages in
    "UnicodeEncodeError: ... surrogates not allowed" when listed, and again when chosen."""
    import shutil

    root = tmp_path / "root"
    (root / "ok").mkdir(parents=True)
    shutil.copy(map_scan_file, root / "ok" / "scan.h5")
    shutil.copy(map_scan_file, not_utf8_folder(root) / "scan.h5")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(root))
    app.switch_page("pages/phasemap.py").run()
    app.text_input(key="map_server_path").input(".").run()
    assert not app.exception and not app.error
    found = next(s for s in app.selectbox if s.key == "map_server_path-found")
    assert [found.format_func(option) for option in found.options] == ["caf\ufffd/scan.h5", "ok/scan.h5"]
    found.set_value(found.options[0]).run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "'caf\ufffd/scan.h5': its name is not UTF-8 text (as names copied from old Windows shares can be): rename it "
        "to read it here (convmv does so for a whole tree); the command line reads it as it is"
    ]


def test_images_named_not_in_utf8_inside_a_folder_are_named_readably_on_explain_and_data(
    app, tmp_path, monkeypatch, map_model, map_scan_file
):
    """Found on review: a folder named in UTF-8 may hold files named in Latin-1. A damaged one among them ended the
    Explain and Data pages in "surrogates not allowed" (the reader's warning names it), and so did a pattern's own
    file name on Explain. Both are shown with U+FFFD, as ``ls`` shows them."""
    import shutil

    from ebsd_core.io.readers import open_patterns

    def latin1(folder: Path, name: str) -> Path:  # caf\xe9 ...: not UTF-8
        return Path(os.fsdecode(os.fsencode(folder / name.encode("latin-1").decode("utf-8", "surrogateescape"))))

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    scan = open_patterns(map_scan_file)
    for index, (pattern, label) in enumerate(zip(scan.batch(0, 4), scan.labels[:4], strict=True)):
        group = tmp_path / "root" / "grains" / ("Fm-3m" if scan.classes[label] == 225 else "Im-3m")
        group.mkdir(parents=True, exist_ok=True)
        try:
            Image.fromarray(pattern).save(latin1(group, f"caf\xe9{index}.png"))
        except OSError:
            pytest.skip("this file system takes UTF-8 names alone")
    latin1(tmp_path / "root" / "grains" / "Fm-3m", "damaged\xe9.png").write_bytes(b"not a png")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(tmp_path / "root"))
    app.switch_page("pages/explain.py").run()
    app.radio(key="explain_method").set_value("gradcam").run()
    app.text_input(key="explain_server_path").input("grains").run()
    assert not app.exception and not app.error
    assert [w.value for w in app.warning][0].startswith("grains: 1 image could not be read and was left out (damaged")
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and not app.error
    assert any(m.value.startswith("Pattern 0 (Fm-3m/caf\ufffd") for m in app.markdown)
    app.switch_page("pages/data.py").run()
    app.session_state["data_tab"] = "Server path"
    app.run()
    app.text_input(key="data_server_path").input("grains").run()
    assert not app.exception and not app.error
    next(b for b in app.button if b.label == "Make a dataset of these labelled patterns").click().run()
    assert not app.exception and not app.error
    assert "Dataset ready: go to **Train**." in [s.value for s in app.success]


def test_a_data_root_that_does_not_exist_is_said_so_not_every_path_typed(app, tmp_path, monkeypatch):
    monkeypatch.setenv("EBSD_DATA_ROOT", str(tmp_path / "not-mounted"))
    app.switch_page("pages/data.py").run()
    assert not app.exception and not [t for t in app.text_input if t.key == "data_server_path"]
    assert [e.value for e in app.error] == [
        f"The data root {tmp_path / 'not-mounted'} (EBSD_DATA_ROOT) does not exist (not mounted, or mistyped?): "
        "whoever runs the server can fix it, or upload instead."
    ]


def test_a_server_folder_with_private_folders_lists_them_and_says_why_they_cannot_be_read(
    app, tmp_path, monkeypatch, map_scan_file
):
    """Found as a lab's server account over a data tree with private folders: one folder it may not read made the
    whole tree unlistable ("/tmp/droot/closed: Permission denied"), and typing a file in it was told so in Python's
    words."""
    import shutil

    root = tmp_path / "root"
    for sample in ("closed", "open"):
        (root / sample).mkdir(parents=True)
        shutil.copy(map_scan_file, root / sample / "scan.h5")
    unreadable(monkeypatch, root / "closed")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(root))
    app.switch_page("pages/phasemap.py").run()
    path = app.text_input(key="map_server_path")
    path.input(".").run()
    assert not app.exception and not app.error
    assert next(s for s in app.selectbox if s.key == "map_server_path-found").options == ["closed", "open/scan.h5"]
    for typed, said in (
        ("closed", f"{root / 'closed'}: this account may not read this folder (permission denied)"),
        ("closed/scan.h5", "'closed/scan.h5': this account may not read the folder it is in (permission denied)"),
    ):
        path.input(typed).run()
        assert not app.exception and [e.value for e in app.error] == [said]


def test_class_counts_are_drawn_in_space_group_order(app, tmp_path, monkeypatch):
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    root = tmp_path / "root"
    for name in ("Fm-3m_ni", "cscl"):  # by name Fm-3m (225) comes first, by space group CsCl's Pm-3m (221)
        folder = root / "labelled" / name
        folder.mkdir(parents=True)
        for index in range(2):
            pattern = np.add.outer(np.arange(24), np.arange(24)).astype(np.uint8) + 40 * index  # not blank
            Image.fromarray(pattern).save(folder / f"{index}.png")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(root))
    app.switch_page("pages/data.py").run()
    app.text_input[0].input("labelled").run()
    next(b for b in app.button if b.label == "Make a dataset of these labelled patterns").click().run()
    assert not app.exception and not app.error
    chart = next(e.proto for e in app.get("vega_lite_chart"))
    assert json.loads(chart.spec)["encoding"]["x"]["sort"] is None  # drawn in the data's order
    counts = convert_arrow_bytes_to_pandas_df(chart.datasets[0].data.data)
    assert list(counts.iloc[:, 0]) == ["Pm-3m", "Fm-3m"]
    montage = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert [a["text"] for a in montage["layout"]["annotations"]][:2] == ["Pm-3m", "Fm-3m"]


def test_single_phase_scans_on_the_server_become_a_dataset(app, tmp_path, monkeypatch):
    """Reference scans too large to upload: each gets its space group on the Server path tab."""
    import kikuchipy as kp

    from ebsd_core.io.dataset import read_dataset

    root = tmp_path / "root"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ("ni_ref", "ni3al_ref"):
        kp.signals.EBSD(rng.integers(0, 255, (2, 3, 24, 24), dtype=np.uint8)).save(str(root / f"{name}.h5"))
    monkeypatch.setenv("EBSD_DATA_ROOT", str(root))
    app.switch_page("pages/data.py").run()
    for name, space_group in (("ni_ref.h5", 225), ("ni3al_ref.h5", 221)):
        app.text_input[0].input(name).run()
        add = next(b for b in app.button if b.label == "Add to the scans")
        assert add.disabled  # until its space group is chosen
        next(s for s in app.selectbox if s.label == f"Space group of {name}").set_value(space_group).run()
        next(b for b in app.button if b.label == "Add to the scans").click().run()
    assert not app.exception and not app.error
    assert any("ni_ref.h5 (Fm-3m), ni3al_ref.h5 (Pm-3m)" in m.value for m in app.markdown)
    next(b for b in app.button if b.label == "Make a dataset of these scans").click().run()
    assert not app.exception and not app.error
    dataset = read_dataset(app.session_state["dataset_path"])
    assert dataset.classes == [221, 225] and dataset.class_counts() == {"Pm-3m": 6, "Fm-3m": 6}
    assert sorted(set(dataset.material)) == ["ni3al_ref", "ni_ref"]
    # its test patterns are other points of the same scans, not unseen orientations, on Train and Results
    app.switch_page("pages/train.py").run()
    next(t for t in app.text_input if t.label.startswith("Shots per class")).set_value("1,2")  # a sweep
    train_on_the_page(app, "scans")
    assert sum(" on other points of its scans, 95% validation accuracy " in m.value for m in app.markdown) == 2
    app.switch_page("pages/results.py").run()
    assert not app.exception
    assert [m.label for m in app.metric][0] == "Other points of its scans"
    sweep = json.loads(
        next(c.proto.spec for c in app.get("plotly_chart") if "training patterns per class" in c.proto.spec)
    )
    assert sweep["layout"]["yaxis"]["title"]["text"] == "other points of its scans"
    # ticked at the shots trained, with the chance level of its two classes to read scratch's against
    assert sweep["layout"]["xaxis"]["tickvals"] == [1, 2]
    assert [(s["y0"], a["text"]) for s, a in zip(sweep["layout"]["shapes"], sweep["layout"]["annotations"])] == [
        (0.5, "chance")
    ]
    curves = json.loads(next(c.proto.spec for c in app.get("plotly_chart") if '"epoch"' in c.proto.spec))
    assert curves["layout"]["xaxis"]["dtick"] == 1  # whole epochs: three were ticked 1, 1.5, 2, 2.5, 3


def test_server_dataset_of_one_class_is_refused_when_chosen(app, tmp_path, monkeypatch):
    import numpy as np

    from ebsd_core.io.dataset import Dataset, write_dataset

    root = tmp_path / "root"
    root.mkdir()
    patterns = np.random.default_rng(0).integers(0, 255, (4, 16, 16), dtype=np.uint8)
    write_dataset(Dataset(patterns, np.zeros(4, dtype=int), [225], np.full(4, "ni")), root / "only_ni.h5")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(root))
    app.switch_page("pages/data.py").run()
    app.text_input[0].input("only_ni.h5").run()
    next(b for b in app.button if b.label == "Use this dataset").click().run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert any("only_ni.h5: every pattern is labelled Fm-3m" in e for e in errors), errors
    assert "dataset_path" not in app.session_state  # nothing was made active


def test_train_page_refuses_more_shots_than_the_dataset_has_before_any_job(app, tmp_path, monkeypatch):
    import numpy as np

    from ebsd_core.io.dataset import Dataset, write_dataset

    root = tmp_path / "root"
    root.mkdir()
    patterns = np.random.default_rng(0).integers(0, 255, (8, 16, 16), dtype=np.uint8)
    labels = np.repeat([0, 1], 4)
    write_dataset(Dataset(patterns, labels, [225, 229], np.repeat(["ni", "fe"], 4)), root / "real.h5")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(root))
    app.switch_page("pages/data.py").run()
    app.text_input[0].input("real.h5").run()
    next(b for b in app.button if b.label == "Use this dataset").click().run()
    app.switch_page("pages/train.py").run()
    next(t for t in app.text_input if t.label.startswith("Shots per class")).input("10")
    next(b for b in app.button if b.label == "Start training").click().run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert any("real.h5: class Fm-3m has 4 patterns of its training materials; 11 are needed" in e for e in errors)
    assert "train_job" not in app.session_state  # no job was started


def train_on_the_page(app, name: str) -> None:
    """Start the Train page's form as set, for 1 epoch and 1 view, as models ``name-...``; wait for the job."""
    from pages.common import job_manager

    next(n for n in app.number_input if n.label == "Epochs").set_value(1)
    next(n for n in app.number_input if n.label == "Test-time views").set_value(1)
    next(t for t in app.text_input if t.label == "Model name prefix").set_value(name)
    next(b for b in app.button if b.label == "Start training").click().run()
    state = job_manager().wait(app.session_state["train_job"], timeout=600)
    assert state.status == "done", state.error
    app.run()
    assert not app.exception


def test_the_train_form_opens_with_the_settings_last_submitted(app, tiny_dataset, tmp_path):
    """A microscopist trains, looks at Results, and comes back to train another run: the form had gone back to its
    defaults (every setting typed again). It keeps what was last submitted; the shots and input size, which follow
    the dataset, for each dataset."""
    from ebsd_core.io.dataset import read_dataset, write_dataset

    app.session_state["dataset_path"] = str(tiny_dataset)
    app.switch_page("pages/train.py").run()
    offered = next(t for t in app.text_input if t.label.startswith("Shots per class")).value
    next(t for t in app.text_input if t.label.startswith("Shots per class")).set_value("1")
    next(r for r in app.radio if r.label == "Initialisation").set_value("scratch")
    next(n for n in app.number_input if n.label == "Noise (x pattern std)").set_value(1.5)
    train_on_the_page(app, "first")
    app.switch_page("pages/results.py").run()
    app.switch_page("pages/train.py").run()

    def shown() -> dict:
        return {
            "shots": next(t for t in app.text_input if t.label.startswith("Shots per class")).value,
            "epochs": next(n for n in app.number_input if n.label == "Epochs").value,
            "mode": next(r for r in app.radio if r.label == "Initialisation").value,
            "noise": next(n for n in app.number_input if n.label == "Noise (x pattern std)").value,
        }

    assert shown() == {"shots": "1", "epochs": 1, "mode": "scratch", "noise": 1.5}
    # but not the name the run took: a new one is offered, which training again would not find taken
    assert next(t for t in app.text_input if t.label == "Model name prefix").value.startswith("model-")
    other = write_dataset(read_dataset(tiny_dataset), tmp_path / "other.h5")  # another dataset: its own shots
    app.session_state["dataset_path"] = str(other)
    app.run()
    assert shown() == {"shots": offered, "epochs": 1, "mode": "scratch", "noise": 1.5}
    assert not app.exception


def test_a_model_trained_on_every_pattern_says_it_has_no_test_accuracy(app, tmp_path):
    """Few real patterns: 3 shots of 4 per class leave one to validate on and none to test on."""
    from ebsd_core.io.dataset import Dataset, write_dataset

    patterns = np.random.default_rng(0).integers(0, 255, (12, 16, 16), dtype=np.uint8)
    labels, material = np.repeat([0, 1, 0, 1], [4, 4, 2, 2]), np.repeat(["ni", "fe", "cu", "w"], [4, 4, 2, 2])
    split = np.repeat(["train", "holdout"], [8, 4])  # and two patterns of another material per class
    data = tmp_path / "real.h5"
    write_dataset(Dataset(patterns, labels, [225, 229], material, split), data)
    app.session_state["dataset_path"] = str(data)
    app.switch_page("pages/train.py").run()
    shots = next(t for t in app.text_input if t.label.startswith("Shots per class"))
    assert shots.value == "2"  # 4 per class: 2 shots keep one to validate and one to test on
    shots.set_value("3")
    train_on_the_page(app, "all-in")
    assert any("no pattern was left to test on" in m.value for m in app.markdown), [m.value for m in app.markdown]
    app.switch_page("pages/results.py").run()
    assert not app.exception
    assert not app.error
    assert any(i.value.startswith("No test patterns: every pattern") for i in app.info)  # none to look through
    assert next(m for m in app.metric if m.label == "Unseen orientations").value == "no test patterns"
    assert "Scores below: held-out materials." in [c.value for c in app.caption]  # its confusion matrix is shown
    assert not any(r.label == "Split" for r in app.radio)  # a choice of one
    assert "Scored on 4 held-out patterns (each 0.250 of the accuracy)." in [c.value for c in app.caption]


def side_by_side_on_the_page(app, tmp_path: Path, per_class: int) -> None:
    """The Train page set for the paper's comparison (2 shots, transfer and scratch side by side) on a dataset of two
    classes of random 16 px patterns, ``per_class`` each."""
    from ebsd_core.io.dataset import Dataset, write_dataset

    patterns = np.random.default_rng(1).integers(0, 255, (2 * per_class, 16, 16), dtype=np.uint8)
    labels, materials = np.repeat([0, 1], per_class), np.repeat(["ni", "fe"], per_class)
    write_dataset(Dataset(patterns, labels, [225, 229], materials, None), tmp_path / "two.h5")
    app.session_state["dataset_path"] = str(tmp_path / "two.h5")
    app.switch_page("pages/train.py").run()
    next(t for t in app.text_input if t.label.startswith("Shots per class")).set_value("2")
    next(r for r in app.radio if r.label == "Initialisation").set_value("both side by side")


def test_transfer_and_scratch_trained_side_by_side_are_compared_on_results(app, tmp_path):
    """The paper's comparison on the Train page: both models are named as finished, and the Results page overlays
    the other one's curves at once (it showed the transfer model alone, the overlay empty)."""
    side_by_side_on_the_page(app, tmp_path, per_class=8)
    train_on_the_page(app, "pair")
    assert [s.value for s in app.success] == ["Finished: the 2 models are in the store."]
    scored = [m.value for m in app.markdown if "trained in" in m.value]
    # the paper's two measures: accuracy, and how fast it learnt (1 epoch of random patterns: not reached)
    assert len(scored) == 2, scored
    assert all(" on unseen orientations, 95% validation accuracy not reached; trained in " in line for line in scored)
    from ebsd_core.store import read_card

    assert read_card(tmp_path / "store" / "pair-transfer-k2").training["config"]["patience"] == 5  # auto: 5 at least
    app.switch_page("pages/results.py").run()
    assert not app.exception
    assert app.selectbox[0].value == "pair-transfer-k2"
    assert next(m for m in app.multiselect if m.label == "Overlay training curves of").value == ["pair-scratch-k2"]
    app.selectbox[0].set_value("pair-scratch-k2").run()  # the other one chosen: the first is overlaid
    assert next(m for m in app.multiselect if m.label == "Overlay training curves of").value == ["pair-transfer-k2"]
    # the store's models side by side; a row clicked is the model shown
    table = next(d.value for d in app.dataframe if d.value.index.name == "model")
    assert list(table.index) == ["pair-scratch-k2", "pair-transfer-k2"]
    assert list(table["initialisation"]) == ["scratch", "transfer"] and list(table["shots"]) == [2, 2]
    app.session_state["store_table"] = {"selection": {"rows": [1], "columns": []}}
    app.run()
    assert app.selectbox[0].value == "pair-transfer-k2" and app.session_state["model_name"] == "pair-transfer-k2"
    app.selectbox[0].set_value("pair-scratch-k2").run()  # the row left selected does not take it back
    assert app.selectbox[0].value == "pair-scratch-k2"


def test_repeats_of_a_run_train_on_other_samples_and_give_the_curve_its_spread(app, tmp_path):
    """The paper reports the mean and spread of repeated runs; the Train page trained each run once (the CLI's
    fewshot-curve --seeds alone repeated them)."""
    from ebsd_core.store import read_card

    side_by_side_on_the_page(app, tmp_path, per_class=10)
    next(n for n in app.number_input if n.label == "Repeats").set_value(2)
    train_on_the_page(app, "rep")
    assert [s.value for s in app.success] == ["Finished: the 4 models are in the store."]
    store = tmp_path / "store"
    names = sorted(p.parent.name for p in store.glob("*/model.json"))
    seeds = {name: read_card(store / name).training["config"]["seed"] for name in names}
    assert seeds == {"rep-scratch-k2": 0, "rep-scratch-k2-s1": 1, "rep-transfer-k2": 0, "rep-transfer-k2-s1": 1}
    card = json.loads((store / "rep-transfer-k2" / "model.json").read_text())  # one repeat reached 95 % at once
    card["history"][0]["val_accuracy"] = 0.96
    (store / "rep-transfer-k2" / "model.json").write_text(json.dumps(card))
    app.switch_page("pages/results.py").run()
    speed = next(d.value for d in app.dataframe if d.value.index.name == "shots per class")
    assert speed.to_dict() == {"transfer": {2: "1 (1 of 2)"}, "scratch": {2: "not in 1 epoch"}}
    assert not app.exception
    curve = json.loads(
        next(c.proto.spec for c in app.get("plotly_chart") if "training patterns per class" in c.proto.spec)
    )
    for trace in curve["data"]:  # the mean of the two repeats, their spread as error bars
        accuracies = [read_card(store / f"rep-{trace['name']}-k2{s}").metrics["test"]["accuracy"] for s in ("", "-s1")]
        assert trace["y"] == [pytest.approx(np.mean(accuracies))]
        assert trace["error_y"]["array"] == [pytest.approx(np.std(accuracies))] and trace["customdata"] == [2]
    assert any(c.value.startswith("Each point: the mean of its repeats") for c in app.caption)
    app.selectbox[0].set_value("rep-transfer-k2-s1").run()  # a repeat is a model of the sweep too
    assert any("Few-shot curve of this sweep" in h.value for h in app.subheader)


def test_more_settings_of_the_command_lines_train_reach_the_models(app, tmp_path):
    """The learning rate, batch size, frozen epochs, rotation, seed and unknown threshold were the CLI's alone; under
    More settings they reach each run (frozen epochs the transfer one only: a random backbone teaches nothing
    frozen)."""
    from ebsd_core.store import read_card

    side_by_side_on_the_page(app, tmp_path, per_class=8)
    next(s for s in app.select_slider if s.label == "Learning rate").set_value(1e-3)
    next(s for s in app.select_slider if s.label == "Batch size").set_value(8)
    next(n for n in app.number_input if n.label == "Frozen epochs").set_value(1)
    next(n for n in app.number_input if n.label == "Rotation (deg)").set_value(5.0)
    next(n for n in app.number_input if n.label == "First seed").set_value(7)
    next(s for s in app.slider if s.label == "Unknown below").set_value(0.7)
    next(n for n in app.number_input if n.label == "Crystal rotation (deg)").set_value(10.0)
    next(n for n in app.number_input if n.label == "Noise (x pattern std)").set_value(1.5)
    next(r for r in app.selectbox if r.label == "Grey input").set_value("replicate")
    next(s for s in app.select_slider if s.label == "Early stopping").set_value(0)  # off: as many as the epochs
    train_on_the_page(app, "more")
    for name, frozen in (("more-transfer-k2", 1), ("more-scratch-k2", 0)):
        card = read_card(tmp_path / "store" / name)
        config, augment = card.training["config"], card.training["config"]["augment_config"]
        assert (config["lr"], config["batch_size"], config["frozen_warmup_epochs"]) == (1e-3, 8, frozen)
        assert (config["seed"], augment["rotation"], card.unknown_threshold) == (7, 5.0, 0.7)
        assert (augment["crystal_rotation"], augment["noise_std"], card.channel_mode) == (10.0, 1.5, "replicate")
        assert config["patience"] == config["epochs"] == 1
    # and Results says so
    app.switch_page("pages/results.py").run()
    app.selectbox[0].set_value("more-transfer-k2").run()
    told = next(m.value for m in app.markdown if "**Optimiser**" in m.value)
    assert "learning rate 0.001, batch 8, frozen epochs 1" in told and "grey copied to 3 channels" in told
    assert "noise up to 1.5 x the pattern's std, crystal rotation up to 10 deg, in-plane rotation up to 5 deg" in told


def test_a_saved_model_to_start_from_sets_the_grey_input(app, tmp_path):
    """Training from a saved model of other channels is refused on submit, naming the setting to change."""
    side_by_side_on_the_page(app, tmp_path, per_class=8)
    next(r for r in app.radio if r.label == "Initialisation").set_value("ImageNet transfer")
    train_on_the_page(app, "first")
    next(s for s in app.selectbox if s.label == "Transfer starts from").set_value("first-transfer-k2")
    next(r for r in app.selectbox if r.label == "Grey input").set_value("replicate")
    next(b for b in app.button if b.label == "Start training").click().run()
    # told as a setting to change, not as an "Unexpected problem: ValueError" (as every refusal of this form was)
    assert [e.value for e in app.error] == [
        "the model first-transfer-k2 takes grey patterns with its adapt channels: choose that grey input under More "
        "settings to start from it"
    ]


def test_upload_names_are_sanitised():
    from pages.common import safe_name

    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("a b/..\\c?.png") == "c_.png"
    # a name no browser sends, but a request can: the session's folder of uploads, or the one above it
    assert safe_name("..") == safe_name(".") == safe_name("") == safe_name("...") == "upload"


def _upload_twice():
    """Two different files uploaded one after the other under one name, of one size."""
    import streamlit as st

    from pages.common import upload_to_session

    class Upload:
        def __init__(self, file_id, data):
            self.file_id, self.name, self.size, self.data = file_id, "grain.tif", len(data), data

        def getbuffer(self):
            return memoryview(self.data)

    first = upload_to_session(Upload("id-1", b"A" * 64), "grains")
    st.session_state.written = first.stat().st_mtime_ns
    # the same upload again is not written again
    st.session_state.rerun = upload_to_session(Upload("id-1", b"A" * 64), "grains").stat().st_mtime_ns
    second = upload_to_session(Upload("id-2", b"B" * 64), "grains")
    again = upload_to_session(Upload("id-3", b"A" * 64), "grains")  # the first file dropped on the uploader again
    elsewhere = upload_to_session(Upload("id-4", b"A" * 64), "explain_upload")  # and on another page
    st.session_state.first, st.session_state.second = first.read_bytes(), second.read_bytes()
    st.session_state.names = first.name, second.name
    copies = (first, second, again, elsewhere)
    st.session_state.copies = {path.stat().st_ino for path in copies}, first.stat().st_nlink
    st.session_state.again = again != first and again.read_bytes() == b"A" * 64


def test_a_second_upload_of_the_same_name_and_size_is_kept_apart_from_the_first(tmp_path, monkeypatch):
    """It replaced the first (two uncompressed TIFF patterns of one camera have one size), which a map being made or
    shown of the first then read in its place. A file uploaded again is linked, not copied."""
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path / "home"))
    app = AppTest.from_function(_upload_twice).run()
    assert not app.exception
    assert app.session_state.first == b"A" * 64 and app.session_state.second == b"B" * 64
    assert app.session_state.names == ("grain.tif", "grain.tif")
    assert app.session_state.rerun == app.session_state.written
    # uploaded again, it has a folder of its own but takes no more room on the disk: a hard link of the first
    assert app.session_state.again
    inodes, links = app.session_state.copies
    assert len(inodes) == 2 and links == 3  # the first and the file uploaded again share one; the other is its own


def _messages_for_the_user():
    import streamlit as st

    from pages.common import UPLOAD_NAMES, for_the_user, session_dir, upload_folder

    class Upload:
        file_id = "id-1"

    folder = upload_folder("indexing@/data/scan.h5", Upload())
    st.session_state[UPLOAD_NAMES] = {str(folder / "my_scan.ang"): "my scan.ang"}
    st.session_state.told = [
        for_the_user(f"{folder / 'scan.ang'}: holds 6 points"),
        for_the_user(f"{session_dir() / 'maps' / 'a.npz'}: gone"),
        for_the_user(f"{folder / 'my_scan.ang'}: holds 6 points"),
    ]


def test_messages_name_an_upload_as_uploaded_not_by_the_session_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path / "home"))
    app = AppTest.from_function(_messages_for_the_user).run()
    assert not app.exception
    assert app.session_state.told == ["scan.ang: holds 6 points", "maps/a.npz: gone", "my scan.ang: holds 6 points"]


def _unexpected_problems_shown():
    from ebsd_core.errors import InputError
    from pages.common import show_error

    for problem in (KeyError("a bug's key"), InputError("holds 6 points", "scan.ang")):
        try:
            raise problem
        except Exception as exc:  # noqa: BLE001 - as the pages catch them
            show_error(exc)


def test_an_unexpected_problem_on_a_page_is_one_line_there_and_its_trace_in_the_servers_log(
    tmp_path, monkeypatch, caplog
):
    """Whoever keeps a lab's server, told "Unexpected problem: KeyError" by a user, found nothing in its log."""
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path / "home"))
    app = AppTest.from_function(_unexpected_problems_shown).run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "Unexpected problem: KeyError: \"a bug's key\" (the server's log has the details)",
        "scan.ang: holds 6 points",  # the user's own to mend: not logged
    ]
    logged = [r for r in caplog.records if r.name == "pages.common"]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR and logged[0].exc_info[0] is KeyError


def test_two_uploads_of_one_name_at_once_are_explained(app):
    """Found on review: both were saved in one file and their space-group boxes shared a key (an exception)."""

    def png(seed):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 40), dtype=np.uint8)).save(buffer, "PNG")
        return ("pattern.png", buffer.getvalue(), "image/png")

    app.run()
    app.switch_page("pages/data.py").run()
    app.file_uploader[0].set_value([png(1), png(2)]).run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "pattern.png: two uploads have this name: rename one of them to use both (a folder dragged onto an uploader "
        "arrives as its files alone, without its sub-folders: pick it in the uploader of folders below)"
    ]
    assert [s.label for s in app.selectbox] == ["Space group of pattern.png (1 pattern)"]


def test_a_nordif_scan_is_uploaded_with_its_setting_file(app):
    """Found on review: Setting.txt could not be uploaded, so a NORDIF Pattern.dat could not be read, and its
    background and calibration images were taken as patterns."""
    from ebsd_core.io.dataset import read_dataset

    shipped = KIKUCHIPY_DATA / "nordif"  # a real NORDIF acquisition of Ni, 3x3 patterns
    names = [
        "Pattern.dat",
        "Setting.txt",
        "Background acquisition pattern.bmp",
        "Background calibration pattern.bmp",
        "Calibration (294,532).bmp",
    ]
    files = [(name, (shipped / name).read_bytes(), "application/octet-stream") for name in names]
    other = io.BytesIO()  # a second class, for a dataset to train on
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 60), dtype=np.uint8)).save(other, "PNG")
    app.run()
    app.switch_page("pages/data.py").run()
    app.file_uploader[0].set_value([*files, ("fe.png", other.getvalue(), "image/png")]).run()
    assert not app.exception and not app.error
    assert [s.label for s in app.selectbox] == [
        "Space group of Pattern.dat (9 patterns)",
        "Space group of fe.png (1 pattern)",
    ]
    not_read = "Not read: Background calibration pattern.bmp, Calibration (294,532).bmp (NORDIF's calibration"
    assert any(c.value.startswith(not_read) for c in app.caption)
    app.selectbox[0].set_value(225).run()
    app.selectbox[1].set_value(229).run()
    next(b for b in app.button if b.label == "Use these as the dataset").click().run()
    assert not app.exception and not app.error
    dataset = read_dataset(app.session_state["dataset_path"])
    assert dataset.classes == [225, 229] and list(np.bincount(dataset.labels)) == [9, 1]
    # the same scan again without its Setting.txt: the earlier upload's is not used
    app.file_uploader[0].set_value(files[:1]).run()
    assert [e.value for e in app.error] == [
        "Pattern.dat: a NORDIF scan is read with the Setting.txt written beside it at acquisition (it holds the scan "
        "and pattern sizes), and there is none in its folder: put Setting.txt beside it, or upload both together"
    ]


def test_a_folder_of_class_folders_is_uploaded_as_it_is(app, monkeypatch):
    """A microscopist picks the folder of class folders itself: no zip to make first. Streamlit names each file by
    its path in the folder. Of many files, a browser may fail to send some: the page says how many arrived."""
    from ebsd_core.io.dataset import read_dataset

    monkeypatch.setattr("pages.common.MANY_UPLOADS", 9)  # 1,000: more than a test should upload

    def png(name, seed):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 40), dtype=np.uint8)).save(buffer, "PNG")
        return (name, buffer.getvalue(), "image/png")

    def folder_uploader():
        return next(u for u in app.file_uploader if u.label.startswith("Or a folder"))

    app.run()
    app.switch_page("pages/data.py").run()
    classes = {"Fm-3m": 3, "Im-3m": 2, "227": 4}
    files = [
        png(f"my patterns/{c}/p {i}.png", 10 * k + i) for k, (c, n) in enumerate(classes.items()) for i in range(n)
    ]
    damaged = ("my patterns/Im-3m/p 9.png", b"cut short", "image/png")
    folder_uploader().set_value([*files, damaged, png("my patterns/._p 0.png", 99)]).run()  # macOS's metadata copy
    assert not app.exception and not app.error
    assert app.warning[0].value.startswith("11 files arrived. A browser may fail to send some")
    assert app.warning[1].value.startswith(
        "my patterns: 1 image could not be read and was left out (p 9.png); the first, Im-3m/p 9.png: cannot read"
    )  # named as uploaded, not by the session's folder
    assert len(app.warning) == 2
    assert [s.value for s in app.success] == ["my patterns: 9 labelled patterns, classes Fm-3m, Fd-3m, Im-3m"]
    next(b for b in app.button if b.label == "Use these as the dataset").click().run()
    assert not app.exception and not app.error
    dataset = read_dataset(app.session_state["dataset_path"])
    assert dataset.classes == [225, 227, 229] and list(np.bincount(dataset.labels)) == [3, 4, 2]
    assert app.session_state["dataset_label"] == "upload: my patterns"
    app.switch_page("pages/train.py").run()
    app.switch_page("pages/data.py").run()  # Streamlit empties an uploader it did not draw: the folder stays
    assert any(c.value.startswith("my patterns, uploaded before, is still given") for c in app.caption)
    assert [s.value for s in app.success] == ["my patterns: 9 labelled patterns, classes Fm-3m, Fd-3m, Im-3m"]
    folder_uploader().set_value([png("my patterns/Fm-3m/a.png", 1), png("other/Fm-3m/b.png", 2)]).run()
    assert [e.value for e in app.error] == ["one folder at a time: my patterns, other were given"]
    folder_uploader().set_value([png("my patterns/Fm-3m/a.png", 1), png("b.png", 2)]).run()
    assert [e.value for e in app.error] == [
        "b.png: a file on its own, where this takes a folder (files go in the uploader of files)"
    ]
    # a folder dragged onto the uploader: the browser sends its files without their paths (seen in Chromium)
    folder_uploader().set_value([png("a.png", 1), png("b.png", 2)]).run()
    assert [e.value for e in app.error] == [
        "2 files arrived, none in a folder: a folder dragged onto an uploader arrives as its files alone, without its "
        "sub-folders (class folders would be lost). Click the uploader and pick the folder instead, or upload a zip of "
        "it"
    ]
    nordif_files = [(name, b"\0", "application/octet-stream") for name in ("Pattern.dat", "Setting.txt")]
    folder_uploader().set_value(nordif_files).run()  # a NORDIF acquisition dropped: never read from a zip
    assert app.error[0].value.endswith(
        "pick the folder instead, or give its .dat and Setting.txt to the uploader of files"
    )
    folder_uploader().set_value([png("mine/Fm-3m/a\tb.png", 1), png("mine/Fm-3m/a_b.png", 2)]).run()
    assert [e.value for e in app.error] == [
        "mine/Fm-3m/a\tb.png and mine/Fm-3m/a_b.png would be saved under one name: rename one of them"
    ]


def test_an_upload_is_labelled_only_with_the_space_group_chosen_for_it(app):
    """No space group is preselected: one left as it came would have labelled the patterns unnoticed."""
    from ebsd_core.io.dataset import read_dataset

    def png(name, seed):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 40), dtype=np.uint8)).save(buffer, "PNG")
        return (name, buffer.getvalue(), "image/png")

    app.run()
    app.switch_page("pages/data.py").run()
    app.file_uploader[0].set_value([png("ni.png", 1), png("ni3al.png", 2)]).run()
    assert [s.value for s in app.selectbox] == [None, None]
    app.selectbox[0].set_value(225).run()
    next(b for b in app.button if b.label == "Use these as the dataset").click().run()
    assert not app.exception
    assert [e.value for e in app.error] == ["choose the space group of ni3al.png first"]
    assert "dataset_path" not in app.session_state
    app.selectbox[1].set_value(221).run()
    next(b for b in app.button if b.label == "Use these as the dataset").click().run()
    assert not app.exception and not app.error
    assert read_dataset(app.session_state["dataset_path"]).classes == [221, 225]


def test_the_results_views_and_demo_epochs_stay_after_a_visit_to_another_page(app, map_model):
    """The training curves overlaid, the confusion matrix's normalisation and split, and the demo's epochs went back
    to their defaults after a look at another page."""
    import shutil

    from ebsd_core.evaluate import evaluate_predictions

    store = Path(os.environ["EBSD_MODEL_STORE"])
    for name in ("duplex", "duplex-again"):
        shutil.copytree(map_model, store / name)
    card = json.loads((store / "duplex" / "model.json").read_text())
    labels, classes = np.array([0, 0, 1, 1]), [225, 229]
    card["metrics"]["test"] = evaluate_predictions(np.eye(2)[labels], labels, classes, ["ni"] * 4)
    card["metrics"]["holdout"] = evaluate_predictions(np.eye(2)[[0, 1, 1, 1]], labels, classes, ["cu"] * 4)
    (store / "duplex" / "model.json").write_text(json.dumps(card))
    app.run()
    app.number_input(key="demo_epochs").set_value(9).run()
    app.switch_page("pages/results.py").run()
    app.selectbox(key="model_picker").select("duplex").run()
    app.multiselect(key="compare-duplex").select("duplex-again").run()
    app.toggle(key="normalise_confusion").set_value(False).run()
    app.radio(key="confusion_split").set_value("holdout").run()
    app.switch_page("pages/explain.py").run()
    app.switch_page("pages/results.py").run()
    assert not app.exception
    assert app.multiselect(key="compare-duplex").value == ["duplex-again"]
    assert app.toggle(key="normalise_confusion").value is False
    assert app.radio(key="confusion_split").value == "holdout"
    app.switch_page("pages/home.py").run()
    assert app.number_input(key="demo_epochs").value == 9


def test_the_explainer_and_the_filters_compared_stay_after_a_visit_to_another_page(app, map_model, tiny_dataset):
    """SHAP's explainer and the model whose filters are drawn beside went back to their defaults after a look at
    another page, and the explanation shown again was then another one."""
    import shutil

    for name in ("duplex", "duplex-again"):
        shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / name)
    app.session_state["dataset_path"] = str(tiny_dataset)
    app.session_state["model_name"] = "duplex"
    app.switch_page("pages/explain.py").run()
    app.radio(key="explain_method").set_value("shap").run()
    next(r for r in app.radio if r.label == "SHAP explainer").set_value("gradient").run()
    app.radio(key="explain_method").set_value("filters").run()
    next(s for s in app.selectbox if s.label == "Beside the filters of").select("duplex-again").run()
    app.switch_page("pages/results.py").run()
    app.switch_page("pages/explain.py").run()
    assert next(s for s in app.selectbox if s.label == "Beside the filters of").value == "duplex-again"
    app.radio(key="explain_method").set_value("shap").run()
    assert next(r for r in app.radio if r.label == "SHAP explainer").value == "gradient" and not app.exception


def test_files_uploaded_on_the_data_page_stay_after_a_visit_to_another(app):
    """Scans uploaded and labelled on Data were gone after a look at another page, before the dataset was made (large
    ones took minutes to upload again), and so were the space groups chosen for them."""
    from ebsd_core.io.dataset import read_dataset

    def png(name, seed):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 40), dtype=np.uint8)).save(buffer, "PNG")
        return (name, buffer.getvalue(), "image/png")

    def look_at_another_page():
        app.switch_page("pages/train.py").run()
        app.switch_page("pages/data.py").run()

    app.run()
    app.switch_page("pages/data.py").run()
    app.file_uploader[0].set_value([png("ni scan.png", 1), png("ni3al.png", 2)]).run()
    app.selectbox[0].set_value(225).run()
    look_at_another_page()
    assert not app.exception and [s.value for s in app.selectbox] == [225, None]
    assert [s.label for s in app.selectbox] == [
        "Space group of ni scan.png (1 pattern)",
        "Space group of ni3al.png (1 pattern)",
    ]
    assert any(c.value.startswith("ni scan.png, ni3al.png, uploaded before, are still given") for c in app.caption)
    app.selectbox[1].set_value(221).run()
    next(b for b in app.button if b.label == "Use these as the dataset").click().run()
    assert not app.exception and not app.error
    assert read_dataset(app.session_state["dataset_path"]).classes == [221, 225]
    app.file_uploader[0].set_value([png("ni scan.png", 3)]).run()  # another file of that name: none is chosen for it
    assert [s.value for s in app.selectbox] == [None]
    look_at_another_page()
    next(b for b in app.button if b.label == "Forget ni scan.png").click().run()
    assert not app.exception and not app.selectbox
    app.file_uploader[0].set_value([png(f"p{i}.png", i) for i in range(5)]).run()
    look_at_another_page()  # a folder's worth of images is not listed in full
    assert any(c.value.startswith("p0.png, p1.png, p2.png and 2 more, uploaded before, are") for c in app.caption)
    assert any(b.label == "Forget these 5 files" for b in app.button)


def test_zip_without_class_folders_is_explained(tmp_path):
    from ebsd_core.errors import InputError
    from ebsd_core.io.readers import open_patterns

    archive = tmp_path / "flat.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("notes.txt", "no images here")
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(InputError, match="no images"):
        open_patterns(archive)


def test_sessions_do_not_share_datasets_or_jobs(app, tmp_path):
    from pages.common import job_manager

    first = AppTest.from_file(APP, default_timeout=60).run()
    second = AppTest.from_file(APP, default_timeout=60).run()
    assert first.session_state["session_id"] != second.session_state["session_id"]
    first.session_state["dataset_path"] = str(tmp_path / "mine.h5")
    job = job_manager().submit("test", "first's job", first.session_state["session_id"], lambda ctx: {})
    job_manager().wait(job)
    second.session_state["train_job"] = job
    second.switch_page("pages/train.py").run()
    assert "dataset_path" not in second.session_state
    assert any("not known to this session" in w.value for w in second.warning)
    assert job_manager().jobs_of(second.session_state["session_id"]) == []


@contextlib.contextmanager
def another_sessions_job_running():
    """Another session's job runs on the device for as long as the block lasts; yields its id."""
    from pages.common import job_manager

    release = threading.Event()
    other = job_manager().submit("demo", "another student's demo", "someone else", lambda ctx: release.wait(60) and {})
    try:
        while job_manager().get(other).status != "running":
            time.sleep(0.01)
        yield other
    finally:
        release.set()
        job_manager().wait(other)


def test_a_queued_job_says_what_it_waits_for(app):
    """A class clicking the demo at once: the second student's page says one job runs before theirs."""
    from pages.common import job_manager

    with another_sessions_job_running():
        app.run()
        mine = job_manager().submit("demo", "Demo: simulate + train", app.session_state["session_id"], lambda ctx: {})
        app.session_state["train_job"] = mine
        app.switch_page("pages/train.py").run()
        assert not app.exception
        assert any("1 job is running. It starts by itself" in i.value for i in app.info)
        assert "another student" not in str([i.value for i in app.info])  # nothing of the other job is shown
        app.switch_page("pages/home.py").run()  # their own demo waits: nothing more to start
        assert any("Your job 'Demo: simulate + train' is queued" in i.value for i in app.info)
        next_student = AppTest.from_file(APP, default_timeout=120).run()  # sees the queue before adding to it
        assert any("busy: 1 job running and 1 job queued" in i.value for i in next_student.info)
    assert job_manager().wait(mine).status == "done"


def test_a_second_demo_is_refused_while_the_sessions_first_runs(app):
    """Found on review: a second click queued a second demo and the Train page showed only that one, so the first
    ran unseen and uncancellable while a class waited behind both."""
    import threading

    from pages.common import job_manager

    release = threading.Event()
    app.run()
    mine = app.session_state["session_id"]
    first = job_manager().submit("demo", "Demo: simulate + train", mine, lambda ctx: release.wait(60) and {})
    try:
        later = AppTest.from_file(APP, default_timeout=120)
        later.query_params["sid"] = mine  # the same session, its page drawn after the job started
        later.run()
        assert next(b for b in later.button if b.label == "Run the demo").disabled
        assert any("Your job 'Demo: simulate + train' is" in i.value for i in later.info)
        assert later.session_state["train_job"] == first  # the Train page (linked) shows the one that runs
        next(b for b in app.button if b.label == "Run the demo").click().run()  # a click before the page said so
        assert not app.exception
        assert any("Your job 'Demo: simulate + train' is" in i.value for i in app.info)
        assert [job.id for job in job_manager().jobs_of(mine)] == [first]
    finally:
        release.set()
    assert job_manager().wait(first).status == "done"


def reloaded_app(session: str) -> AppTest:
    """The dashboard as a browser reload finds it: the URL's session id and nothing else."""
    reloaded = AppTest.from_file(APP, default_timeout=120)
    reloaded.query_params["sid"] = session
    reloaded.run()
    return reloaded


def map_on_the_page(app, monkeypatch, map_model, map_scan_file, cleanup: bool = True):
    """Map the test scan by server path with the test model (as ``duplex``); the finished job's state."""
    import shutil

    from pages.common import job_manager

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(map_scan_file.parent))
    app.switch_page("pages/phasemap.py").run()
    app.selectbox(key="map_model").select("duplex").run()
    # what the model learnt from, as Results says it (the phases and sizes a map of it can be trusted on)
    assert any(
        m.value.startswith("- **Backbone**: efficientnet_lite0") and "**Materials**" in m.value for m in app.markdown
    )
    next(t for t in app.text_input if t.key == "map_server_path").set_value(map_scan_file.name).run()
    if not cleanup:
        next(c for c in app.checkbox if c.label == "Grain clean-up").uncheck().run()
    next(b for b in app.button if b.label == "Classify every pattern").click().run()
    return job_manager().wait(app.session_state["map_job"], timeout=600)


def test_a_region_drawn_or_typed_on_the_map_stays_after_a_visit_to_another_page(
    app, monkeypatch, map_model, map_scan_file
):
    """A box drawn on the phase map, the rows and columns typed for it and its space group went back to their
    defaults after a look at another page, before the region was added."""
    assert map_on_the_page(app, monkeypatch, map_model, map_scan_file).status == "done"
    app.run()

    def box(x: list[float], y: list[float]) -> None:  # as the chart's box-select tool sets it
        app.session_state["phase_map_chart"] = {"selection": {"box": [{"x": x, "y": y}], "points": []}}
        app.run()

    def region() -> list:
        labels = ("First row", "Last row", "First column", "Last column")
        return [next(n for n in app.number_input if n.label == label).value for label in labels]

    box([0.6, 3.2], [1.7, 4.1])
    assert region() == [2, 4, 1, 3]
    next(n for n in app.number_input if n.label == "Last column").set_value(5).run()
    app.selectbox(key="region_space_group").set_value(225).run()
    app.switch_page("pages/explain.py").run()
    app.switch_page("pages/phasemap.py").run()
    assert not app.exception and region() == [2, 4, 1, 5]
    assert app.selectbox(key="region_space_group").value == 225
    app.session_state["phase_map_chart"] = {"selection": {"box": [], "points": []}}  # the selection cleared
    app.run()
    assert region() == [0, 4, 0, 4]


def test_the_unknown_threshold_of_a_map_is_set_on_the_page_and_its_exports_follow(
    app, monkeypatch, map_model, map_scan_file
):
    """The model's threshold was the map's only one: a point of a phase the model does not know (a real Si pattern
    read Fm-3m at 1.00 by an austenite/ferrite model) could be marked unknown only by training again."""
    from ebsd_core.phasemap import load_phase_map
    from ebsd_core.wording import percent

    assert map_on_the_page(app, monkeypatch, map_model, map_scan_file).status == "done"
    app.run()
    saved = load_phase_map(app.session_state["map_path"])
    slider = next(s for s in app.slider if s.label == "Unknown below")
    assert slider.value == pytest.approx(saved.threshold, abs=0.005)

    def unknown_fraction() -> str:
        table = next(d.value for d in app.dataframe if "fraction" in d.value.columns)
        return table.set_index("phase")["fraction"]["unknown"]

    assert unknown_fraction() == percent((saved.index == -1).mean())
    above = float(np.quantile(saved.confidence, 0.5))  # about half the points are less sure than this
    slider.set_value(round(above, 2)).run()
    assert not app.exception
    expected = (saved.confidence < round(above, 2)).mean()
    assert unknown_fraction() == percent(expected) and expected > 0.3
    # the point panel's line too
    bars = json.loads(next(c.proto.spec for c in app.get("plotly_chart") if "unknown below" in c.proto.spec))
    assert bars["layout"]["shapes"][0]["y0"] == pytest.approx(round(above, 2))
    app.switch_page("pages/explain.py").run()
    app.switch_page("pages/phasemap.py").run()  # the threshold set stays (it went back to the model's)
    assert next(s for s in app.slider if s.label == "Unknown below").value == pytest.approx(round(above, 2))
    assert unknown_fraction() == percent(expected)


def test_a_scan_mapped_again_with_another_model_shows_where_the_maps_differ(app, monkeypatch, map_model, map_scan_file):
    """A scan mapped again (after training on its regions, say) replaced the map shown: nothing said where, or at how
    many points, the new model read it otherwise."""
    from ebsd_core.phasemap import load_phase_map
    from ebsd_core.store import load_model, save_model
    from pages.common import job_manager

    assert map_on_the_page(app, monkeypatch, map_model, map_scan_file, cleanup=False).status == "done"
    app.run()
    first = load_phase_map(app.session_state["map_path"])
    assert not any("read another phase than in the last map" in c.value for c in app.caption)  # none before it
    model, card = load_model(map_model)
    card.unknown_threshold = 0.9  # the same network, its unsure points unknown: a map that differs where known
    save_model(model, card, Path(os.environ["EBSD_MODEL_STORE"]) / "sure")
    app.run()  # the picker lists it
    app.selectbox(key="map_model").select("sure").run()
    next(b for b in app.button if b.label.startswith("Map ") and b.label.endswith(" with sure")).click().run()
    assert job_manager().wait(app.session_state["map_job"], timeout=600).status == "done"
    app.run()
    assert not app.exception and not app.error
    second = load_phase_map(app.session_state["map_path"])
    changed = (first.index >= 0) & (second.index < 0)
    assert changed.any()
    note = next(c.value for c in app.caption if "read another phase than in the last map" in c.value)
    assert note.startswith(f"{changed.sum():,} points of {second.size:,}") and "with duplex (map accuracy then" in note
    figure = json.loads(
        next(c.proto.spec for c in app.get("plotly_chart") if "changed since the last map" in c.proto.spec)
    )
    assert figure["layout"]["title"]["text"].startswith("changed since the last map")


def test_a_map_in_progress_is_shown_again_after_a_browser_reload(app):
    """Found on review: after a reload the Phase map page forgot a map still running (the Train page kept its job)."""
    import threading

    from pages.common import job_manager

    release = threading.Event()
    app.run()
    mine = app.session_state["session_id"]
    job = job_manager().submit("phasemap", "Phase map of scan.h5", mine, lambda ctx: release.wait(60) and {"map": ""})
    try:
        reloaded = reloaded_app(mine)
        reloaded.switch_page("pages/phasemap.py").run()
        assert not reloaded.exception
        assert reloaded.session_state["map_job"] == job
        assert any(b.label == "Cancel" for b in reloaded.button)
        reloaded.switch_page("pages/train.py").run()  # a map is not a training job: the Train page does not show it
        assert not any(b.label == "Cancel" for b in reloaded.button)
    finally:
        release.set()
    job_manager().wait(job)


def test_the_latest_map_is_shown_again_after_a_browser_reload(app, monkeypatch, map_model, map_scan_file):
    """Found on review: a reload of the Phase map page lost the map just made (its file stays in the session)."""
    import shutil

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "another")  # first in the store's list
    assert map_on_the_page(app, monkeypatch, map_model, map_scan_file).status == "done"
    app.run()
    shown = app.session_state["map_path"]
    reloaded = reloaded_app(app.session_state["session_id"])
    reloaded.switch_page("pages/phasemap.py").run()
    assert not reloaded.exception and not reloaded.error
    assert reloaded.session_state["map_path"] == shown
    assert "Mapped with duplex." in [c.value for c in reloaded.caption]
    assert reloaded.selectbox(key="map_model").value == "duplex"  # not "another", with a button to map again with it
    assert not any(b.label.startswith("Map ") for b in reloaded.button)
    assert any(m.label == "Map accuracy (ground truth known)" for m in reloaded.metric)
    # and the grains labelled on it: kept in the session folder
    for label, value in zip(("First row", "Last row", "First column", "Last column"), (0, 1, 0, 2)):
        next(n for n in reloaded.number_input if n.label == label).set_value(value)
    next(s for s in reloaded.selectbox if s.label == "Space group of the region").select(225).run()
    next(b for b in reloaded.button if b.label == "Add the region").click().run()
    again = reloaded_app(app.session_state["session_id"])
    again.switch_page("pages/phasemap.py").run()
    assert not again.exception and not again.error
    table = next(d.value for d in again.dataframe if "points" in d.value.columns)
    assert table.to_dict("records") == [{"space group": "Fm-3m", "rows": "0-1", "columns": "0-2", "points": 6}]


@pytest.mark.parametrize("demo", [True, False])
def test_a_demo_map_mapped_poorly_says_what_would_map_it_well(app, map_model, map_scan_file, tmp_path, demo):
    """Left from the fifty-fourth session: a six-class model mapped a Ni/Ni3Al demo scan 34 % right, and the page
    said nothing of the pair's own 20-shot model (99.9 %). Any other scan's map is not the demo's to mend."""
    import dataclasses
    import shutil

    from ebsd_core.io.readers import open_patterns
    from ebsd_core.phasemap import map_scan, save_phase_map
    from ebsd_core.store import load_model
    from ebsd_core.wording import percent
    from pages.common import job_manager

    shutil.copytree(map_model, tmp_path / "store" / "duplex")
    model, card = load_model(tmp_path / "store" / "duplex")
    mapped = map_scan(model, card, open_patterns(map_scan_file), cleanup=False)
    # the model's answers, against the other phase's truth: a map mostly wrong
    weak = dataclasses.replace(mapped, truth=np.where(mapped.truth >= 0, 1 - mapped.truth, -1))
    assert weak.accuracy() < 0.5
    saved = save_phase_map(weak, tmp_path / "weak.npz")
    result = {"map": str(saved), "scan": str(map_scan_file), "model_name": "duplex"}
    if demo:
        result["demo_pair"] = ["austenite", "ferrite"]
    app.run()
    mine = app.session_state["session_id"]
    job_manager().wait(job_manager().submit("phasemap", "Demo map: Austenite + ferrite", mine, lambda ctx: result))
    app.switch_page("pages/phasemap.py").run()
    assert not app.exception and app.session_state["map_path"] == str(saved)
    hints = [i.value for i in app.info if "of this demo scan right" in i.value]
    if not demo:
        assert not hints
        return
    assert len(hints) == 1 and hints[0].startswith(f"duplex mapped {percent(weak.accuracy())} of this demo scan right")
    assert 'run the demo map again with "a 20-shot model for the pair" (under "Map it with"' in hints[0]
    assert not [b for b in app.button if b.key == "map_with_pair_model"]  # none trained yet
    pair_model = "demo-map-austenite-ferrite-00000000000a"
    shutil.copytree(map_model, tmp_path / "store" / pair_model)  # an earlier demo map's
    app.run()
    assert [i.value for i in app.info if i.value.endswith(f"One was trained earlier: {pair_model}.")]
    next(b for b in app.button if b.key == "map_with_pair_model").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=300)
    assert state.status == "done", state.error
    app.run()
    assert not app.exception and app.session_state["map_model_used"] == pair_model
    assert "Mapped with demo-map-austenite-ferrite-00000000000a." in [c.value for c in app.caption]
    assert not [i.value for i in app.info if "of this demo scan right" in i.value]


def test_a_demo_map_is_shown_again_after_a_browser_reload(app, map_model, map_scan_file, tmp_path):
    """A demo map names its own model, which the page makes the picker's: after a reload that came in a full run of
    the page, after the picker was drawn (where Streamlit refuses to set a widget's key)."""
    import shutil

    from ebsd_core.io.readers import open_patterns
    from ebsd_core.phasemap import map_scan, save_phase_map
    from ebsd_core.store import load_model
    from pages.common import job_manager

    for name in ("another", "duplex"):
        shutil.copytree(map_model, tmp_path / "store" / name)
    model, card = load_model(tmp_path / "store" / "duplex")
    saved = save_phase_map(map_scan(model, card, open_patterns(map_scan_file), cleanup=False), tmp_path / "demo.npz")
    result = {"map": str(saved), "scan": str(map_scan_file), "model_name": "duplex"}
    app.run()
    mine = app.session_state["session_id"]
    job_manager().wait(job_manager().submit("phasemap", "Demo map: Austenite + ferrite", mine, lambda ctx: result))
    reloaded = reloaded_app(mine)
    reloaded.switch_page("pages/phasemap.py").run()
    assert not reloaded.exception and not reloaded.error
    assert reloaded.session_state["map_path"] == str(saved)
    assert reloaded.selectbox(key="map_model").value == "duplex"
    assert "Mapped with duplex." in [c.value for c in reloaded.caption]


def test_a_job_forgotten_with_its_idle_session_is_explained(app):
    from pages.common import job_manager

    app.run()
    job = job_manager().wait(job_manager().submit("demo", "Demo", app.session_state["session_id"], lambda ctx: {}))
    app.session_state["train_job"] = job.id
    job_manager().forget([app.session_state["session_id"]])  # what the hourly housekeeping does a day later
    app.switch_page("pages/train.py").run()
    assert not app.exception and not app.warning
    assert any("record is gone: its session was idle for a day" in i.value for i in app.info)
    assert "train_job" not in app.session_state


def test_home_offers_the_latest_demo_at_once(app, map_model, tmp_path):
    """While a class's demos queue, Home offers the demo model someone has already trained, and opens its results."""
    import datetime as dt
    import shutil

    app.run()
    assert not [b for b in app.button if b.label.startswith("See the latest demo")]  # none trained yet
    for name in ("demo-0123456789ab", "demo-map-ni-ni3al-0123456789ac", "demo-ni"):  # only the first is the demo's
        shutil.copytree(map_model, tmp_path / "store" / name)
    card_file = tmp_path / "store" / "demo-0123456789ab" / "model.json"
    trained = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat(timespec="seconds")
    card_file.write_text(
        json.dumps({**json.loads(card_file.read_text()), "metrics": {"accuracy": 0.75}, "created": trained})
    )
    app.run()
    offered = [b for b in app.button if b.label.startswith("See the latest demo")]
    assert len(offered) == 1 and "(2 epochs, 0.75 on unseen orientations, trained 5 minutes ago)" in offered[0].label
    offered[0].click().run()
    assert not app.exception
    assert app.selectbox[0].value == "demo-0123456789ab"
    assert "Model: **demo-0123456789ab**" in [c.value for c in app.sidebar.caption]
    assert "Dataset: none yet" in [c.value for c in app.sidebar.caption]  # its dataset file is gone


def test_the_latest_demo_brings_a_copy_of_its_simulated_patterns(app, map_model, tmp_path):
    """So that a student who skipped the queue can explain the demo model's patterns; a user's own data never."""
    import shutil

    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset

    theirs = write_dataset(
        simulate_dataset(per_class=3, phases=["austenite", "ferrite"], size=32, seed=1), tmp_path / "d.h5"
    )
    shutil.copytree(map_model, tmp_path / "store" / "demo-0123456789ab")
    card_file = tmp_path / "store" / "demo-0123456789ab" / "model.json"
    card = json.loads(card_file.read_text())
    card["training"]["dataset_path"] = str(theirs)
    card_file.write_text(json.dumps(card))
    app.run()
    next(b for b in app.button if b.label.startswith("See the latest demo")).click().run()
    assert not app.exception
    copy = Path(app.session_state["dataset_path"])
    assert copy != theirs and copy.read_bytes() == theirs.read_bytes() and app.session_state["session_id"] in str(copy)
    assert "Dataset: **demo**" in [c.value for c in app.sidebar.caption]
    reloaded = reloaded_app(app.session_state["session_id"])  # named as before (it said the copy's file name)
    assert "Dataset: **demo**" in [c.value for c in reloaded.sidebar.caption]
    card["training"]["dataset"] = "single-phase scans"  # recorded patterns: not offered
    card_file.write_text(json.dumps(card))
    other = AppTest.from_file(APP, default_timeout=120).run()
    next(b for b in other.button if b.label.startswith("See the latest demo")).click().run()
    assert not other.exception and "dataset_path" not in other.session_state


def test_phase_map_demo_end_to_end(app, monkeypatch):
    """The demo map trains a model, simulates a scan, maps it; the page shows maps, accuracy and exports."""
    from ebsd_core import workflows
    from pages.common import job_manager

    tiny = workflows.DemoMapSettings(shots=4, val_per_class=2, pattern_size=32, input_size=32, epochs=1)
    monkeypatch.setattr(workflows, "DEMO_MAP", tiny)
    app.switch_page("pages/phasemap.py").run()
    app.number_input[0].set_value(10)
    app.number_input[1].set_value(12)
    next(b for b in app.button if b.label == "Run the demo map").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    assert state.result["points"] == 120 and state.result["accuracy"] is not None
    app.session_state["map_path"] = state.result["map"]
    app.session_state["map_scan"] = state.result["scan"]
    app.run()
    assert not app.exception and not app.error
    assert any("Map accuracy" in m.label for m in app.metric)
    charts = [c.proto.spec for c in app.get("plotly_chart")]
    assert any("confidence" in spec for spec in charts) and any("difference" in spec for spec in charts)
    assert len(app.get("download_button")) == 5
    # made on the click; a click that also reran the page raced it and lost the file (see common.download_button)
    assert all(b.proto.ignore_rerun and b.proto.deferred_file_id for b in app.get("download_button"))


def test_a_demo_map_takes_the_grains_of_a_real_maps_indexing_file(app, monkeypatch, map_model, map_scan_file, tmp_path):
    """The CLI's simulate-map --layout had no place on the dashboard: a teacher could show Voronoi grains only, not
    a real duplex steel's. A file of no use is named with the reason."""
    import shutil

    from orix import io as orix_io
    from orix.crystal_map import CrystalMap

    from ebsd_core import workflows
    from ebsd_core.io.orientations import load_crystal_map
    from ebsd_core.io.readers import open_patterns
    from ebsd_core.map_export import export_map
    from ebsd_core.phasemap import load_phase_map, map_scan
    from ebsd_core.store import load_model
    from pages.common import job_manager

    model, card = load_model(map_model)
    layout = export_map(map_scan(model, card, open_patterns(map_scan_file), cleanup=False), tmp_path / "real.ang")
    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")  # it knows both: no training
    monkeypatch.setattr(workflows, "DEMO_MAP", workflows.DemoMapSettings(pattern_size=32, input_size=32, epochs=1))
    app.switch_page("pages/phasemap.py").run()
    app.selectbox(key="map_model").select("duplex").run()
    app.selectbox[1].select("Austenite + ferrite (duplex steel)").run()
    app.number_input(key="demo_rows").set_value(12).run()
    app.radio(key="demo_grains").set_value("Of a real map").run()
    assert not [b for b in app.button if b.label == "Run the demo map"]  # until a file is given
    uploader = lambda: next(u for u in app.file_uploader if u.label.startswith("Indexing file"))  # noqa: E731
    uploader().set_value([("broken.ang", b"# not a map", "text/plain")]).run()
    assert any("broken.ang" in e.value for e in app.error)
    big = CrystalMap.empty((301, 301), step_sizes=(1, 1))  # larger than a demo scan takes
    big.phases = load_crystal_map(layout).phases
    orix_io.save(str(tmp_path / "big.ang"), big)
    uploader().set_value([("big.ang", (tmp_path / "big.ang").read_bytes(), "text/plain")]).run()
    assert any("big.ang: 301 x 301 points: a demo scan takes up to 90,000" in e.value for e in app.error)
    assert not [b for b in app.button if b.label == "Run the demo map"]
    uploader().set_value([("real.ang", layout.read_bytes(), "text/plain")]).run()
    assert any(c.value.startswith("real.ang: 8 x 10 points of ") for c in app.caption)
    app.radio(key="demo_grains").set_value("Voronoi").run()
    app.radio(key="demo_grains").set_value("Of a real map").run()  # the file is still given (it was emptied)
    assert any(c.value.startswith("real.ang: 8 x 10 points of ") for c in app.caption)
    next(b for b in app.button if b.label == "Run the demo map").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    assert state.result["points"] == 80 and state.result["model_name"] == card.name
    mapped = load_phase_map(state.result["map"])  # the scan's phases are the real map's, point by point
    grains = workflows.demo_layout(("austenite", "ferrite"), (0, 0), layout)
    real = np.array([m.space_group for m in grains.materials])[grains.phase.ravel()]
    assert mapped.nav_shape == (8, 10)
    assert np.array([p.space_group for p in mapped.phases])[mapped.truth].tolist() == real.tolist()
    app.radio(key="demo_grains").set_value("Voronoi").run()  # the rows set before are kept
    assert (app.number_input(key="demo_rows").value, app.number_input(key="demo_cols").value) == (12, 50)


def test_regions_of_a_map_make_a_dataset_and_the_scan_is_mapped_again_with_another_model(
    app, map_model, map_scan_file, tmp_path
):
    """Few-shot training on a scan's own patterns: label a grain of each phase on its map, make a dataset of them,
    and map the scan again with the model trained on it (the upload is gone once the page was left)."""
    import shutil

    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.io.readers import open_patterns
    from ebsd_core.phasemap import map_scan, save_phase_map
    from ebsd_core.store import list_models, load_model, read_card
    from pages.common import job_manager

    for name in ("duplex", "other"):
        shutil.copytree(map_model, tmp_path / "store" / name)
    model, card = load_model(tmp_path / "store" / "duplex")
    phase_map = map_scan(model, card, open_patterns(map_scan_file), cleanup=False)
    app.session_state["map_path"] = str(save_phase_map(phase_map, tmp_path / "map.npz"))
    app.session_state["map_scan"] = str(map_scan_file)
    app.session_state["model_name"] = "duplex"
    app.switch_page("pages/phasemap.py").run()
    assert not app.exception and not app.error

    def add_region(rows, cols, group):
        for label, value in zip(("First row", "Last row", "First column", "Last column"), (*rows, *cols)):
            next(n for n in app.number_input if n.label == label).set_value(value)
        next(s for s in app.selectbox if s.label == "Space group of the region").select(group).run()
        next(b for b in app.button if b.label == "Add the region").click().run()

    add_region((0, 1), (0, 2), 225)
    add_region((5, 7), (7, 9), 229)
    add_region((1, 2), (1, 3), 229)  # over the first region, another phase: refused, named
    assert any("overlap but name different space groups" in e.value for e in app.error)
    assert next(d.value for d in app.dataframe if "points" in d.value.columns)["points"].tolist() == [6, 9]
    next(b for b in app.button if b.label == "Make a dataset of these regions").click().run()
    assert not app.exception
    dataset = read_dataset(app.session_state["dataset_path"])
    assert dataset.class_counts() == {"Fm-3m": 6, "Im-3m": 9}
    assert any(s.value.startswith("Dataset ready: 15 patterns of 2 regions") for s in app.success)
    assert any(w.value.startswith("Im-3m: 1 region; label 4 grains or more of each phase") for w in app.warning)

    app.switch_page("pages/train.py").run()  # from the model the scan was mapped with, which knows both phases
    assert next(s for s in app.selectbox if s.label == "Transfer starts from").value == "duplex"
    assert not [c for c in app.caption if c.value.startswith("No saved model knows just these phases")]
    train_on_the_page(app, "grains")
    assert any(i.value.startswith("Its test patterns are other points of the labelled regions") for i in app.info)
    app.switch_page("pages/results.py").run()
    assert any(m.label == "Other points of its regions" for m in app.metric)
    trained = next((tmp_path / "store").glob("grains-transfer-k*"))
    assert read_card(trained).initialisation == ("saved model", "duplex")
    listed = {m["name"]: m for m in list_models(tmp_path / "store")}
    assert listed[trained.name]["kind"] == "from saved model duplex"
    # which learnt from simulated austenite and ferrite: they are rehearsed alongside the regions, by default
    assert read_card(trained).training["rehearsal"]["materials"] == ["austenite", "ferrite"]

    app.switch_page("pages/phasemap.py").run()
    app.selectbox(key="map_model").select("other").run()
    next(b for b in app.button if b.label == "Map duplex_scan.h5 with other").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    app.run()  # the finished job's map becomes the page's
    assert not app.exception and not app.error
    assert "Mapped with other." in [c.value for c in app.caption]
    assert not [b for b in app.button if b.label.startswith("Map duplex_scan.h5 with")]  # mapped with the chosen one


def test_a_model_fine_tuned_on_the_materials_it_learnt_from_trains_without_rehearsal(app, map_model, tmp_path):
    """Rehearsal, on by default from a model trained on simulations, has nothing to add when the dataset holds every
    material the model learnt from: it is left out, and said so, instead of failing the job."""
    import shutil

    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset
    from ebsd_core.store import read_card
    from pages.common import job_manager

    shutil.copytree(map_model, tmp_path / "store" / "duplex")
    pair = simulate_dataset(per_class=12, phases=["austenite", "ferrite"], size=32, seed=6)
    app.session_state["dataset_path"] = str(write_dataset(pair, tmp_path / "pair.h5"))
    app.session_state["model_name"] = "duplex"
    app.switch_page("pages/train.py").run()
    next(s for s in app.selectbox if s.label == "Transfer starts from").select("duplex")
    next(n for n in app.number_input if n.label == "Epochs").set_value(1)
    next(n for n in app.number_input if n.label == "Test-time views").set_value(1)
    next(t for t in app.text_input if t.label == "Model name prefix").set_value("again")
    next(b for b in app.button if b.label == "Start training").click().run()
    assert "Rehearsal left out: this dataset holds every material duplex learnt from." in [i.value for i in app.info]
    state = job_manager().wait(app.session_state["train_job"], timeout=600)
    assert state.status == "done", state.error
    trained = read_card(next((tmp_path / "store").glob("again-transfer-k*")))
    assert trained.initialisation == ("saved model", "duplex") and "rehearsal" not in trained.training


def test_regions_dataset_without_a_model_of_its_phases_is_told_where_to_get_one(app, map_scan_file, tmp_path):
    from ebsd_core.assemble import MapRegion, dataset_from_regions
    from ebsd_core.io.dataset import write_dataset
    from ebsd_core.io.readers import open_patterns

    regions = [MapRegion(225, (0, 1), (0, 2)), MapRegion(229, (5, 7), (7, 9))]
    dataset = dataset_from_regions(open_patterns(map_scan_file), regions)
    app.session_state["dataset_path"] = str(write_dataset(dataset, tmp_path / "regions.h5"))
    app.switch_page("pages/train.py").run()
    assert not app.exception
    assert next(s for s in app.selectbox if s.label == "Transfer starts from").value == "ImageNet weights"
    assert next(t for t in app.text_input if t.label.startswith("Shots per class")).value == "3"  # of 6 Fm-3m
    hint = next(c.value for c in app.caption if c.value.startswith("No saved model knows just these phases"))
    assert "(Fm-3m, Im-3m)" in hint and "**Data**: Simulate" in hint


def test_regions_training_starts_from_the_mapping_model_of_more_phases_and_rehearses_it(
    app, map_model, map_scan_file, tmp_path
):
    """A scan mapped with a model of more space groups than its regions name (the six-class one, say), trained on
    simulated patterns: the regions' training starts from it, rehearsing its materials (on a simulated Ni/Ni3Al scan
    that beat ImageNet, 0.86 and 0.96 against 0.75 and 0.83), and the page still says a model of the scan's phases
    alone does better, naming such models when the store has them."""
    import shutil

    from ebsd_core.assemble import MapRegion, dataset_from_regions
    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset
    from ebsd_core.io.readers import open_patterns
    from ebsd_core.store import read_card, save_model
    from ebsd_core.train import TrainConfig, train_model

    three = simulate_dataset(per_class=8, phases=["austenite", "ferrite", "nial"], size=32, seed=3)
    config = TrainConfig(shots=4, epochs=1, input_size=32, batch_size=8, min_steps_per_epoch=1, val_per_class=2)
    result = train_model(three, config)
    save_model(result.model, result.card, tmp_path / "store" / "three")
    regions = [MapRegion(225, (0, 1), (0, 2)), MapRegion(229, (5, 7), (7, 9))]
    dataset = dataset_from_regions(open_patterns(map_scan_file), regions)
    app.session_state["dataset_path"] = str(write_dataset(dataset, tmp_path / "regions.h5"))
    app.session_state["model_name"] = "three"  # the model the scan was mapped with
    app.switch_page("pages/train.py").run()
    assert not app.exception
    assert next(s for s in app.selectbox if s.label == "Transfer starts from").value == "three"
    assert next(r for r in app.radio if r.label.startswith("Rehearsal")).value == "its materials"
    assert any(c.value.startswith("No saved model knows just these phases") for c in app.caption)
    assert not any("just these phases: starting from" in c.value for c in app.caption)
    train_on_the_page(app, "grains")
    trained = read_card(next((tmp_path / "store").glob("grains-transfer-k*")))
    assert trained.initialisation == ("saved model", "three") and trained.class_symbols == ["Fm-3m", "Im-3m"]
    assert trained.training["rehearsal"]["materials"] == ["austenite", "ferrite"]  # its NiAl is of no class here
    # models of just these phases are now in the store: the one just trained, and one of simulated patterns
    shutil.copytree(map_model, tmp_path / "store" / "duplex")
    app.session_state["model_name"] = "three"
    app.switch_page("pages/train.py").run()
    assert next(s for s in app.selectbox if s.label == "Transfer starts from").value == "three"
    hint = next(c.value for c in app.caption if "just these phases: starting from" in c.value)
    assert hint.startswith(f"**duplex** (simulated Austenite, Ferrite) and **{trained.name}** know just these phases")


def plotted(values) -> np.ndarray:
    """An array of a plotly figure's JSON, which writes numeric arrays as base64 ({"dtype", "bdata"})."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values)


def test_a_line_scan_is_drawn_stretched_not_as_a_sliver(app, tmp_path):
    """A map of 1 x 500 points drawn with square points was less than a pixel tall."""
    from ebsd_core.phasemap import MapPhase, PhaseMap, save_phase_map

    probabilities = np.random.default_rng(0).dirichlet([1, 1], 500).astype(np.float32)
    phases = [MapPhase("Ni", 225, 3.52, "#1f77b4"), MapPhase("Ni3Al", 221, 3.57, "#ff7f0e")]
    line = PhaseMap((1, 500), phases, probabilities, np.ones(500, np.float32), 0.5, source="line.h5")
    app.session_state["map_path"] = str(save_phase_map(line, tmp_path / "line.npz"))
    app.session_state["map_scan"] = str(tmp_path / "line.h5")
    app.switch_page("pages/phasemap.py").run()
    assert not app.exception
    figure = json.loads(next(c.proto.spec for c in app.get("plotly_chart") if '"text":"phase"' in c.proto.spec))
    assert "scaleanchor" not in figure["layout"]["yaxis"] and figure["layout"]["height"] == 160 + 40


def test_a_large_map_is_drawn_at_every_few_points_and_stays_clickable(app, tmp_path):
    """A 1000 x 1000 map drawn whole took 26 s to show and 18 s of server time at every click, and one of
    2000 x 2000 exceeded Streamlit's 200 MB message; drawn at every 5th row and column, every point drawn takes a
    click and names its own row and column."""
    from ebsd_core.phasemap import MapPhase, PhaseMap, save_phase_map

    n = 1000 * 1000
    probabilities = np.random.default_rng(0).dirichlet([1, 1], n).astype(np.float32)
    phases = [MapPhase("Ni", 225, 3.52, "#1f77b4"), MapPhase("Ni3Al", 221, 3.57, "#ff7f0e")]
    big = PhaseMap((1000, 1000), phases, probabilities, np.ones(n, np.float32), 0.5, source="big.h5")
    app.session_state["map_path"] = str(save_phase_map(big, tmp_path / "big.npz"))
    app.session_state["map_scan"] = str(tmp_path / "big.h5")
    app.switch_page("pages/phasemap.py").run()
    assert not app.exception
    assert any("one point in 5 along each row and column (40,000 of 1,000,000 points" in c.value for c in app.caption)
    figure = json.loads(next(c.proto.spec for c in app.get("plotly_chart") if '"text":"phase"' in c.proto.spec))
    heatmap, markers = figure["data"]
    # drawn to the edges of its points, not padded for the click markers (a 3 x 3 map was drawn at 2/3 of the size
    # of its confidence map)
    assert figure["layout"]["xaxis"]["range"] == [-2.5, 997.5] and figure["layout"]["yaxis"]["range"] == [997.5, -2.5]
    # and at the size of the confidence map beside it, whose colour bar made it smaller (Chromium: 302 x 258 px
    # against 252 x 216 on a 100 x 117 map)
    confidence = json.loads(
        next(c.proto.spec for c in app.get("plotly_chart") if '"text":"confidence"' in c.proto.spec)
    )
    assert figure["layout"]["height"] == confidence["layout"]["height"] == 380 + 40  # square: as tall as wide
    assert [f["layout"]["margin"] for f in (figure, confidence)] == 2 * [
        {"autoexpand": False, "l": 10, "r": 60, "t": 30, "b": 10}
    ]
    assert len(plotted(heatmap["y"])) == len(plotted(heatmap["x"])) == 200 and list(plotted(heatmap["x"])[:3]) == [
        0,
        5,
        10,
    ]
    assert len(plotted(markers["x"])) == 40_000 and plotted(markers["y"])[-1] == 995  # clickable, at its own row
    index = 995 * 1000 + 995
    x_um, y_um, confidence = plotted(markers["customdata"]).reshape(-1, 3)[-1]
    assert (x_um, y_um, markers["text"][-1]) == (995, 995, phases[int(probabilities[index].argmax())].label)
    assert confidence == pytest.approx(probabilities[index].max())
    # a scale bar, as its PNG has: a fifth of its 1,000 points 1 µm apart, in its lower right corner
    (bar,) = [shape for shape in figure["layout"]["shapes"] if shape["type"] == "line"]
    assert (bar["x0"], bar["x1"]) == (757.5, 957.5)
    assert [a["text"] for a in figure["layout"]["annotations"]] == ["200 µm"]


def test_explain_page_shows_gradcam_and_band_numbers(app, monkeypatch, map_model, map_scan_file):
    import shutil

    from ebsd_core.io.dataset import read_dataset

    target = Path(os.environ["EBSD_MODEL_STORE"]) / "duplex"
    shutil.copytree(map_model, target)
    app.switch_page("pages/explain.py").run()
    app.session_state["map_scan"] = str(map_scan_file)
    app.run()
    app.radio[0].set_value("gradcam").run()
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and not app.error
    assert any("Evidence on Kikuchi bands" in m.label for m in app.metric)
    # a map of rows and columns, which the scan's file gives, even with no phase map of it in this session
    headline = next(m.value for m in app.markdown if m.value.startswith("Row 0, column 0: "))
    assert headline.startswith(("Row 0, column 0: predicted **", "Row 0, column 0: **unknown**: top class **"))
    truth = {"austenite": "**Fm-3m** (Austenite)", "ferrite": "**Im-3m** (Ferrite)"}
    assert headline.endswith(f"; true class: {truth[read_dataset(map_scan_file).material[0]]}")  # the scan's labels
    assert len(app.get("image")) >= 1
    app.radio[0].set_value("activations").run()  # a layer's response has no class to explain: no such box
    assert [s.label for s in app.selectbox if s.label == "Class to explain"] == []
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and not app.error and len(app.get("image")) >= 1
    # any layer, as the CLI's --layer (the page offered none: a middle one's 8 x 8 px maps, unreadable)
    picker = next(s for s in app.selectbox if s.label == "Layer (input to output)")
    assert picker.options[0].startswith("conv_stem (") and picker.options[-1].startswith("conv_head (")
    picker.set_value("conv_stem").run()
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and not app.error
    assert any("conv_stem" in c for c in app.get("image")[0].proto.imgs[0].caption.split("\n"))
    app.radio[0].set_value("gradcam").run()  # Grad-CAM at any layer too: the last by default
    picker = next(s for s in app.selectbox if s.label == "Layer (input to output)")
    assert picker.value == "conv_head" and picker.options[picker.index].startswith("conv_head (")
    picker.set_value("blocks.1.1.conv_dw").run()
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and not app.error
    assert "by the maps of blocks.1.1.conv_dw" in app.get("image")[0].proto.imgs[0].caption


def test_a_patterns_shap_figures_take_the_pages_width(app, tiny_dataset, tmp_path):
    """shap's plot of every class (a strip of seven panels) and the pattern's own were drawn in half the page: on a
    1,024 px screen their class names were unreadable. They now lie one under the other; filter grids side by side."""
    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.train import TrainConfig
    from ebsd_core.workflows import train_evaluate_save

    config = TrainConfig(shots=2, epochs=1, input_size=32, batch_size=8, views=1)
    train_evaluate_save(read_dataset(tiny_dataset), config, tmp_path / "store" / "six", dataset_path=tiny_dataset)
    app.session_state["dataset_path"] = str(tiny_dataset)
    app.switch_page("pages/explain.py").run()
    app.radio[0].set_value("shap").run()
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and not app.error and len(app.get("image")) == 2
    assert sum(len(column.get("image")) for column in app.columns) == 0
    app.radio[0].set_value("filters").run()
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and len(app.get("image")) >= 2  # fine-tuned and ImageNet filters, compared
    assert sum(len(column.get("image")) for column in app.columns) == len(app.get("image"))


def test_a_pattern_sent_from_the_phase_map_is_the_scans_not_the_datasets(app, map_model, map_scan_file, tiny_dataset):
    """Found on review: "Explain this pattern" opened that index of the session's dataset, listed first."""
    import shutil

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    app.session_state["dataset_path"] = str(tiny_dataset)
    app.session_state["map_scan"] = str(map_scan_file)
    app.session_state["explain_index"], app.session_state["explain_from"] = 7, str(map_scan_file)
    app.switch_page("pages/explain.py").run()
    assert not app.exception
    assert next(s for s in app.selectbox if s.label == "Patterns from").value == f"phase-map scan: {map_scan_file.name}"
    assert [(n.label, n.value) for n in app.number_input] == [("Row (0 to 7)", 0), ("Column (0 to 9)", 7)]
    # another source and pattern chosen stay while the filters are shown (they went back to the ones sent)
    next(s for s in app.selectbox if s.label == "Patterns from").set_value(f"dataset: {tiny_dataset.name}").run()
    next(n for n in app.number_input if n.label.startswith("Pattern index")).set_value(3).run()
    app.radio(key="explain_method").set_value("filters").run()
    app.radio(key="explain_method").set_value("shap").run()
    assert next(s for s in app.selectbox if s.label == "Patterns from").value == f"dataset: {tiny_dataset.name}"
    assert next(n for n in app.number_input if n.label.startswith("Pattern index")).value == 3
    app.switch_page("pages/results.py").run()
    app.switch_page("pages/explain.py").run()  # and while another page is visited
    assert next(s for s in app.selectbox if s.label == "Patterns from").value == f"dataset: {tiny_dataset.name}"
    assert next(n for n in app.number_input if n.label.startswith("Pattern index")).value == 3


def test_a_pattern_uploaded_to_explain_stays_while_the_filters_hide_its_uploader(app, map_model, tiny_dataset):
    """A pattern of one's own was gone after a look at the filters (the uploader, hidden, was emptied); kept, it does
    not take the place of another source chosen since."""
    import shutil

    from ebsd_core.io.dataset import read_dataset

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    app.session_state["dataset_path"] = str(tiny_dataset)
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(read_dataset(tiny_dataset).patterns[0])).save(buffer, "PNG")
    app.switch_page("pages/explain.py").run()
    app.radio(key="explain_method").set_value("gradcam").run()
    app.file_uploader[0].set_value([("my_grain.png", buffer.getvalue(), "image/png")]).run()

    def source() -> str:
        return next(s for s in app.selectbox if s.label == "Patterns from").value

    assert source() == "upload: my_grain.png"
    app.radio(key="explain_method").set_value("filters").run()
    app.radio(key="explain_method").set_value("gradcam").run()
    assert source() == "upload: my_grain.png" and not app.exception
    next(s for s in app.selectbox if s.label == "Patterns from").set_value(f"dataset: {tiny_dataset.name}").run()
    app.radio(key="explain_method").set_value("filters").run()
    app.radio(key="explain_method").set_value("gradcam").run()
    assert source() == f"dataset: {tiny_dataset.name}"
    assert "upload: my_grain.png" in next(s for s in app.selectbox if s.label == "Patterns from").options


def test_a_folder_of_ones_own_patterns_is_explained(app, map_model, map_scan_file):
    """Explain took one file: a folder of images (class folders, as the Data page takes them) had to be zipped, or
    made a dataset on Data first. It is picked as the folder it is, as on Phase map and Results, and its class folders
    give each pattern's true class."""
    import shutil

    from ebsd_core.io.dataset import read_dataset

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    scan = read_dataset(map_scan_file)
    folder = {"austenite": "Fm-3m", "ferrite": "Im-3m"}
    images = []
    for index in range(4):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(scan.patterns[index])).save(buffer, "PNG")
        images.append((f"my grains/{folder[scan.material[index]]}/p{index}.png", buffer.getvalue(), "image/png"))
    app.switch_page("pages/explain.py").run()
    app.radio(key="explain_method").set_value("gradcam").run()
    next(u for u in app.file_uploader if u.label.startswith("Or a folder")).set_value(images).run()
    assert not app.exception and not app.error
    assert next(s for s in app.selectbox if s.label == "Patterns from").value == "upload: my grains"
    # its patterns are picked by their files' names, class folders in order (Fm-3m's first)
    named = sorted(name.partition("/")[2] for name, _, _ in images)
    picker = next(s for s in app.selectbox if s.label == "Pattern (4 images)")
    assert picker.options == named and picker.value == 0
    last = named[-1]  # an Im-3m pattern, picked by its name
    picker.set_value(3).run()
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and not app.error
    headline = next(m.value for m in app.markdown if m.value.startswith("Pattern 3 "))
    assert headline.startswith(f"Pattern 3 ({last}): "), headline  # the file, as it is known
    assert headline.endswith(f"; true class: **{last.split('/')[0]}**"), headline
    app.radio(key="explain_method").set_value("filters").run()  # kept while the filters hide the uploaders
    app.radio(key="explain_method").set_value("gradcam").run()
    assert next(s for s in app.selectbox if s.label == "Patterns from").value == "upload: my grains"
    shipped = KIKUCHIPY_DATA / "nordif"  # a real NORDIF acquisition of Ni, 3x3 patterns: its points by row and column
    acquisition = [(f"nordif/{f.name}", f.read_bytes(), "application/octet-stream") for f in sorted(shipped.iterdir())]
    next(u for u in app.file_uploader if u.label.startswith("Or a folder")).set_value(acquisition).run()
    assert not app.exception and not app.error
    assert next(s for s in app.selectbox if s.label == "Patterns from").value == "upload: nordif"
    assert [n.label for n in app.number_input] == ["Row (0 to 2)", "Column (0 to 2)"]


def test_an_image_of_a_folder_too_large_to_list_is_found_by_its_name(app, monkeypatch, map_model):
    """Found on review: a folder of over 10,000 images (too many names to send to the browser as a list) had its
    pattern picked by index alone: one image, known by its name, had to be counted to."""
    import shutil

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    root = Path(os.environ["EBSD_MODEL_STORE"]).parent / "root"
    (root / "export").mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 255, (8, 8), dtype=np.uint8)
    for index in range(10_001):  # pages/explain.py MOST_NAMED + 1 (importing a page runs it)
        Image.fromarray(pixels).save(root / "export" / f"p{index}.png")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(root))
    app.switch_page("pages/explain.py").run()
    app.radio(key="explain_method").set_value("gradcam").run()
    next(t for t in app.text_input if t.label.startswith("Scan path")).input("export").run()
    assert not app.exception and not app.error
    assert not [s for s in app.selectbox if s.label.startswith("Pattern (")]  # too many to list
    box = next(t for t in app.text_input if t.label == "Or an image's name")
    box.input("p123.png").run()
    assert not app.error and next(n for n in app.number_input if n.label.startswith("Pattern index")).value == 123
    assert next(t for t in app.text_input if t.label == "Or an image's name").value == ""  # done: the index shows it
    next(b for b in app.button if b.label == "Explain").click().run()
    assert any(m.value.startswith("Pattern 123 (p123.png): ") for m in app.markdown)
    next(t for t in app.text_input if t.label == "Or an image's name").input("p99999.png").run()
    assert app.error[0].value.endswith("export: no image named 'p99999.png' (it holds p0.png, p1.png, p2.png, ...)")
    assert next(n for n in app.number_input if n.label.startswith("Pattern index")).value == 123


def test_a_scan_on_the_server_is_explained_by_its_path(app, monkeypatch, map_model, map_scan_file, tiny_dataset):
    """A lab's scans lie on the server's disk, too large to upload for a look at one pattern: Explain reads one by its
    path, as Phase map and Results do, and its points by their rows and columns; a source chosen since stays chosen
    after a look at the filters."""
    import shutil

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    root = Path(os.environ["EBSD_MODEL_STORE"]).parent / "root"
    (root / "sample 7").mkdir(parents=True)
    shutil.copy(map_scan_file, root / "sample 7" / "scan.h5")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(root))
    app.session_state["dataset_path"] = str(tiny_dataset)
    app.switch_page("pages/explain.py").run()
    app.radio(key="explain_method").set_value("gradcam").run()

    def source():
        return next(s for s in app.selectbox if s.label == "Patterns from")

    assert source().value == f"dataset: {tiny_dataset.name}"
    next(t for t in app.text_input if t.label.startswith("Scan path")).input("sample 7").run()  # its one scan
    assert not app.exception and not app.error
    assert source().value == "server: sample 7/scan.h5"
    assert [n.label for n in app.number_input] == ["Row (0 to 7)", "Column (0 to 9)"]  # the scan's grid
    next(n for n in app.number_input if n.label.startswith("Column")).set_value(5).run()
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and not app.error
    assert any(m.value.startswith("Row 0, column 5: ") and "; true class: **" in m.value for m in app.markdown)
    source().set_value(f"dataset: {tiny_dataset.name}").run()
    app.radio(key="explain_method").set_value("filters").run()
    app.radio(key="explain_method").set_value("gradcam").run()
    assert source().value == f"dataset: {tiny_dataset.name}"
    assert next(t for t in app.text_input if t.label.startswith("Scan path")).value == "sample 7"  # kept, not chosen
    next(t for t in app.text_input if t.label.startswith("Scan path")).input("nowhere.h5").run()
    assert [e.value for e in app.error] == ["'nowhere.h5': no such file or folder under the data root"]


def test_a_point_of_the_phase_map_is_explained_by_row_and_column(app, map_model, map_scan_file, tmp_path):
    """The scan of the session's phase map is a grid: its points are chosen and named by row and column."""
    import shutil

    from ebsd_core.io.readers import open_patterns
    from ebsd_core.phasemap import map_scan, save_phase_map
    from ebsd_core.store import load_model

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    phase_map = map_scan(*load_model(map_model), open_patterns(map_scan_file), cleanup=False)  # 8 x 10 points
    app.session_state["map_path"] = str(save_phase_map(phase_map, tmp_path / "map.npz"))
    app.session_state["map_scan"] = str(map_scan_file)
    app.session_state["explain_index"], app.session_state["explain_from"] = 17, str(map_scan_file)
    app.switch_page("pages/explain.py").run()
    assert not app.exception
    assert not [n for n in app.number_input if n.label.startswith("Pattern index")]
    row, column = (next(n for n in app.number_input if n.label.startswith(name)) for name in ("Row", "Column"))
    assert (row.label, row.value, column.label, column.value) == ("Row (0 to 7)", 1, "Column (0 to 9)", 7)
    column.set_value(9).run()
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and not app.error
    assert app.session_state["explain_shown"][2] == 19
    assert any(m.value.startswith("Row 1, column 9: ") for m in app.markdown)
    # the filters hide the point's pickers; back from them, the point, class and layer are the ones chosen (they went
    # back to the sent point, the predicted class and the last layer)
    next(s for s in app.selectbox if s.label == "Class to explain").set_value("Im-3m").run()
    layers = next(s for s in app.selectbox if s.label.startswith("Layer"))
    layers.set_value(layers.options[1]).run()
    app.radio(key="explain_method").set_value("filters").run()
    app.radio(key="explain_method").set_value("gradcam").run()
    row, column = (next(n for n in app.number_input if n.label.startswith(name)) for name in ("Row", "Column"))
    assert (row.value, column.value) == (1, 9)
    assert next(s for s in app.selectbox if s.label == "Class to explain").value == "Im-3m"
    assert next(s for s in app.selectbox if s.label.startswith("Layer")).value == layers.options[1].split(" (")[0]
    app.session_state["explain_index"], app.session_state["explain_from"] = 40, str(map_scan_file)
    app.run()  # another point sent from the Phase map
    row, column = (next(n for n in app.number_input if n.label.startswith(name)) for name in ("Row", "Column"))
    assert (row.value, column.value) == (4, 0) and "explain_index" not in app.session_state


def test_phase_map_of_a_server_scan_without_cleanup(app, monkeypatch, map_model, map_scan_file):
    """A scan picked by server path, mapped with the grain clean-up turned off on the page."""
    state = map_on_the_page(app, monkeypatch, map_model, map_scan_file, cleanup=False)
    assert state.status == "done", state.error
    assert state.params["cleanup"] is False and state.result["grain_cleanup"] is False
    assert state.result["points"] == 80
    assert state.result["orientations"] == "simulation (true orientations)"
    assert any("Orientations: from simulation" in c.value for c in app.caption)
    app.run()  # the finished job's map, and its first point
    assert any(
        c.value.startswith("Orientation (Bunge Euler): φ1")
        and c.value.endswith("; from simulation (true orientations)")
        for c in app.caption
    )
    next(n for n in app.number_input if n.label == "Row").set_value(3).run()
    next(n for n in app.number_input if n.label == "Column").set_value(4).run()
    app.switch_page("pages/results.py").run()
    app.switch_page("pages/phasemap.py").run()  # to map it again, as it was set, and the point typed
    assert next(t for t in app.text_input if t.key == "map_server_path").value == map_scan_file.name
    assert next(c for c in app.checkbox if c.label == "Grain clean-up").value is False
    assert [next(n for n in app.number_input if n.label == label).value for label in ("Row", "Column")] == [3, 4]


def test_a_one_pattern_map_offers_every_export_but_ang_and_says_why(app, monkeypatch, map_model, tmp_path):
    """orix cannot write a one-point map as .ang (it failed inside orix): the button is off, with the reason."""
    import shutil

    from pages.common import job_manager

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)).save(tmp_path / "one.png")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(tmp_path))
    app.switch_page("pages/phasemap.py").run()
    next(t for t in app.text_input if t.key == "map_server_path").set_value("one.png").run()
    next(b for b in app.button if b.label == "Classify every pattern").click().run()
    assert job_manager().wait(app.session_state["map_job"], timeout=600).status == "done"
    app.run()
    buttons = {b.proto.label: b.proto for b in app.get("download_button")}
    assert buttons[".ang"].disabled and "map of one column cannot be written as .ang" in buttons[".ang"].help
    assert not any(buttons[suffix].disabled for suffix in (".ctf", ".h5", ".csv", ".png"))
    assert not app.exception


def test_a_scan_uploaded_on_the_phase_map_page_stays_when_the_page_is_left(app, map_model, map_scan_file):
    """A scan uploaded to map was gone after a look at another page (a large one took minutes to upload again)."""
    import shutil

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    app.switch_page("pages/phasemap.py").run()
    uploader = next(u for u in app.file_uploader if u.label.startswith("Scan file"))
    uploader.set_value([("my scan.h5", map_scan_file.read_bytes(), "application/octet-stream")]).run()
    assert any(b.label == "Classify every pattern" for b in app.button)
    app.switch_page("pages/explain.py").run()
    app.switch_page("pages/phasemap.py").run()
    assert not app.exception and any(b.label == "Classify every pattern" for b in app.button)
    assert any(c.value.startswith("my scan.h5, uploaded before, is still given") for c in app.caption)
    assert any(m.value.startswith("**my scan.h5**: 80 patterns") for m in app.markdown)  # named as uploaded


def test_a_file_uploaded_on_one_page_does_not_replace_one_of_its_name_kept_on_another(
    app, map_model, map_scan_file, tiny_dataset
):
    """Found on review: every upload of a session was saved in one folder, so a scan kept on the Phase map page was
    replaced by another file of its name uploaded on Data (every NORDIF scan is a Pattern.dat), and mapped in its
    place, and a NORDIF scan uploaded on one page lost its Setting.txt to another's."""
    import shutil

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    app.switch_page("pages/phasemap.py").run()
    uploader = next(u for u in app.file_uploader if u.label.startswith("Scan file"))
    uploader.set_value([("scan.h5", map_scan_file.read_bytes(), "application/octet-stream")]).run()
    assert any(m.value.startswith("**scan.h5**: 80 patterns") for m in app.markdown)
    app.switch_page("pages/data.py").run()
    app.file_uploader[0].set_value([("scan.h5", tiny_dataset.read_bytes(), "application/octet-stream")]).run()
    assert any(s.value.startswith("scan.h5: 96 labelled patterns") for s in app.success)
    app.switch_page("pages/phasemap.py").run()
    assert not app.exception and any(m.value.startswith("**scan.h5**: 80 patterns") for m in app.markdown)
    shipped = KIKUCHIPY_DATA / "nordif"  # a real NORDIF acquisition of Ni, 3x3 patterns
    nordif = [
        (name, (shipped / name).read_bytes(), "application/octet-stream") for name in ("Pattern.dat", "Setting.txt")
    ]
    uploader = next(u for u in app.file_uploader if u.label.startswith("Scan file"))
    uploader.set_value(nordif).run()
    app.switch_page("pages/explain.py").run()
    uploader = next(u for u in app.file_uploader if u.label.startswith("Explain a pattern of your own"))
    uploader.set_value(nordif[:1]).run()  # without its Setting.txt: refused, and the Phase map's scan keeps its own
    app.switch_page("pages/phasemap.py").run()
    assert not app.exception and not app.error
    assert any(m.value.startswith("**Pattern.dat**: 9 patterns") for m in app.markdown)


def test_a_dataset_uploaded_again_under_its_name_leaves_the_first_as_it_was(app, tiny_dataset, map_scan_file):
    """Found on review: a dataset .h5 uploaded on Data is used where it was saved, and another uploaded later under its
    name replaced it, under the models trained on it (their cards name that file)."""
    app.run()
    app.switch_page("pages/data.py").run()
    app.file_uploader[0].set_value([("data.h5", tiny_dataset.read_bytes(), "application/octet-stream")]).run()
    next(b for b in app.button if b.label == "Use these as the dataset").click().run()
    first = Path(app.session_state["dataset_path"])
    app.file_uploader[0].set_value([("data.h5", map_scan_file.read_bytes(), "application/octet-stream")]).run()
    next(b for b in app.button if b.label == "Use these as the dataset").click().run()
    assert not app.exception and Path(app.session_state["dataset_path"]) != first
    assert first.read_bytes() == tiny_dataset.read_bytes()


def test_a_mapped_scan_stays_when_another_of_its_name_is_uploaded(
    app, monkeypatch, map_model, map_scan_file, tiny_dataset
):
    """Found on review: a second upload of one name replaced the first in the session, so the map shown (its points'
    patterns, the regions to train on, a map again with another model) read the new file as the scan mapped."""
    import shutil

    import pages.common
    from pages.common import job_manager

    offered = []  # the file names of the downloads offered, which AppTest does not show
    button = pages.common.download_button
    monkeypatch.setattr(
        pages.common,
        "download_button",
        lambda label, data, name, *a, **k: (offered.append(name), button(label, data, name, *a, **k)),
    )
    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    app.switch_page("pages/phasemap.py").run()
    uploader = next(u for u in app.file_uploader if u.label.startswith("Scan file"))
    uploader.set_value([("my scan.h5", map_scan_file.read_bytes(), "application/octet-stream")]).run()
    next(b for b in app.button if b.label == "Classify every pattern").click().run()
    assert job_manager().wait(app.session_state["map_job"], timeout=600).status == "done"
    app.run()
    mapped = Path(app.session_state["map_scan"])
    # named as uploaded (not my_scan.h5, as the session's copy is named) wherever the map is
    assert any(h.value.startswith("my scan.h5: 8 x 10 points") for h in app.subheader), [h.value for h in app.subheader]
    assert "my scan.ang" in offered and "my scan.ctf" in offered  # its exports too
    app.switch_page("pages/explain.py").run()
    assert "phase-map scan: my scan.h5" in next(s for s in app.selectbox if s.label == "Patterns from").options
    app.switch_page("pages/phasemap.py").run()
    uploader = next(u for u in app.file_uploader if u.label.startswith("Scan file"))
    uploader.set_value([("my scan.h5", tiny_dataset.read_bytes(), "application/octet-stream")]).run()
    assert not app.exception and app.session_state["map_scan"] == str(mapped)
    assert mapped.read_bytes() == map_scan_file.read_bytes()


def test_phase_map_of_an_uploaded_nordif_scan(app, map_model):
    """A NORDIF Pattern.dat is mapped when its Setting.txt comes with it; two scans at once are refused, naming them."""
    import shutil

    from pages.common import job_manager

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    shipped = KIKUCHIPY_DATA / "nordif"  # a real NORDIF acquisition of Ni, 3x3 patterns
    names = ("Pattern.dat", "Setting.txt", "Background acquisition pattern.bmp")
    files = [(name, (shipped / name).read_bytes(), "application/octet-stream") for name in names]
    app.switch_page("pages/phasemap.py").run()
    uploader = next(u for u in app.file_uploader if u.label.startswith("Scan file"))
    uploader.set_value([*files, ("other.dat", files[0][1], "application/octet-stream")]).run()
    assert [e.value for e in app.error][0].startswith("several NORDIF scans at once (Pattern.dat, other.dat)")
    uploader = next(u for u in app.file_uploader if u.label.startswith("Scan file"))
    uploader.set_value([*files, ("scan.h5", b"\0", "application/octet-stream")]).run()
    assert [e.value for e in app.error] == ["one scan at a time: Pattern.dat, scan.h5 were given"]
    uploader = next(u for u in app.file_uploader if u.label.startswith("Scan file"))
    image = (shipped / names[2]).read_bytes()  # a scan exported as images, dragged as a folder: its files alone
    uploader.set_value([("p0.bmp", image, "image/bmp"), ("p1.bmp", image, "image/bmp")]).run()
    assert [e.value for e in app.error] == [
        "one scan at a time: p0.bmp, p1.bmp were given (a folder dragged onto an uploader arrives as its files alone, "
        "without its sub-folders: pick it in the uploader of folders below)"
    ]
    uploader = next(u for u in app.file_uploader if u.label.startswith("Scan file"))
    uploader.set_value(files[:2]).run()  # what the reader notices is said on this page too
    assert [w.value for w in app.warning] == [
        "Pattern.dat: no Background acquisition pattern.bmp beside it: only the dynamic background is removed"
    ]
    uploader = next(u for u in app.file_uploader if u.label.startswith("Scan file"))
    uploader.set_value(files).run()
    assert not app.exception and not app.error and not app.warning
    next(b for b in app.button if b.label == "Classify every pattern").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    assert state.result["points"] == 9
    app.run()  # its map, on which grains are labelled as on any other scan's
    for rows, group in (((0, 0), 225), ((2, 2), 221)):
        for label, value in zip(("First row", "Last row", "First column", "Last column"), (*rows, 0, 2)):
            next(n for n in app.number_input if n.label == label).set_value(value)
        next(s for s in app.selectbox if s.label == "Space group of the region").select(group).run()
        next(b for b in app.button if b.label == "Add the region").click().run()
    next(b for b in app.button if b.label == "Make a dataset of these regions").click().run()
    assert not app.exception and not app.error
    assert any(s.value.startswith("Dataset ready: 6 patterns of 2 regions") for s in app.success)


def test_phase_map_of_a_folder_of_images_asks_for_the_map_rows(app, monkeypatch, map_model, map_scan_file, tmp_path):
    """Images do not record the map's shape: the page asks for the rows and maps the folder in name order."""
    import shutil

    from pages.common import job_manager

    scan_as_images(map_scan_file, tmp_path / "exported", "p{index}.png")  # p2 before p10 in natural order
    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(tmp_path))
    app.switch_page("pages/phasemap.py").run()
    next(t for t in app.text_input if t.key == "map_server_path").set_value("exported").run()
    rows = next(n for n in app.number_input if n.label == "Map rows")
    assert rows.value == 8  # the divisor of 80 nearest its square root
    rows.set_value(7).run()
    assert any("80 patterns do not fill 7 rows" in e.value for e in app.error)
    assert not any(b.label == "Classify every pattern" for b in app.button)
    next(n for n in app.number_input if n.label == "Map rows").set_value(16).run()
    app.switch_page("pages/explain.py").run()
    app.switch_page("pages/phasemap.py").run()
    assert next(n for n in app.number_input if n.label == "Map rows").value == 16  # as typed, after another page
    next(n for n in app.number_input if n.label == "Map rows").set_value(8).run()
    next(c for c in app.checkbox if c.label == "Grain clean-up").uncheck().run()
    next(b for b in app.button if b.label == "Classify every pattern").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    assert state.result["nav_shape"] == [8, 10] and state.result["points"] == 80


def test_phase_map_of_images_named_by_their_points_takes_its_shape_from_them(
    app, monkeypatch, map_model, map_scan_file, tmp_path
):
    """Images named by their points (x{column}_y{row}) came column by column in name order, and the rows asked for
    laid them out scrambled. Their names give the map's shape: nothing is asked, and the map is the scan's. A point
    whose image is lost (an export cut short) is blank, read as unknown: the map is still made."""
    import shutil

    from pages.common import job_manager

    folder = scan_as_images(map_scan_file, tmp_path / "exported")
    (folder / "x3_y4.png").unlink()
    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(tmp_path))
    app.switch_page("pages/phasemap.py").run()
    next(t for t in app.text_input if t.key == "map_server_path").set_value("exported").run()
    assert not app.exception and not app.error
    assert [w.value for w in app.warning] == [
        "exported: 1 point of the 8 x 10 map that the images' names give has no readable image (row 4, column 3): "
        "drawn as a blank pattern, read as unknown"
    ]
    assert any(m.value == "**exported**: 80 patterns of 32x32 px, a map of 8 x 10 points" for m in app.markdown)
    assert not [n for n in app.number_input if n.label == "Map rows"]
    next(b for b in app.button if b.label == "Classify every pattern").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    assert state.result["nav_shape"] == [8, 10]
    assert state.result["accuracy"] is None  # images carry no truth: the map is checked against the scan's
    assert state.result["notes"][-1] == (
        "1 of 80 points have no image (index 43): none of the images' names gives them, or their images could not be "
        "read. There is nothing to classify, so they are unknown"
    )
    app.run()
    assert any("pattern at row 0, column 0 (x0_y0.png)" in c.proto.spec for c in app.get("plotly_chart"))
    next(n for n in app.number_input if n.label == "Row").set_value(4).run()
    next(n for n in app.number_input if n.label == "Column").set_value(3).run()
    assert any("pattern at row 4, column 3 (no image)" in c.proto.spec for c in app.get("plotly_chart"))
    # its point's hover: a blank pattern, whose tied probabilities are no confidence (they read 0.50)
    figure = json.loads(next(c.proto.spec for c in app.get("plotly_chart") if '"text":"phase"' in c.proto.spec))
    hover = figure["data"][0]
    assert np.asarray(hover["text"])[4, 3] == "unknown (blank pattern: no confidence)"
    confidence = plotted(hover["customdata"]).reshape(8, 10, 3)[..., 2]
    assert np.isnan(confidence[4, 3]) and np.isfinite(np.delete(confidence.ravel(), 43)).all()
    # its probabilities tie: no class read "alone", and nothing to explain
    assert any(
        c.value.startswith("A blank pattern (a dropped frame, a point without its image, an image") for c in app.caption
    )
    assert not any(c.value.startswith("After the grain clean-up") for c in app.caption)
    assert not any(b.label == "Explain this pattern" for b in app.button)
    # a point of it, by row and column: the image named by that point
    assert any(shown.startswith("Row 2, column 7 (x7_y2.png): ") for shown in explained_point(app, 2, 7))
    next(n for n in app.number_input if n.label.startswith("Row (")).set_value(4).run()
    next(n for n in app.number_input if n.label.startswith("Column (")).set_value(3).run()
    next(b for b in app.button if b.label == "Explain").click().run()
    assert app.error[0].value.endswith(
        "exported: point 43 (row 4, column 3) has no image (none of the images' names gives it, or its image could not "
        "be read): there is nothing to explain; pick another"
    )


def test_phase_map_of_a_large_scan_with_an_image_damaged_past_its_header_is_made_with_that_point_unknown(
    app, monkeypatch, map_model, map_scan_file, tmp_path
):
    """Found on review: in a folder too large to decode when opened, an image whose damage its header does not show
    stopped the map where the run reached it. The map is now made, with that point unknown and named in its notes; the
    point's panel and Explain say why its pattern cannot be shown."""
    import shutil

    from ebsd_core.io import images
    from pages.common import job_manager

    monkeypatch.setattr(images, "IN_MEMORY_BYTES", 0)
    folder = scan_as_images(map_scan_file, tmp_path / "exported")
    damage_pixels(folder / "x3_y4.png")
    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(tmp_path))
    app.switch_page("pages/phasemap.py").run()
    next(t for t in app.text_input if t.key == "map_server_path").set_value("exported").run()
    assert not app.exception and not app.error and not app.warning
    next(b for b in app.button if b.label == "Classify every pattern").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    why = "x3_y4.png: cannot read this image (its image data is damaged: the header reads, the pixels do not)"
    assert state.result["notes"][-1] == (
        f"1 of 80 images could not be read when the run reached it (index 43; {why}). Read as a blank pattern, it is "
        "unknown"
    )
    app.run()
    next(n for n in app.number_input if n.label == "Row").set_value(4).run()
    next(n for n in app.number_input if n.label == "Column").set_value(3).run()
    assert not app.exception and any(w.value == f"{folder}/{why}" for w in app.warning)
    assert any(c.value.startswith("A blank pattern (") for c in app.caption)
    assert not any(b.label == "Explain this pattern" for b in app.button)
    app.switch_page("pages/explain.py").run()
    app.radio(key="explain_method").set_value("gradcam").run()
    next(n for n in app.number_input if n.label.startswith("Row (")).set_value(4).run()
    next(n for n in app.number_input if n.label.startswith("Column (")).set_value(3).run()
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and app.error[0].value.endswith(f"{folder}/{why}")


def explained_point(app, row: int, column: int) -> list[str]:
    """What the Explain page shows of the point at ``row``, ``column`` of the scan it offers first, explained with
    Grad-CAM."""
    app.switch_page("pages/explain.py").run()
    app.radio(key="explain_method").set_value("gradcam").run()
    next(n for n in app.number_input if n.label.startswith("Row (")).set_value(row).run()
    next(n for n in app.number_input if n.label.startswith("Column (")).set_value(column).run()
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and not app.error
    return [m.value for m in app.markdown]


def test_phase_map_of_an_uploaded_folder_of_images_or_nordif_acquisition(app, map_model, map_scan_file):
    """A scan exported as images, or a NORDIF acquisition, picked as the folder it is: no zip to make first."""
    import shutil

    from PIL import Image

    from ebsd_core.io.readers import open_patterns
    from pages.common import job_manager

    def folder_uploader():
        return next(u for u in app.file_uploader if u.label.startswith("Or a folder"))

    def mapped_points() -> list[int]:
        next(b for b in app.button if b.label == "Classify every pattern").click().run()
        state = job_manager().wait(app.session_state["map_job"], timeout=600)
        assert state.status == "done", state.error
        return state.result["nav_shape"]

    images = []
    for index, pattern in enumerate(open_patterns(map_scan_file).batch(0, 12)):
        buffer = io.BytesIO()
        Image.fromarray(pattern).save(buffer, "PNG")
        images.append((f"exported scan/p{index}.png", buffer.getvalue(), "image/png"))  # p2 before p10
    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    app.switch_page("pages/phasemap.py").run()
    folder_uploader().set_value(images).run()
    assert not app.exception and not app.error
    assert next(n for n in app.number_input if n.label == "Map rows").value == 3
    assert mapped_points() == [3, 4]
    app.run()  # the finished map shown, and its first point with the file it was read from
    assert any("pattern at row 0, column 0 (p0.png)" in c.proto.spec for c in app.get("plotly_chart"))
    # a point of it: by its row and column, named by its file
    assert any(shown.startswith("Row 1, column 2 (p6.png): ") for shown in explained_point(app, 1, 2))
    app.switch_page("pages/phasemap.py").run()
    shipped = KIKUCHIPY_DATA / "nordif"  # a real NORDIF acquisition of Ni, 3x3 patterns
    acquisition = [(f"nordif/{f.name}", f.read_bytes(), "application/octet-stream") for f in sorted(shipped.iterdir())]
    folder_uploader().set_value(acquisition).run()
    assert not app.exception and not app.error
    assert not any(n.label == "Map rows" for n in app.number_input)  # Setting.txt gives the shape
    assert mapped_points() == [3, 3]
    scan_file = next(u for u in app.file_uploader if u.label.startswith("Scan file"))
    scan_file.set_value([("scan.h5", map_scan_file.read_bytes(), "application/octet-stream")]).run()
    assert [e.value for e in app.error] == [
        "one scan at a time: scan.h5 and the folder nordif were given: remove one of them"
    ]
    assert not any(b.label == "Classify every pattern" for b in app.button)


def test_a_scan_is_opened_once_while_its_map_is_looked_at(app, monkeypatch, map_model, tmp_path):
    """Opening a folder of images reads every file: reruns (a click on the map, a new row) reuse the opened scan."""
    import shutil

    from PIL import Image

    from ebsd_core.io import readers

    folder = tmp_path / "exported"
    folder.mkdir()
    for index in range(12):
        Image.fromarray(np.full((16, 16), index, np.uint8)).save(folder / f"p{index}.png")
    opened, real_open = [], readers.open_patterns

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(readers, "open_patterns", counting_open)
    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(tmp_path))
    app.switch_page("pages/phasemap.py").run()
    next(t for t in app.text_input if t.key == "map_server_path").set_value("exported").run()
    next(n for n in app.number_input if n.label == "Map rows").set_value(4).run()
    next(n for n in app.number_input if n.label == "Map rows").set_value(3).run()
    assert any("3 rows x 4 columns" in c.value for c in app.caption)
    assert opened == [str(folder)]


def test_phase_map_keeps_an_uploaded_hough_indexing(app, monkeypatch, map_model, map_scan_file, tmp_path):
    """A scan without orientations, and the vendor's .ang of it uploaded beside: the map's exports keep them. The
    upload stays for its scan after a look at another page (it was gone)."""
    import dataclasses
    import shutil

    from ebsd_core.io.dataset import read_dataset, write_dataset
    from ebsd_core.map_export import export_bytes
    from ebsd_core.phasemap import load_phase_map
    from pages.common import job_manager

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    scans = tmp_path / "scans"
    scans.mkdir()
    write_dataset(dataclasses.replace(read_dataset(map_scan_file), quaternions=None), scans / "patterns_only.h5")

    def ang_bytes(name, points, cols):
        return (name, scan_indexing(tmp_path / name, points=points, columns=cols).read_bytes(), "text/plain")

    monkeypatch.setenv("EBSD_DATA_ROOT", str(scans))
    app.switch_page("pages/phasemap.py").run()
    next(t for t in app.text_input if t.key == "map_server_path").set_value("patterns_only.h5").run()
    hough = next(u for u in app.file_uploader if u.label.startswith("Hough indexing"))
    hough.set_value(ang_bytes("other_scan.ang", 6, 3)).run()
    assert any("other_scan.ang: holds 6 points but the scan has 80 patterns" in e.value for e in app.error)
    assert not any(b.label == "Classify every pattern" for b in app.button)
    hough = next(u for u in app.file_uploader if u.label.startswith("Hough indexing"))
    hough.set_value(ang_bytes("hough.ang", 80, 10)).run()
    app.switch_page("pages/explain.py").run()
    app.switch_page("pages/phasemap.py").run()  # kept after a look at another page, for this scan only
    given = "hough.ang, uploaded before, is still given"
    assert any(c.value.startswith(given) for c in app.caption)
    shutil.copy(scans / "patterns_only.h5", scans / "another.h5")
    next(t for t in app.text_input if t.key == "map_server_path").set_value("another.h5").run()
    assert not any(c.value.startswith(given) for c in app.caption)
    next(t for t in app.text_input if t.key == "map_server_path").set_value("patterns_only.h5").run()
    assert any(c.value.startswith(given) for c in app.caption)
    next(b for b in app.button if b.label == "Classify every pattern").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    assert state.result["orientations"] == "hough.ang"
    app.run()  # its .ang: the one uploaded with the model's phases, its image quality the file's own
    assert "The .ang is hough.ang with the model's phases: its other columns and header its own." in [
        c.value for c in app.caption
    ]
    exported = export_bytes(load_phase_map(state.result["map"]), ".ang").decode().splitlines()
    uploaded = (tmp_path / "hough.ang").read_text().splitlines()
    assert [line.split()[:6] for line in exported[-80:]] == [line.split()[:6] for line in uploaded[-80:]]


def test_images_numbered_in_scan_order_are_laid_out_by_the_indexing_uploaded(
    app, monkeypatch, map_model, map_scan_file, tmp_path
):
    """Found on review: images numbered in scan order (EDAX OIM's export) were laid out by the rows asked for, and the
    scan's Hough indexing, uploaded after, was refused while the rows guessed did not match its map. The indexing is
    now asked first, and its map lays the images out: no rows to guess."""
    import shutil

    from pages.common import job_manager

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    scan_as_images(map_scan_file, tmp_path / "numbered", "p{number}.png")
    scan_indexing(tmp_path / "scan.ang")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(tmp_path))
    app.switch_page("pages/phasemap.py").run()
    next(t for t in app.text_input if t.key == "map_server_path").set_value("numbered").run()
    rows = next(n for n in app.number_input if n.label == "Map rows")
    assert rows.value == 8  # the squarest guess, 8 x 10, would be right here: say another
    rows.set_value(4).run()
    hough = next(u for u in app.file_uploader if u.label.startswith("Hough indexing"))
    hough.set_value([("scan.ang", (tmp_path / "scan.ang").read_bytes(), "text/plain")]).run()
    assert not app.exception and not app.error
    assert not [n for n in app.number_input if n.label == "Map rows"]
    assert any(c.value == "Map: 8 rows x 10 columns, as scan.ang records it." for c in app.caption)
    next(b for b in app.button if b.label == "Classify every pattern").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    assert state.result["nav_shape"] == [8, 10] and state.result["orientations"] == "scan.ang"


def test_phase_map_of_images_named_by_points_cut_short_is_laid_on_their_indexings_map(
    app, monkeypatch, map_model, map_scan_file, tmp_path
):
    """Found on review: a scan exported as images named by their points, whose export stopped before its last rows,
    had its Hough indexing of the whole scan refused ("holds 80 points but the scan has 60 patterns"). The indexing's
    map is now the map, said so, with those rows blank; their points' panel says they have no image, and regions
    over them are taken of the rows that have images."""
    import shutil

    from pages.common import job_manager

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    scan_as_images(map_scan_file, tmp_path / "exported", count=60)
    scan_indexing(tmp_path / "scan.ang")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(tmp_path))
    app.switch_page("pages/phasemap.py").run()
    next(t for t in app.text_input if t.key == "map_server_path").set_value("exported").run()
    hough = next(u for u in app.file_uploader if u.label.startswith("Hough indexing"))
    hough.set_value([("scan.ang", (tmp_path / "scan.ang").read_bytes(), "text/plain")]).run()
    assert not app.exception and not app.error
    assert [w.value for w in app.warning] == [
        "exported: its images' names give the first 6 of the 8 rows that scan.ang maps (an export cut short?): the "
        "last 2 rows are drawn blank, read as unknown"
    ]
    next(b for b in app.button if b.label == "Classify every pattern").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    assert state.result["nav_shape"] == [8, 10] and state.result["orientations"] == "scan.ang"
    app.run()
    (mean,) = [m for m in app.metric if m.label == "Mean confidence"]
    assert mean.proto.help.startswith("Of the 60 points with a pattern. Blank patterns (dropped frames, points")
    assert mean.proto.help.endswith("this map's 20 are left out, and are gaps in the confidence map.")
    next(n for n in app.number_input if n.label == "Row").set_value(7).run()
    next(n for n in app.number_input if n.label == "Column").set_value(2).run()
    assert not app.exception
    assert any(i.value == "Row 7, column 2: no image; the images' names stop before this row." for i in app.info)
    assert not any(b.label == "Explain this pattern" for b in app.button)


def test_build_a_prior_and_train_from_it(app, monkeypatch, tmp_path):
    """The Train page builds an EBSD prior without the dataset's phases, then a few-shot run starts from it."""
    from ebsd_core import prior
    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset
    from ebsd_core.rehearsal import REHEARSAL_PER_CLASS
    from ebsd_core.store import read_card
    from pages.common import job_manager

    monkeypatch.setattr(
        prior, "PAGE_SETTINGS", prior.PriorSettings(per_class=24, pattern_size=40, input_size=48, epochs=1)
    )
    data = write_dataset(
        simulate_dataset(per_class=12, phases=["austenite", "ferrite"], size=32, seed=2), tmp_path / "pair.h5"
    )
    app.session_state["dataset_path"] = str(data)
    app.switch_page("pages/train.py").run()
    assert next(m for m in app.multiselect if "must not see" in m.label).value == ["austenite", "ferrite"]
    next(t for t in app.text_input if t.label == "Prior name").set_value("duplex-prior")
    next(b for b in app.button if b.label == "Build the prior").click().run()
    state = job_manager().wait(app.session_state["train_job"], timeout=600)
    assert state.status == "done", state.error
    store = Path(os.environ["EBSD_MODEL_STORE"])
    made = read_card(store / "duplex-prior").training["prior"]
    assert made["excluded"] == ["austenite", "ferrite"]
    # simulated and trained like the dataset's 32 px patterns, not at the page's own sizes
    assert (made["settings"]["pattern_size"], made["settings"]["input_size"]) == (32, 32)

    app.run()
    assert not app.exception and not app.error
    # the prior just built is where transfer starts, unless the user chooses otherwise
    assert next(s for s in app.selectbox if s.label == "Transfer starts from").value == "duplex-prior"
    next(t for t in app.text_input if t.label.startswith("Shots per class")).set_value("2")
    next(n for n in app.number_input if n.label == "Epochs").set_value(1)
    next(t for t in app.text_input if t.label == "Model name prefix").set_value("from-prior")
    next(s for s in app.select_slider if s.label.startswith("Also train for cameras")).set_value(2)
    next(b for b in app.button if b.label == "Start training").click().run()
    state = job_manager().wait(app.session_state["train_job"], timeout=600)
    assert state.status == "done", state.error
    card = read_card(store / "from-prior-transfer-k2")
    assert card.training["config"]["weights_file"] == str(store / "duplex-prior")
    assert card.training["augment"]["resolution"] == 2  # the page's camera binning reached the training
    # rehearsal is on by default with a prior: the prior's other materials of the two classes
    rehearsal = card.training["rehearsal"]
    assert rehearsal["patterns"] == 2 * REHEARSAL_PER_CLASS and rehearsal["source"] == "prior"
    assert {"austenite", "ferrite"}.isdisjoint(rehearsal["materials"])
    assert card.initialisation == ("EBSD prior", "duplex-prior")
    # the next run starts from the prior again, as submitted (the model just trained is now the session's)
    app.run()
    assert app.session_state["model_name"] == "from-prior-transfer-k2"
    assert next(s for s in app.selectbox if s.label == "Transfer starts from").value == "duplex-prior"
    app.switch_page("pages/results.py").run()
    next(s for s in app.selectbox if s.label == "Model").set_value("from-prior-transfer-k2").run()
    assert next(m for m in app.metric if m.label == "Initialisation").value == "EBSD prior"


def test_the_prior_form_keeps_what_was_submitted_after_a_visit(app, tmp_path):
    """A prior refused (its name taken) and a look at Results to choose another: the materials left out and the
    name typed were back at their defaults, and a prior built on them would have seen the phases meant to be left
    out. The train form's name prefix, refused, is kept too."""
    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset

    data = write_dataset(simulate_dataset(per_class=4, phases=["ni", "w"], size=32, seed=2), tmp_path / "pair.h5")
    app.session_state["dataset_path"] = str(data)
    app.switch_page("pages/train.py").run()

    def exclude():
        return next(m for m in app.multiselect if "must not see" in m.label)

    def text(label: str):
        return next(t for t in app.text_input if t.label == label)

    assert exclude().value == ["ni", "w"]
    text("Model name prefix").set_value("../model")
    next(b for b in app.button if b.label == "Start training").click().run()
    assert any("not allowed" in e.value for e in app.error) and "train_job" not in app.session_state
    exclude().set_value(["ni", "ni3al", "w"])
    text("Prior name").set_value("../prior")
    next(b for b in app.button if b.label == "Build the prior").click().run()
    assert any("not allowed" in e.value for e in app.error) and "train_job" not in app.session_state
    app.switch_page("pages/results.py").run()
    app.switch_page("pages/train.py").run()
    assert exclude().value == ["ni", "ni3al", "w"]
    assert (text("Prior name").value, text("Model name prefix").value) == ("../prior", "../model")
    assert not app.exception


def test_model_and_prior_names_stay_in_the_store(app, tmp_path):
    """A name with a path in it (and shots that are not whole numbers) is refused with a message; no job starts.

    The pauses before each click keep the test honest about typed names: a default that changes with
    the clock once made Streamlit drop the typed name when the form was submitted a second later.
    """
    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset

    data = write_dataset(simulate_dataset(per_class=4, phases=["ni", "w"], size=32, seed=2), tmp_path / "pair.h5")
    app.session_state["dataset_path"] = str(data)
    app.switch_page("pages/train.py").run()
    next(t for t in app.text_input if t.label == "Model name prefix").set_value("../escape")
    time.sleep(1.1)
    next(b for b in app.button if b.label == "Start training").click().run()
    assert any("not allowed" in e.value for e in app.error) and "train_job" not in app.session_state
    next(t for t in app.text_input if t.label.startswith("Shots per class")).set_value("5.5")
    next(t for t in app.text_input if t.label == "Model name prefix").set_value("fine")
    time.sleep(1.1)
    next(b for b in app.button if b.label == "Start training").click().run()
    assert any("shots per class '5.5': give whole numbers from 1" in e.value for e in app.error)
    assert "train_job" not in app.session_state
    next(t for t in app.text_input if t.label.startswith("Shots per class")).set_value("5,²")  # isdigit() holds
    time.sleep(1.1)
    next(b for b in app.button if b.label == "Start training").click().run()
    assert any("shots per class '5,²': give whole numbers from 1" in e.value for e in app.error)
    assert "train_job" not in app.session_state
    next(t for t in app.text_input if t.label == "Prior name").set_value("../escape-prior")
    time.sleep(1.1)
    next(b for b in app.button if b.label == "Build the prior").click().run()
    assert any("not allowed" in e.value for e in app.error) and "train_job" not in app.session_state
    assert not app.exception


def test_a_run_whose_model_exists_is_refused_before_training(app, tmp_path, map_model):
    """The job keeps such a model as it is (so that a restarted job resumes), so training it again would do nothing."""
    import shutil

    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset

    shutil.copytree(map_model, tmp_path / "store" / "taken-scratch-k4")
    data = write_dataset(simulate_dataset(per_class=8, phases=["ni", "w"], size=32, seed=2), tmp_path / "pair.h5")
    app.session_state["dataset_path"] = str(data)
    app.switch_page("pages/train.py").run()
    next(t for t in app.text_input if t.label.startswith("Shots per class")).set_value("4")
    next(r for r in app.radio if r.label == "Initialisation").set_value("scratch")
    next(t for t in app.text_input if t.label == "Model name prefix").set_value("taken")
    time.sleep(1.1)
    next(b for b in app.button if b.label == "Start training").click().run()
    assert any("a model named taken-scratch-k4 exists" in e.value for e in app.error), [e.value for e in app.error]
    assert "train_job" not in app.session_state and not app.exception


def _simulation_done(app) -> None:
    """Wait for the Data page's simulation job, then draw the page again, which makes its dataset the session's."""
    from pages.common import job_manager

    assert job_manager().wait(app.session_state["simulate_job"]).status == "done"
    app.run()
    assert not app.exception


def test_choices_left_on_a_page_stay_after_a_visit_to_another(app, map_model, map_scan_file):
    """A simulation's settings, the demo map's phases and grains, and Explain's method went back to their defaults
    after a look at another page. A pattern sent to Explain while its filters were last shown is shown itself."""
    import shutil

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    app.switch_page("pages/data.py").run()

    def simulation() -> tuple:
        materials = next(m for m in app.multiselect if m.label.startswith("Materials")).value
        return materials, next(n for n in app.number_input if n.label == "Patterns per class").value

    next(m for m in app.multiselect if m.label.startswith("Materials")).set_value(["ni", "ni3al"]).run()
    next(n for n in app.number_input if n.label == "Patterns per class").set_value(8).run()
    app.switch_page("pages/phasemap.py").run()
    app.selectbox(key="demo_pair").select("Austenite + ferrite (duplex steel)").run()
    app.radio(key="demo_grains").set_value("Of a real map").run()
    app.switch_page("pages/explain.py").run()
    app.radio(key="explain_method").set_value("shap").run()
    app.switch_page("pages/data.py").run()
    assert simulation() == (["ni", "ni3al"], 8)
    app.switch_page("pages/phasemap.py").run()
    assert app.selectbox(key="demo_pair").value == "Austenite + ferrite (duplex steel)"
    assert app.radio(key="demo_grains").value == "Of a real map"
    app.switch_page("pages/explain.py").run()
    assert app.radio(key="explain_method").value == "shap" and not app.exception
    app.radio(key="explain_method").set_value("filters").run()
    app.session_state["map_scan"] = str(map_scan_file)
    app.session_state["explain_index"], app.session_state["explain_from"] = 3, str(map_scan_file)
    app.run()
    assert app.radio(key="explain_method").value == "gradcam"
    assert next(n for n in app.number_input if n.label.startswith("Column")).value == 3  # of the scan's 8x10 grid


def test_the_tab_chosen_on_a_page_stays_after_a_visit_to_another(app, map_model):
    """The Data and Phase map pages opened on their first tab again after a look at another page, and Results' scan
    to score on its Upload tab, while the server path typed there was still the one scored."""
    import shutil

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    chosen = {
        "pages/data.py": ("data_tab", "Simulate"),
        "pages/phasemap.py": ("scan_tab", "Server path"),
        "pages/explain.py": ("explain_tab", "Server path"),
    }
    for page, (key, tab) in chosen.items():
        app.switch_page(page).run()
        app.session_state[key] = tab  # as a click on the tab sets it
        app.run()
    app.switch_page("pages/results.py").run()
    app.session_state["score_tab"] = "Server path"
    app.run()
    app.radio(key="score_on").set_value("The session's dataset").run()
    app.switch_page("pages/home.py").run()
    for page, (key, tab) in chosen.items():
        app.switch_page(page).run()
        assert app.session_state[key] == tab and not app.exception
    app.switch_page("pages/results.py").run()
    assert app.radio(key="score_on").value == "The session's dataset"
    app.radio(key="score_on").set_value("A scan of one known phase").run()
    assert app.session_state["score_tab"] == "Server path" and not app.exception


@pytest.mark.parametrize(
    "held_out, message", [("cu3au", None), ("ni", "every Fm-3m material is held out (ni): none is left to train on")]
)
def test_simulate_tab_holds_out_a_material_it_does_not_train_on(app, held_out, message):
    from ebsd_core.io.dataset import read_dataset

    app.run()
    app.switch_page("pages/data.py").run()
    next(m for m in app.multiselect if m.label.startswith("Materials")).set_value(["ni", "ni3al"]).run()
    next(m for m in app.multiselect if m.label.startswith("Held-out")).set_value([held_out]).run()
    app.number_input[0].set_value(4)
    app.select_slider[0].set_value(40)
    next(b for b in app.button if b.label == "Simulate").click().run()
    assert not app.exception
    if message:  # said at once, before any job is queued
        assert any(message in e.value for e in app.error), [e.value for e in app.error]
        assert "simulate_job" not in app.session_state
        return
    _simulation_done(app)
    dataset = read_dataset(app.session_state["dataset_path"])
    assert set(dataset.material[dataset.split == "holdout"]) == {"cu3au"}
    assert set(dataset.material[dataset.split == "train"]) == {"ni", "ni3al"}


def test_simulate_tab_adds_phases_of_ones_own_from_cif_files(app, monkeypatch):
    """The CLI's simulate --cif had no place on the dashboard: a phase outside the catalogue could not be simulated
    there. A CIF that cannot be read is named with the reason; one named like a chosen catalogue material is refused
    before any job. One uploaded stays after a visit to another page (it was gone)."""
    from test_phases import CIF_TEMPLATE

    from ebsd_core.io.dataset import read_dataset

    monkeypatch.setattr("ebsd_core.masters.dynamical_available", lambda: False)  # kinematical: seconds, not a minute

    def cif(name: str, a: float, hm: str, number: int, site: str) -> tuple[str, bytes, str]:
        text = CIF_TEMPLATE.format(name=name, a=a, hm=hm, number=number, sites=site)
        return f"{name}.cif", text.encode(), "chemical/x-cif"

    app.run()
    app.switch_page("pages/data.py").run()
    next(m for m in app.multiselect if m.label.startswith("Materials")).set_value(["ni"]).run()

    def upload(*files) -> None:  # the uploader found again: one of an earlier run keeps its old value
        next(u for u in app.file_uploader if u.label.startswith("Phases of your own")).set_value(list(files)).run()

    upload(("broken.cif", b"data_x\n_cell_length_a", "chemical/x-cif"))
    assert any("broken.cif" in e.value for e in app.error)
    upload(cif("ni", 3.52, "F m -3 m", 225, "Ni1 Ni 0 0 0 1.0"))
    app.number_input[0].set_value(4)
    app.select_slider[0].set_value(40)
    next(b for b in app.button if b.label == "Simulate").click().run()
    assert any("two materials are named 'ni'" in e.value for e in app.error), [e.value for e in app.error]
    assert "simulate_job" not in app.session_state
    upload(cif("my_w", 3.165, "I m -3 m", 229, "W1 W 0 0 0 1.0"))
    assert any(c.value.startswith("my_w.cif: my_w, Im-3m (229), a = 3.165") for c in app.caption)
    app.switch_page("pages/train.py").run()
    app.switch_page("pages/data.py").run()  # the phase uploaded stays after a look at another page
    assert any(c.value.startswith("my_w.cif, uploaded before, is still given") for c in app.caption)
    assert any(c.value.startswith("my_w.cif: my_w, Im-3m (229), a = 3.165") for c in app.caption)
    next(b for b in app.button if b.label == "Simulate").click().run()
    assert not app.exception and not app.error
    _simulation_done(app)
    dataset = read_dataset(app.session_state["dataset_path"])
    assert dataset.classes == [225, 229] and sorted(set(dataset.material)) == ["my_w", "ni"]
    assert dataset.provenance["master_kinds"]["my_w"] == "kinematical"


def test_a_simulation_waits_in_the_queue_as_a_job_and_can_be_cancelled(app):
    """Found on review: the Data page simulated on the page's own thread, beside the queue (up to 30,000 patterns of
    240 px, about 10 minutes here), and a click elsewhere in that time lost the work."""
    from pages.common import job_manager

    with another_sessions_job_running():
        app.run()
        app.switch_page("pages/data.py").run()
        app.number_input[0].set_value(4)
        app.select_slider[0].set_value(40)
        next(b for b in app.button if b.label == "Simulate").click().run()
        assert not app.exception
        assert any("1 job is running. It starts by itself" in i.value for i in app.info)
        next(b for b in app.button if b.label == "Cancel").click().run()
        assert job_manager().get(app.session_state["simulate_job"]).status == "cancelled"
        app.run()
        assert any("cancelled before it started" in e.value for e in app.error)
        assert "dataset_path" not in app.session_state


def test_a_dataset_made_again_leaves_the_one_a_model_was_trained_on(app):
    """Simulating again with the same seed made the same file name, and replaced the data a model's card names."""
    from ebsd_core.io.dataset import read_dataset

    app.run()
    app.switch_page("pages/data.py").run()
    next(m for m in app.multiselect if m.label.startswith("Materials")).set_value(["ni", "ni3al"]).run()
    app.select_slider[0].set_value(40)
    paths = []
    for per_class in (4, 6):
        app.number_input[0].set_value(per_class)
        next(b for b in app.button if b.label == "Simulate").click().run()
        assert not app.exception
        _simulation_done(app)
        paths.append(app.session_state["dataset_path"])
    assert paths[0] != paths[1]
    assert len(read_dataset(paths[0])) == 8 and len(read_dataset(paths[1])) == 12


def test_phase_map_of_a_hexagonal_edax_scan_classifies_it_and_draws_it_on_its_grid(app, map_model):
    """kikuchipy reads a hexagonal grid as one line: no rows can lay it out, so none are asked for; its patterns are
    classified each on its own, and drawn on its grid, which the file's header gives (rows of 3, 4 and 3 points)."""
    import shutil

    from ebsd_core.io.readers import HEXAGONAL_GRID_PLACED as HEXAGONAL_GRID
    from pages.common import job_manager

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    scan = KIKUCHIPY_DATA / "edax_binary" / "edax_binary.up2"
    app.switch_page("pages/phasemap.py").run()
    uploader = next(u for u in app.file_uploader if u.label.startswith("Scan file"))
    uploader.set_value([("edax_binary.up2", scan.read_bytes(), "application/octet-stream")]).run()
    assert not app.exception and not app.error
    assert [w.value for w in app.warning] == [f"edax_binary.up2: {HEXAGONAL_GRID}"]
    assert not any(n.label == "Map rows" for n in app.number_input)
    next(c for c in app.checkbox if c.label == "Grain clean-up").uncheck().run()  # each on its own
    next(b for b in app.button if b.label == "Classify every pattern").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    app.run()
    assert any(h.value == "edax_binary.up2: 10 patterns, each classified on its own" for h in app.subheader)
    assert "Classified with duplex." in [c.value for c in app.caption]
    rows = Path(state.result["predictions"]).read_text().splitlines()[1:]
    assert [row.split(",")[:2] for row in rows] == [
        ["edax_binary.up2", str(i)] for i in range(10)
    ]  # not the upload's path
    phase = json.loads(next(c.proto.spec for c in app.get("plotly_chart") if '"text":"phase"' in c.proto.spec))
    assert phase["data"][0]["z"]["shape"] == "3, 8"
    assert [[cell != "" for cell in row] for row in phase["data"][0]["text"]] == [
        [False] + [True] * 6 + [False],
        [True] * 8,
        [False] + [True] * 6 + [False],
    ]
    # its tenth pattern is blank (zeros): said so where it is clicked, and not offered to explain
    assert phase["data"][0]["text"][2][5] == "unknown (blank pattern: no confidence)"
    # the hover's place of each point from the first, its header's step (pi) along a row, rows sqrt(3)/2 of it apart
    custom = np.frombuffer(base64.b64decode(phase["data"][0]["customdata"]["bdata"]), np.float32).reshape(3, 8, 6)
    assert "x %{customdata[4]:.1f} µm, y %{customdata[5]:.1f} µm" in phase["data"][0]["hovertemplate"]
    np.testing.assert_allclose(custom[0, 1, 4:], [np.pi / 2, 0], atol=1e-5)  # row 0 starts half a step in
    np.testing.assert_allclose(custom[1, 0, 4:], [0, np.pi * np.sqrt(3) / 2], atol=1e-5)
    (bar,) = [shape for shape in phase["layout"]["shapes"] if shape["type"] == "line"]  # of 2 µm: 2 / pi steps
    assert bar["x1"] - bar["x0"] == pytest.approx(2 / np.pi) and phase["layout"]["annotations"][0]["text"] == "2 µm"
    app.session_state[f"grid_point@{state.result['predictions']}"] = 9
    app.run()
    assert any(c.value.startswith("A blank pattern (a dropped frame,") for c in app.caption)
    assert not any(b.label == "Explain this pattern" for b in app.button)


def classified_hexagonal_images(app, map_model, map_scan_file, tmp_path, monkeypatch, indexing=None):
    """The 8 x 10 map scan's images thinned to a hexagonal grid (rows of 5 points, every other one half a step in),
    in ``tmp_path/hexagonal``, classified on the Phase map page with the duplex model (``indexing``: a function of
    the scan's folder giving its own .ang, uploaded beside it): the job's state."""
    import shutil

    from ebsd_core.io.point_names import HEXAGONAL_NAMES
    from pages.common import job_manager

    as_hexagonal_grid(scan_as_images(map_scan_file, tmp_path / "hexagonal"))
    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(tmp_path))
    app.switch_page("pages/phasemap.py").run()
    next(t for t in app.text_input if t.key == "map_server_path").set_value("hexagonal").run()
    assert not app.exception and not app.error
    assert [w.value for w in app.warning] == [f"hexagonal: {HEXAGONAL_NAMES}"]
    assert not any(n.label == "Map rows" for n in app.number_input)
    assert not any(u.label.startswith("Hough indexing") for u in app.file_uploader)  # no map to keep it
    if indexing is not None:
        ang = indexing(tmp_path / "hexagonal")
        uploader = next(u for u in app.file_uploader if u.label.startswith("OIM's indexing of this scan"))
        uploader.set_value([(ang.name, ang.read_bytes(), "text/plain")]).run()
        assert not app.exception and not app.error
    # "each pattern is classified on its own", here too: the patterns per phase, and predict's CSV of them
    next(b for b in app.button if b.label == "Classify every pattern").click().run()
    state = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert state.status == "done", state.error
    app.run()
    assert not app.exception and not app.error
    return state


def test_phase_map_of_images_named_by_points_of_a_hexagonal_grid_classifies_them_and_draws_them_on_it(
    app, map_model, map_scan_file, tmp_path, monkeypatch
):
    """Found on review: they were drawn as a checkerboard, every other point blank, said as half the images lost.
    Then they were classified without a map; they are now drawn on their own grid, where their names place them."""
    from ebsd_core.predictions import read_grid_points
    from pages.common import job_manager

    state = classified_hexagonal_images(app, map_model, map_scan_file, tmp_path, monkeypatch)
    assert any(h.value == "hexagonal: 40 patterns, classified, then cleaned up by grains" for h in app.subheader)
    table = next(d.value for d in app.dataframe if "Share" in d.value.columns)
    assert table["Phase"].tolist() == ["Austenite (Fm-3m)", "Ferrite (Im-3m)", "unknown"]
    assert table["Patterns"].sum() == 40
    (download,) = [b.proto for b in app.get("download_button")]
    assert download.label == "Predictions (.csv)" and download.ignore_rerun and download.deferred_file_id
    rows = Path(state.result["predictions"]).read_text().splitlines()
    assert rows[0].startswith("path,index,prediction,confidence,p_Fm-3m") and rows[1].startswith(
        "hexagonal/x0_y0.png,0,"
    )
    # drawn on its own grid: 8 rows of 10 half steps, each point two of them wide, every other row offset by one
    charts = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    least = min(range(40), key=lambda i: float(rows[i + 1].split(",")[3]))
    assert [c["layout"]["title"]["text"] for c in charts] == [
        "phase",
        "confidence",
        f"pattern at point {least} (row {least // 5}) (x{2 * (least % 5) + least // 5 % 2}_y{least // 5}.png)",
        "probabilities",  # of the pattern the model was least sure of, first
    ]
    phase, confidence = (c["data"][0] for c in charts[:2])
    assert phase["z"]["shape"] == confidence["z"]["shape"] == "8, 11"
    points = [row.split(",") for row in rows[1:]]
    named = {"Fm-3m": "Austenite (Fm-3m)", "Im-3m": "Ferrite (Im-3m)", "unknown": "unknown"}
    for row, cells in enumerate(phase["text"]):
        offset, first = row % 2, 5 * row  # rows of 5 points: x0_y0, x2_y0, ... then x1_y1, x3_y1, ...
        assert cells[:offset] == [] or cells[:offset] == [""]
        assert cells[offset:][:10:2] == cells[offset + 1 :][:10:2] == [named[p[2]] for p in points[first:][:5]]
        assert cells[offset + 10 :] == [] or cells[offset + 10 :] == [""]
    assert charts[0]["layout"]["yaxis"]["scaleanchor"] == "x"  # the grid's own proportions
    probabilities = np.frombuffer(base64.b64decode(charts[3]["data"][0]["y"]["bdata"]), np.float32)
    np.testing.assert_allclose(probabilities, [float(p) for p in points[least][4:6]], atol=1e-4)
    app.session_state[f"grid_point@{state.result['predictions']}"] = 7  # as a click on the map sets it
    app.run()
    assert next(n for n in app.number_input if n.label == "Pattern (0 to 39)").value == 7
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in app.get("plotly_chart")]
    assert titles[2] == "pattern at point 7 (row 1) (x5_y1.png)"
    alone = read_grid_points(state.result["grid"]).raw_probabilities[7]  # cleaned up: the pattern's own answer too
    label = ["Austenite (Fm-3m)", "Ferrite (Im-3m)"][int(np.argmax(alone))]
    assert f"the pattern alone: {label} {alone.max():.0%}." in " ".join(c.value for c in app.caption)
    # a classification made before the clean-up was (a job kept from an older version, shown after a reload)
    older = {k: v for k, v in state.result.items() if k not in {"grain_cleanup", "changed_by_cleanup"}}
    kept = job_manager().submit("phasemap", "older", app.session_state["session_id"], lambda ctx: older)
    app.session_state["map_job"] = job_manager().wait(kept).id
    app.run()
    assert not app.exception and "Classified with duplex." in [c.value for c in app.caption]
    assert any(h.value == "hexagonal: 40 patterns, each classified on its own" for h in app.subheader)
    app.session_state[f"grid_point@{state.result['predictions']}"] = least
    app.run()
    # one of them explained, from the one the model was least sure of
    assert next(n for n in app.number_input if n.label == "Pattern (0 to 39)").value == least
    next(b for b in app.button if b.label == "Explain this pattern").click().run()
    assert not app.exception and not app.error
    assert next(s for s in app.selectbox if s.label == "Patterns from").value == "classified scan: hexagonal"
    assert next(s for s in app.selectbox if s.label.startswith("Pattern (40 images)")).value == least


def test_a_hexagonal_scans_phases_are_written_into_its_own_ang_uploaded_beside_it(
    app, map_model, map_scan_file, tmp_path, monkeypatch
):
    """No square map is made of a scan on a hexagonal grid, so it had no .ang: OIM's own .ang of it, uploaded beside
    it, is given back with the model's phases; an .ang of points elsewhere is refused before any work."""
    from conftest import oim_indexing

    from ebsd_core.io.orientations import _orix_load
    from ebsd_core.io.readers import open_patterns

    def indexing(folder: Path) -> Path:
        return oim_indexing(tmp_path / "hough scan.ang", open_patterns(folder).hexagonal_places)

    state = classified_hexagonal_images(app, map_model, map_scan_file, tmp_path, monkeypatch, indexing)
    assert "The model's phases are written into hough scan.ang too." in [c.value for c in app.caption]
    downloads = {b.proto.label: b.proto for b in app.get("download_button")}
    assert set(downloads) == {"Predictions (.csv)", "hough scan.ang with these phases"}
    assert downloads["hough scan.ang with these phases"].ignore_rerun
    mapped, hough = _orix_load(Path(state.result["ang"])), _orix_load(tmp_path / "hough scan.ang")
    np.testing.assert_array_equal(mapped.rotations.data, hough.rotations.data)
    rows = Path(state.result["predictions"]).read_text().splitlines()[1:]
    names = {"Fm-3m": "austenite", "Im-3m": "ferrite", "unknown": "not indexed"}
    read = [mapped.phases[int(i)].name.lower() if i >= 0 else "not indexed" for i in mapped.phase_id]
    assert read == [names[row.split(",")[2]] for row in rows]  # each point's phase, the CSV's
    # another scan's (its points in another order): refused, named as uploaded
    wrong = oim_indexing(tmp_path / "other.ang", open_patterns(tmp_path / "hexagonal").hexagonal_places[::-1])
    uploader = next(u for u in app.file_uploader if u.label.startswith("OIM's indexing of this scan"))
    uploader.set_value([("other.ang", wrong.read_bytes(), "text/plain")]).run()
    assert [e.value for e in app.error] == [
        "other.ang: its points do not lie where the scan's do, in its order: point 0 is at row 7, column 4 in it, at "
        "row 0, column 0 in the scan (the indexing of another scan?)"
    ]
    assert not [b for b in app.button if b.label == "Classify every pattern"]


def test_regions_of_a_hexagonal_scan_are_labelled_on_its_map_and_make_a_dataset_of_their_points(
    app, map_model, map_scan_file, tmp_path, monkeypatch
):
    """The remedy every note on a model trained on simulation gives, training on the scan's own grains, was refused
    for a scan on a hexagonal grid: regions are now boxed or typed on its own grid's rows and columns."""
    import shutil

    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.io.readers import open_patterns
    from pages.common import job_manager

    state = classified_hexagonal_images(app, map_model, map_scan_file, tmp_path, monkeypatch)
    chart = f"grid_phase_map@{state.result['predictions']}"
    phase = json.loads(next(c.proto.spec for c in app.get("plotly_chart") if '"text":"phase"' in c.proto.spec))
    assert "column %{customdata[2]:.0f}" in phase["data"][0]["hovertemplate"]
    columns = np.frombuffer(base64.b64decode(phase["data"][0]["customdata"]["bdata"]), np.float32).reshape(8, 11, 6)
    assert columns[1, 1:, 2].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # row 1, half a step in: points 0-4

    def region() -> list:
        labels = ("First row", "Last row", "First column", "Last column")
        return [next(n for n in app.number_input if n.label == label).value for label in labels]

    # as the chart's box-select tool sets it: x in steps, y in rows sqrt(3)/2 of a step apart
    app.session_state[chart] = {"selection": {"box": [{"x": [0.6, 3.4], "y": [0.7, 2.7]}], "points": []}}
    app.run()
    assert not app.exception and region() == [1, 3, 1, 2]  # the columns whose middle (c + 0.5) is inside
    app.selectbox(key="region_space_group").select(225).run()
    next(b for b in app.button if b.label == "Add the region").click().run()
    for label, value in zip(("First row", "Last row", "First column", "Last column"), (5, 7, 3, 4)):
        next(n for n in app.number_input if n.label == label).set_value(value)
    app.selectbox(key="region_space_group").select(229).run()
    next(b for b in app.button if b.label == "Add the region").click().run()
    assert not app.exception and not app.error
    assert next(d.value for d in app.dataframe if "points" in d.value.columns)["points"].tolist() == [6, 6]
    outlines = json.loads(next(c.proto.spec for c in app.get("plotly_chart") if '"text":"phase"' in c.proto.spec))
    regions = [s for s in outlines["layout"]["shapes"] if s["type"] == "rect"]  # besides the scale bar's line
    assert [(s["x0"], s["x1"]) for s in regions] == [(0.75, 3.25), (2.75, 5.25)]
    next(b for b in app.button if b.label == "Make a dataset of these regions").click().run()
    assert not app.exception and not app.error
    dataset = read_dataset(app.session_state["dataset_path"])
    assert dataset.class_counts() == {"Fm-3m": 6, "Im-3m": 6}
    points = [5 * row + column for row in (1, 2, 3) for column in (1, 2)] + [
        5 * row + column for row in (5, 6, 7) for column in (3, 4)
    ]
    np.testing.assert_array_equal(dataset.patterns, open_patterns(tmp_path / "hexagonal").take(np.array(points)))
    app.switch_page("pages/train.py").run()  # from the model the scan was classified with
    assert next(s for s in app.selectbox if s.label == "Transfer starts from").value == "duplex"

    # a model trained on them classifies the scan again, from its map: the regions stay
    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "grains")
    app.switch_page("pages/phasemap.py").run()
    assert not [b for b in app.button if b.label.startswith("Classify hexagonal with")]  # classified with it
    app.selectbox(key="map_model").select("grains").run()
    next(b for b in app.button if b.label == "Classify hexagonal with grains").click().run()
    again = job_manager().wait(app.session_state["map_job"], timeout=600)
    assert again.status == "done", again.error
    app.run()
    assert not app.exception and not app.error and again.params["cleanup"]  # as the scan was classified first
    said = "Classified with grains; the grain clean-up changed the class of"
    assert any(c.value.startswith(said) for c in app.caption)
    assert again.result["scan"] == state.result["scan"] and again.result["patterns"] == 40
    assert next(d.value for d in app.dataframe if "points" in d.value.columns)["points"].tolist() == [6, 6]


def test_a_job_refused_for_a_busy_session_is_named_with_a_link_to_it(app):
    """The Phase map page asks nothing first: the queue refuses a demo map while the session's demo trains."""
    import threading

    from pages.common import job_manager

    release = threading.Event()
    app.run()
    mine = app.session_state["session_id"]
    first = job_manager().submit("demo", "Demo: simulate + train", mine, lambda ctx: release.wait(60) and {})
    try:
        app.switch_page("pages/phasemap.py").run()
        next(b for b in app.button if b.label == "Run the demo map").click().run()
        assert not app.exception
        assert any("your job 'Demo: simulate + train' is still" in e.value for e in app.error)
        assert app.session_state["train_job"] == first  # the linked Train page shows it
        assert "map_job" not in app.session_state and len(job_manager().jobs_of(mine)) == 1
    finally:
        release.set()
    job_manager().wait(first)


def test_a_home_demo_cut_short_starts_again_on_the_train_page(app, monkeypatch):
    """Found restarting a lab's service during a demo: the Train page said "failed: the server stopped while this job
    was running; start it again" with no button for it (only a training had one), and Home said nothing."""
    from ebsd_core import workflows
    from pages.common import job_manager

    started = []
    monkeypatch.setattr(workflows, "demo_train_job", lambda ctx, folder, epochs: started.append(epochs) or {})
    app.run()
    app.number_input(key="demo_epochs").set_value(2).run()
    next(b for b in app.button if b.label == "Run the demo").click().run()
    first = job_manager().wait(app.session_state["train_job"])
    assert first.params == {"epochs": 2} and started == [2]
    mine = app.session_state["session_id"]
    cut_short = job_manager().wait(job_manager().submit("demo", first.title, mine, lambda ctx: 1 / 0, first.params))
    app.session_state["train_job"] = cut_short.id
    app.switch_page("pages/train.py").run()
    next(b for b in app.button if b.label == "Start again").click().run()
    again = job_manager().wait(app.session_state["train_job"])
    assert again.id != cut_short.id and again.title == "Demo: simulate + train (restarted)"
    assert again.status == "done" and started == [2, 2]
    older = job_manager().wait(job_manager().submit("demo", first.title, mine, lambda ctx: 1 / 0))  # no epochs kept
    app.session_state["train_job"] = older.id
    app.run()
    assert not app.exception and not any(b.label == "Start again" for b in app.button)


def test_a_failed_job_starts_again_once_the_sessions_other_job_has_ended(app):
    """A refusal inside the job panel would vanish at its next refresh: the panel says why there is no button."""
    from pages.common import job_manager

    app.run()
    mine = app.session_state["session_id"]
    failed = job_manager().wait(job_manager().submit("train", "m: 1 run(s)", mine, lambda ctx: 1 / 0, {"runs": []}))
    release = threading.Event()
    running = job_manager().submit("phasemap", "Phase map of scan.h5", mine, lambda ctx: release.wait(60) and {})
    try:
        app.session_state["train_job"] = failed.id
        app.switch_page("pages/train.py").run()
        assert not app.exception and not any(b.label == "Start again" for b in app.button)
        assert any("once your job 'Phase map of scan.h5' has ended" in c.value for c in app.caption)
    finally:
        release.set()
    job_manager().wait(running)
    app.run()
    assert any(b.label == "Start again" for b in app.button)


def test_a_reload_does_not_undo_the_dataset_chosen_after_the_demo(app, tmp_path):
    """Found on review: after a reload the Train page applied the session's finished demo again, so the demo's
    dataset replaced the one the user had uploaded since."""
    from pages.common import job_manager

    app.run()
    mine = app.session_state["session_id"]
    demo = tmp_path / "demo.h5"
    demo.write_bytes(b"")
    done = job_manager().wait(
        job_manager().submit("demo", "Demo", mine, lambda ctx: {"dataset": str(demo), "model_name": None})
    )
    app.session_state["train_job"] = done.id
    app.switch_page("pages/train.py").run()  # the demo's dataset becomes the session's as the demo ends
    assert app.session_state["dataset_path"] == str(demo)
    time.sleep(0.05)
    uploaded = tmp_path / "uploaded.h5"
    uploaded.write_bytes(b"")
    app.session_state["dataset_path"] = str(uploaded)
    (tmp_path / "home" / "sessions" / mine / "active_dataset.txt").write_text(str(uploaded))  # the Data page's choice
    reloaded = AppTest.from_file(APP, default_timeout=120)
    reloaded.query_params["sid"] = mine
    reloaded.run()
    reloaded.switch_page("pages/train.py").run()
    assert not reloaded.exception
    assert any("Finished: the model is in the store" in s.value for s in reloaded.success)  # shown, not applied
    assert reloaded.session_state["dataset_path"] == str(uploaded)


def test_a_link_whose_session_was_removed_for_idleness_is_told_so_once(app, tmp_path):
    """Found on review: a link bookmarked on a Friday opened on the Monday as a new session, with no word of the scan
    uploaded to it (removed after 24 hours unused)."""
    from ebsd_core.housekeeping import cleanup_sessions

    friday = "0123456789abcdef0123456789abcdef"
    folder = tmp_path / "home" / "sessions" / friday
    (folder / "uploads").mkdir(parents=True)
    old = time.time() - 60 * 3600
    for path in (folder, folder / "uploads"):
        os.utime(path, (old, old))
    assert cleanup_sessions(tmp_path / "home") == [friday]
    monday = AppTest.from_file(APP, default_timeout=120)
    monday.query_params["sid"] = friday
    monday.run()
    said = [i.value for i in monday.info if i.value.startswith("The work of this session")]
    assert len(said) == 1 and "unused for 24 hours (the server's EBSD_SESSION_KEEP_HOURS)" in said[0], said
    monday.switch_page("pages/data.py").run()
    assert not [i for i in monday.info if i.value.startswith("The work of this session")]  # once
    again = AppTest.from_file(APP, default_timeout=120)
    again.query_params["sid"] = friday  # its folder made again on the Monday: nothing more to tell
    again.run()
    assert not [i for i in again.info if i.value.startswith("The work of this session")]
    fresh = AppTest.from_file(APP, default_timeout=120).run()
    assert not [i for i in fresh.info if i.value.startswith("The work of this session")]


def test_patterns_uploaded_in_one_session_are_not_shown_to_another_on_results(app, map_model, tmp_path):
    """Found on review: the store is shared, and its Results page showed any session the misclassified test patterns
    of a model trained on another session's uploaded patterns, read from that session's private folder."""
    import shutil

    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset

    owner = "a" * 32
    uploaded = tmp_path / "home" / "sessions" / owner / "uploaded-1.h5"
    uploaded.parent.mkdir(parents=True)
    dataset = simulate_dataset(per_class=24, phases=["austenite", "ferrite"], size=32, seed=5)
    dataset.provenance["generator"] = "ebsd_core dataset"  # as recorded patterns are labelled
    write_dataset(dataset, uploaded)
    shutil.copytree(map_model, tmp_path / "store" / "theirs")
    card_file = tmp_path / "store" / "theirs" / "model.json"
    card = json.loads(card_file.read_text())
    card["training"] |= {"dataset_path": str(uploaded), "dataset": "ebsd_core dataset"}
    card_file.write_text(json.dumps(card))
    notice = "trained on patterns uploaded in another session"
    app.switch_page("pages/results.py").run()
    assert not app.exception and any(notice in i.value for i in app.info)
    own = AppTest.from_file(APP, default_timeout=120)
    own.query_params["sid"] = owner
    own.run()
    own.switch_page("pages/results.py").run()
    assert not own.exception and not any(notice in i.value for i in own.info)
    assert own.dataframe or any("No misclassified patterns" in s.value for s in own.success)  # its own: shown


def test_the_master_patterns_of_a_simulated_dataset_are_named_as_materials(app, tiny_dataset):
    """The Data page listed catalogue keys with their kind each ("al3sc: dynamical, almandine: dynamical, ...")."""
    app.session_state["dataset_path"] = str(tiny_dataset)
    app.switch_page("pages/data.py").run()
    assert not app.exception
    caption = next(c.value for c in app.caption if c.value.startswith("Master patterns"))
    assert caption.startswith("Master patterns: dynamical (de-ebsd Bloch waves) for ")
    assert "Ni3Al" in caption and "Cu, " in caption and "ni3al" not in caption  # held-out materials are simulated too


def test_a_transfer_models_filters_are_shown_beside_its_scratch_twins(app, tiny_dataset, tmp_path):
    """The paper's comparison (ImageNet transfer against scratch) of first-layer filters was the CLI's alone
    (--compare): a model trained beside another on the Train page now has it drawn beside it at once."""
    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.train import TrainConfig
    from ebsd_core.workflows import train_evaluate_save

    dataset = read_dataset(tiny_dataset)
    for name, pretrained in (("run-transfer-k2", True), ("run-scratch-k2", False), ("other", True)):
        config = TrainConfig(shots=2, epochs=1, input_size=32, batch_size=8, views=1, pretrained=pretrained)
        train_evaluate_save(dataset, config, tmp_path / "store" / name, dataset_path=tiny_dataset)
    app.session_state["model_name"] = "run-transfer-k2"
    app.switch_page("pages/explain.py").run()
    app.radio[0].set_value("filters").run()
    beside = next(s for s in app.selectbox if s.label == "Beside the filters of")
    assert beside.value == "run-scratch-k2" and beside.options[0] == "no other model"
    next(b for b in app.button if b.label == "Explain").click().run()
    assert not app.exception and not app.error
    captions = [image.proto.imgs[0].caption for image in app.get("image")]
    assert len(captions) == 4 and captions[-1].startswith("run-scratch-k2's first-layer filters, trained from scratch")
    beside.set_value("no other model").run()
    assert not app.exception and len(app.get("image")) == 3  # fine-tuned, ImageNet's, most changed


def test_a_model_is_scored_on_a_folder_of_images_of_one_phase_from_results(app, tiny_dataset, tmp_path):
    """A reference scan exported as images, picked as its folder on Results."""
    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.train import TrainConfig
    from ebsd_core.workflows import train_evaluate_save
    from pages.common import job_manager

    dataset = read_dataset(tiny_dataset)
    config = TrainConfig(shots=2, epochs=1, input_size=32, batch_size=8, views=1)
    train_evaluate_save(dataset, config, tmp_path / "store" / "brief", dataset_path=tiny_dataset)
    images = []
    for index, pattern in enumerate(dataset.patterns[dataset.labels == 2][:6]):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(pattern)).save(buffer, "PNG")
        images.append((f"reference scan/p{index}.png", buffer.getvalue(), "image/png"))
    app.switch_page("pages/results.py").run()
    next(u for u in app.file_uploader if u.label.startswith("Or a folder")).set_value(images).run()
    next(s for s in app.selectbox if s.label == "Its space group").set_value(dataset.classes[2]).run()
    next(b for b in app.button if b.label == "Score brief on reference scan").click().run()
    state = job_manager().wait(app.session_state["score_job"], timeout=300)
    assert state.status == "done", state.error
    app.run()
    assert not app.exception and not app.error
    assert {m.label: m.value for m in app.metric}["Patterns scored"] == "6"


def test_class_folders_on_the_server_are_scored_on_their_own_labels_from_results(
    app, tmp_path, monkeypatch, map_model, map_scan_file
):
    """The server path lists a lab's labelled set (class folders) as one source: Results scored only a scan of one
    phase given its space group, and the job failed on labelled patterns ("holds labels of its own"). It scores them
    on their own labels, with no space group asked."""
    import shutil

    from ebsd_core.io.readers import open_patterns
    from pages.common import job_manager

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    scan = open_patterns(map_scan_file)
    for index, (pattern, label) in enumerate(zip(scan.batch(0, 12), scan.labels[:12], strict=True)):
        group = tmp_path / "root" / "training" / "steel" / ("Fm-3m" if scan.classes[label] == 225 else "Im-3m")
        group.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pattern).save(group / f"p{index}.png")
    monkeypatch.setenv("EBSD_DATA_ROOT", str(tmp_path / "root"))
    app.switch_page("pages/results.py").run()
    app.session_state["score_tab"] = "Server path"
    app.run()
    app.text_input(key="score_server_path").input(".").run()  # its one source: the labelled set, not its folders
    assert not app.exception and not app.error
    assert any(
        c.value == "training/steel holds labelled patterns of Fm-3m, Im-3m: scored on their own labels."
        for c in app.caption
    )
    assert not any(s.label == "Its space group" for s in app.selectbox)
    next(b for b in app.button if b.label == "Score duplex on training/steel").click().run()
    state = job_manager().wait(app.session_state["score_job"], timeout=300)
    assert state.status == "done", state.error
    assert state.result["metrics"]["patterns"] == 12 and state.result["metrics"]["classes"] == ["Fm-3m", "Im-3m"]


def test_the_patterns_a_score_misreads_are_listed_by_file_and_explained_from_results(app, map_model, map_scan_file):
    """A score gave a confusion matrix alone: a microscopist scoring a model on their own labelled patterns could not
    tell which of them it read wrong, nor look at why. Its misread patterns are listed by file, and one is sent to
    Explain, named as the patterns scored."""
    import shutil

    from ebsd_core.io.readers import open_patterns
    from pages.common import job_manager

    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "duplex")
    images = []
    for index, pattern in enumerate(open_patterns(map_scan_file).batch(0, 4)):
        buffer = io.BytesIO()
        Image.fromarray(pattern).save(buffer, "PNG")
        # each pattern under both classes: one of the two copies is misread, whatever the model reads it as
        images += [(f"my set/{group}/p{index}.png", buffer.getvalue(), "image/png") for group in ("Fm-3m", "Im-3m")]
    app.switch_page("pages/results.py").run()
    next(u for u in app.file_uploader if u.label.startswith("Or a folder")).set_value(images).run()
    next(b for b in app.button if b.label == "Score duplex on my set").click().run()
    state = job_manager().wait(app.session_state["score_job"], timeout=300)
    assert state.status == "done", state.error
    app.run()
    assert not app.exception and not app.error
    misread = state.result["metrics"]["misread"]
    table = next(d.value for d in app.dataframe if "read as" in d.value.columns)
    listed = list(table["pattern"])
    assert sorted(name.split("/")[1] for name in listed) == [f"p{i}.png" for i in range(4)]  # one copy of each
    assert listed == [p["file"] for p in misread]
    assert all(table["class"] == [name.split("/")[0] for name in listed])
    assert all(table["read as"] != table["class"])
    charts = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    montage = next(c for c in charts if "<br>as " in str(c["layout"].get("annotations")))  # each one drawn
    drawn = [f"{name.split('/')[1]}<br>{name.split('/')[0]}<br>as {as_}" for name, as_ in zip(listed, table["read as"])]
    assert [a["text"] for a in montage["layout"]["annotations"]] == drawn
    picker = next(s for s in app.selectbox if s.label == "Explain one of them")
    assert picker.options == listed
    picker.set_value(listed[-1]).run()
    next(b for b in app.button if b.label == "Explain it").click().run()
    assert not app.exception
    app.switch_page("pages/explain.py").run()  # where the button went (AppTest would run Results again next)
    assert not app.exception and not app.error  # explained at once (Grad-CAM)
    assert next(s for s in app.selectbox if s.label == "Patterns from").value == "scored: my set"
    assert next(s for s in app.selectbox if s.label == "Pattern (8 images)").value == misread[-1]["index"]
    headline = next(m.value for m in app.markdown if m.value.startswith(f"Pattern {misread[-1]['index']} "))
    assert f"({listed[-1]}): predicted **{misread[-1]['predicted']}**" in headline, headline
    assert headline.endswith(f"; true class: **{misread[-1]['true']}**"), headline


def test_a_model_is_scored_on_a_reference_scan_and_on_the_sessions_dataset_from_results(
    app, tiny_dataset, tmp_path, monkeypatch
):
    """The CLI's evaluate had no place on the dashboard: a microscopist checking a model trained on simulation against
    a reference scan of a known phase had no score of it but a phase map's fractions. On its training file, the
    patterns it learnt from are left out."""
    import shutil

    import kikuchipy as kp

    from ebsd_core.io.dataset import Dataset, read_dataset, write_dataset
    from ebsd_core.train import TrainConfig
    from ebsd_core.workflows import train_evaluate_save
    from pages.common import job_manager

    dataset = read_dataset(tiny_dataset)
    config = TrainConfig(shots=2, epochs=1, input_size=32, batch_size=8, views=1)
    train_evaluate_save(dataset, config, tmp_path / "store" / "brief", dataset_path=tiny_dataset)
    root = tmp_path / "root"
    root.mkdir()
    patterns = np.asarray(dataset.patterns[dataset.labels == 2][:6])  # a 2 x 3 scan of the third class
    kp.signals.EBSD(patterns.reshape(2, 3, *patterns.shape[1:])).save(str(root / "reference.h5"))
    monkeypatch.setenv("EBSD_DATA_ROOT", str(root))
    app.switch_page("pages/results.py").run()

    def score(button: str) -> dict:
        next(b for b in app.button if b.label == button).click().run()
        state = job_manager().wait(app.session_state["score_job"], timeout=300)
        assert state.status == "done", state.error
        app.run()
        assert not app.exception and not app.error
        assert any(button.removeprefix("Score ") in m.value for m in app.markdown)
        return {m.label: m.value for m in app.metric}

    next(t for t in app.text_input if t.label.startswith("Scan path")).input("reference.h5").run()
    assert not [b for b in app.button if b.label.startswith("Score brief")]  # until its space group is chosen
    # a model of two classes, the reference's not one of them: said at once, with no button to start a job
    first = np.flatnonzero(dataset.labels < 2)
    two_classes = Dataset(dataset.patterns[first], dataset.labels[first], dataset.classes[:2], dataset.material[first])
    write_dataset(two_classes, tmp_path / "two.h5")
    train_evaluate_save(two_classes, config, tmp_path / "store" / "pair", dataset_path=tmp_path / "two.h5")
    app.session_state["model_name"] = "pair"
    app.run()
    next(s for s in app.selectbox if s.label == "Its space group").set_value(dataset.classes[2]).run()
    assert any("pair knows Pm-3m, Pm-3n: it reads any other phase as one of these" in w.value for w in app.warning)
    assert not [b for b in app.button if b.label.startswith("Score pair")]
    app.radio(key="score_on").set_value("The session's dataset").run()  # of six classes: the same
    app.session_state["dataset_path"], app.session_state["dataset_label"] = str(tiny_dataset), "tiny"
    app.run()
    assert any("it cannot be scored on Fm-3m, Fd-3m, Im-3m, Ia-3d." in w.value for w in app.warning)
    assert not [b for b in app.button if b.label.startswith("Score pair")]
    del app.session_state["dataset_path"], app.session_state["dataset_label"]
    app.session_state["model_name"] = "brief"
    app.radio(key="score_on").set_value("A scan of one known phase").run()  # drawn again as they were left
    assert next(t for t in app.text_input if t.label.startswith("Scan path")).value == "reference.h5"
    assert next(s for s in app.selectbox if s.label == "Its space group").value == dataset.classes[2]
    assert score("Score brief on reference.h5")["Patterns scored"] == "6"
    assert any(b.proto.label == "Scores (JSON)" for b in app.get("download_button"))
    assert all(b.proto.ignore_rerun for b in app.get("download_button"))  # the model zip's among them
    assert any("one phase" in w.value for w in app.warning)  # one phase alone proves little
    # the session's dataset: another file of two of its classes, then the file it was trained on
    app.radio(key="score_on").set_value("The session's dataset").run()
    assert any("No dataset in this session" in i.value for i in app.info)
    two = np.isin(dataset.labels, [0, 1])
    other = tmp_path / "other.h5"
    write_dataset(Dataset(dataset.patterns[two], dataset.labels[two], dataset.classes, dataset.material[two]), other)
    for path, label, left_out in ((other, "other", False), (tiny_dataset, "tiny", True)):
        app.session_state["dataset_path"], app.session_state["dataset_label"] = str(path), label
        app.run()
        scored = score(f"Score brief on {label}")
        left = job_manager().get(app.session_state["score_job"]).result["metrics"].get("learned_patterns_left_out", 0)
        assert scored["Patterns scored"] == f"{(len(dataset.labels) - left if left_out else two.sum()):,}"
        assert bool(left) == left_out
        assert any("it was trained and validated on are left out" in w.value for w in app.warning) == left_out
    shutil.copytree(tmp_path / "store" / "brief", tmp_path / "store" / "other-model")
    app.session_state["model_name"] = "other-model"  # the result stays with the model it scored
    app.run()
    assert next(s for s in app.selectbox if s.label == "Model").value == "other-model"
    assert "Patterns scored" not in {m.label for m in app.metric}


def test_a_scan_uploaded_to_score_stays_while_a_choice_hides_its_uploader(app, tiny_dataset, tmp_path):
    """A reference scan uploaded to score a model had to be uploaded again (a large one for minutes) after the radio
    was switched to the session's dataset and back, or the page left and opened again: Streamlit empties an uploader
    it has not drawn. Removed from the uploader by the user, it is forgotten."""
    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.train import TrainConfig
    from ebsd_core.workflows import train_evaluate_save

    dataset = read_dataset(tiny_dataset)
    config = TrainConfig(shots=2, epochs=1, input_size=32, batch_size=8, views=1)
    train_evaluate_save(dataset, config, tmp_path / "store" / "brief", dataset_path=tiny_dataset)
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(dataset.patterns[0])).save(buffer, "PNG")
    app.switch_page("pages/results.py").run()

    def uploader():
        return next(u for u in app.file_uploader if u.label.startswith("A scan of one phase"))

    def score_button() -> bool:
        return any(b.label == "Score brief on reference.png" for b in app.button)

    uploader().set_value([("reference.png", buffer.getvalue(), "image/png")]).run()
    next(s for s in app.selectbox if s.label == "Its space group").set_value(dataset.classes[0]).run()
    assert score_button()
    app.radio(key="score_on").set_value("The session's dataset").run()
    app.radio(key="score_on").set_value("A scan of one known phase").run()
    assert not uploader().value and score_button()  # the uploader drawn again empty, the scan still given
    assert any(c.value.startswith("reference.png, uploaded before, is still given") for c in app.caption)
    app.switch_page("pages/train.py").run()
    app.switch_page("pages/results.py").run()  # the space group chosen is kept as well
    assert score_button() and not app.exception
    next(b for b in app.button if b.label == "Forget reference.png").click().run()
    assert not score_button() and not [c for c in app.caption if "uploaded before" in c.value]
    uploader().set_value([("reference.png", buffer.getvalue(), "image/png")]).run()
    assert score_button()
    uploader().set_value([]).run()  # removed from the uploader by the user: forgotten too
    assert not score_button() and not [c for c in app.caption if "uploaded before" in c.value]


def test_a_misclassified_test_pattern_is_explained_from_results(app, tiny_dataset, tmp_path):
    """A teacher sees a model's mistakes on Results and asks why: the pattern goes to Explain with its dataset (the
    montage named no index to find it by)."""
    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.train import TrainConfig
    from ebsd_core.workflows import train_evaluate_save

    config = TrainConfig(shots=2, epochs=1, input_size=32, batch_size=8, views=1)
    train_evaluate_save(read_dataset(tiny_dataset), config, tmp_path / "store" / "brief", dataset_path=tiny_dataset)
    app.switch_page("pages/results.py").run()
    picker = next(s for s in app.selectbox if s.label == "Explain one of them")
    title = picker.options[-1]  # "#37 Al3Sc: Pm-3m as Fm-3m"
    charts = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    montage = next(c for c in charts if "<br>as " in str(c["layout"].get("annotations")))
    # a line each, no wider than a pattern: "Pm-3m as Fm-3m" ran into the next title on a 1,024 px screen
    assert montage["layout"]["annotations"][-1]["text"] == title.replace(": ", "<br>").replace(" as ", "<br>as ")
    index, material = int(title.split()[0][1:]), title.split()[1][:-1]
    picker.select(title).run()
    app.switch_page("pages/data.py").run()  # a look elsewhere first: the pattern chosen is still chosen
    app.switch_page("pages/results.py").run()
    assert next(s for s in app.selectbox if s.label == "Explain one of them").value == title
    next(b for b in app.button if b.label == "Explain it").click().run()
    assert not app.exception
    app.switch_page("pages/explain.py").run()  # where the button went (AppTest would run Results again next)
    assert next(s for s in app.selectbox if s.label == "Patterns from").value == "training data: tiny.h5"
    assert next(n for n in app.number_input if n.label.startswith("Pattern index")).value == index
    assert not app.exception and not app.error  # explained at once (Grad-CAM), without a click on Explain
    headline = next(m.value for m in app.markdown if m.value.startswith(f"Pattern {index}: "))
    assert headline.endswith(f"; true class: **{title.split()[2]}** ({material})")


def test_a_models_training_data_is_found_in_the_sessions_copy_of_it(app, tiny_dataset, tmp_path):
    """The Home page's "latest demo" copies another session's demo dataset into this one: Results looked for the
    model's mistakes only in the other session's file (gone with that session after a day: "not available here"),
    and Explain offered both files, the same patterns twice."""
    import shutil

    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.train import TrainConfig
    from ebsd_core.workflows import train_evaluate_save

    original = shutil.copyfile(tiny_dataset, tmp_path / "demo-elsewhere.h5")
    config = TrainConfig(shots=2, epochs=1, input_size=32, batch_size=8, views=1)
    train_evaluate_save(read_dataset(original), config, tmp_path / "store" / "brief", dataset_path=original)
    copy = shutil.copyfile(original, tmp_path / "demo-copy.h5")
    Path(original).unlink()  # its session has ended
    app.session_state["dataset_path"], app.session_state["dataset_label"] = str(copy), "demo"
    app.switch_page("pages/results.py").run()
    assert not app.exception
    assert not any("not available here" in i.value for i in app.info)
    picker = next(s for s in app.selectbox if s.label == "Explain one of them")
    index = int(picker.value.split()[0][1:])
    next(b for b in app.button if b.label == "Explain it").click().run()
    app.switch_page("pages/explain.py").run()
    sources = next(s for s in app.selectbox if s.label == "Patterns from")
    assert sources.options == ["dataset: demo"]  # as the sidebar names it
    assert next(n for n in app.number_input if n.label.startswith("Pattern index")).value == index


def test_a_pattern_sent_from_the_sessions_dataset_is_offered_once(app, tiny_dataset, tmp_path):
    """The session's dataset named by a relative path (as typed on the Data page) and a model's card naming it
    resolved were offered as two sources of patterns, "dataset: tiny.h5" and "training data: tiny.h5"."""
    from ebsd_core.io.dataset import read_dataset
    from ebsd_core.train import TrainConfig
    from ebsd_core.workflows import train_evaluate_save

    config = TrainConfig(shots=2, epochs=1, input_size=32, batch_size=8, views=1)
    train_evaluate_save(read_dataset(tiny_dataset), config, tmp_path / "store" / "brief", dataset_path=tiny_dataset)
    app.session_state["dataset_path"] = os.path.relpath(tiny_dataset)
    app.session_state["explain_from"], app.session_state["explain_index"] = str(Path(tiny_dataset).resolve()), 3
    app.switch_page("pages/explain.py").run()
    assert not app.exception
    sources = next(s for s in app.selectbox if s.label == "Patterns from")
    assert sources.options == ["dataset: tiny.h5"] and sources.value == "dataset: tiny.h5"
    assert next(n for n in app.number_input if n.label.startswith("Pattern index")).value == 3


def test_a_point_of_a_map_is_explained_at_once_with_the_maps_model(app, monkeypatch, map_model, map_scan_file):
    """Found on review: "Explain this pattern" explained the point with the model then chosen on the page, which
    need not be the one that made the map, and only after another click on Explain."""
    import shutil

    assert map_on_the_page(app, monkeypatch, map_model, map_scan_file).status == "done"
    app.run()
    known = "It knows Austenite (Fm-3m) and Ferrite (Im-3m): a point of any other phase gets one of these"
    assert any(c.value.startswith(known) for c in app.caption)  # a Si scan read Fm-3m at 1.00 with such a model
    shutil.copytree(map_model, Path(os.environ["EBSD_MODEL_STORE"]) / "another")
    app.run()
    app.selectbox(key="map_model").select("another").run()
    from ebsd_core.phasemap import load_phase_map

    alone = load_phase_map(app.session_state["map_path"]).raw_probabilities[0]  # point 0's, before the clean-up
    said = next(c.value for c in app.caption if c.value.startswith("After the grain clean-up"))
    assert said.endswith(
        f"the pattern alone: {'Austenite (Fm-3m)' if alone[0] > alone[1] else 'Ferrite (Im-3m)'} {alone.max():.0%}."
    )
    next(b for b in app.button if b.label == "Explain this pattern").click().run()
    assert not app.exception
    app.switch_page("pages/explain.py").run()  # where the button went (AppTest would run the map page again next)
    assert not app.exception and not app.error
    assert app.selectbox[0].value == "duplex"
    headline = next(m.value for m in app.markdown if m.value.startswith("Row 0, column 0: "))
    assert f"({alone.max():.0%})" in headline  # the answer the map gave (the views of its own that point got)
    assert any(c.value.startswith("The pattern alone, with the views the phase map gave it") for c in app.caption)


def test_the_phase_map_page_names_a_models_test_accuracy_and_warns_of_a_weak_ones_map(
    app, monkeypatch, map_model, map_scan_file, tmp_path
):
    """Where a model is chosen, its accuracy on its own test patterns is named; a map by one surely weak there (5 of
    24) carries the warning, with its most frequent mistake."""
    weak = with_test_score(map_model, tmp_path / "weak", WEAK_TEST)
    assert map_on_the_page(app, monkeypatch, weak, map_scan_file).status == "done"
    app.run()
    assert not app.exception
    assert any(c.value.endswith("It read 21% of its 24 test patterns right.") for c in app.caption)
    warned = "This model read 21% of its 24 test patterns right (most often Im-3m read Fm-3m: 12 of 12): expect many"
    assert any(w.value.startswith(warned) for w in app.warning)


def test_uploads_of_sessions_streamlit_has_ended_are_let_go(monkeypatch):
    """Streamlit holds each upload in the server's memory and never shuts down a session whose tab was closed: three
    600 MB uploads held a server at 3.3 GB for good (bench/upload_memory.py). The once-a-minute release forgets the
    uploads of sessions Streamlit no longer knows, and those only."""
    from types import SimpleNamespace

    from streamlit.runtime import Runtime
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec

    from pages.common import release_memory_of_ended_sessions

    uploads = MemoryUploadedFileManager("/_stcore/upload_file")
    for session in ("open-tab", "closed-tab"):
        uploads.add_file(session, UploadedFileRec(f"{session}-scan", "scan.h5", "application/x-hdf5", b"x" * 1000))
    reaped = []
    stored = SimpleNamespace(_cache=SimpleNamespace(expire=lambda: reaped.append(True)))
    sessions = SimpleNamespace(
        list_sessions=lambda: [SimpleNamespace(session=SimpleNamespace(id="open-tab"))], _session_storage=stored
    )
    runtime = SimpleNamespace(uploaded_file_mgr=uploads, _session_mgr=sessions)
    monkeypatch.setattr(Runtime, "exists", classmethod(lambda cls: True))
    monkeypatch.setattr(Runtime, "instance", classmethod(lambda cls: runtime))
    release_memory_of_ended_sessions.clear()
    try:
        assert release_memory_of_ended_sessions() == 1
    finally:
        release_memory_of_ended_sessions.clear()
    assert list(uploads.file_storage) == ["open-tab"] and reaped == [True]


def test_the_streamlit_internals_the_release_relies_on_are_there():
    """Where a Streamlit version renames them, the release would do nothing, unsaid: this says so."""
    import inspect

    from streamlit.runtime import Runtime
    from streamlit.runtime.memory_session_storage import MemorySessionStorage
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.websocket_session_manager import WebsocketSessionManager

    assert isinstance(MemoryUploadedFileManager("/_stcore/upload_file").file_storage, dict)
    assert callable(MemorySessionStorage()._cache.expire)
    assert "self._session_storage = " in inspect.getsource(WebsocketSessionManager.__init__)
    assert callable(WebsocketSessionManager.list_sessions)
    assert "self._session_mgr = " in inspect.getsource(Runtime.__init__)
    assert callable(Runtime.is_active_session)  # pages.common.open_tabs
