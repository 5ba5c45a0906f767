"""Workflows shared by the CLI and the dashboard."""

import json
import shutil

from ebsd_core.workflows import latest_demo_model


def _copy(model, store, name, created):
    shutil.copytree(model, store / name)
    card = store / name / "model.json"
    card.write_text(json.dumps({**json.loads(card.read_text()), "created": created}))


def test_the_latest_demo_model_is_the_newest_the_home_demo_saved(tmp_path, map_model):
    store = tmp_path / "store"
    assert latest_demo_model(store) is None
    _copy(map_model, store, "demo-00000000000a", "2026-12-03T10:00:00+00:00")
    _copy(map_model, store, "demo-00000000000b", "2026-12-03T11:00:00+00:00")
    _copy(map_model, store, "demo-map-ni-ni3al-00000000000c", "2026-12-03T12:00:00+00:00")  # the map demo's
    _copy(map_model, store, "demo-mine", "2026-12-03T12:00:00+00:00")  # a user's own name
    latest = latest_demo_model(store)
    assert latest["name"] == "demo-00000000000b" and latest["epochs"] == 2
