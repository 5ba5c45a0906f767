"""Access control: scrypt password hashes and the dashboard's password gate."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ebsd_core.access import hash_password, verify_password
from ebsd_core.errors import InputError

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_hash_roundtrip_and_refusals():
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct hors", stored)
    assert hash_password("correct horse") != stored  # salted
    for malformed in ("", "plain", "md5$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", stored[:-8]):
        assert not verify_password("correct horse", malformed)
    with pytest.raises(InputError, match="8 characters"):
        hash_password("short")


@pytest.fixture
def gated(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSD_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path / "home"))
    app = AppTest.from_file(APP, default_timeout=60)
    app.secrets["access"] = {"password_hash": hash_password("lab password 1")}
    return app


def test_password_gate(gated):
    gated.run()
    assert not gated.exception
    assert [t.label for t in gated.text_input] == ["Lab password"]
    assert not any("Few-shot EBSD" in t.value for t in gated.title)
    gated.text_input[0].input("guess")
    gated.button[0].click().run()
    assert any("Wrong password" in e.value for e in gated.error)
    gated.text_input[0].input("lab password 1")
    gated.button[0].click().run()
    assert not gated.exception
    assert any("Few-shot EBSD" in t.value for t in gated.title)


@pytest.mark.cold_server
@pytest.mark.parametrize("page", ["pages/results.py", "pages/train.py", "pages/phasemap.py"])
def test_a_deep_link_to_a_freshly_started_server_still_asks_for_the_password(gated, page):
    """Streamlit runs a bookmarked page alone on a fresh server (its pages/ folder fallback): no way round the login."""
    gated.switch_page(page).run()
    assert not gated.exception
    assert [t.label for t in gated.text_input] == ["Lab password"]
    assert [t.value for t in gated.title] == ["EBSD few-shot classifier"]  # the login, not the page


def test_open_without_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("EBSD_FEWSHOT_HOME", str(tmp_path / "home"))
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert any("Few-shot EBSD" in t.value for t in app.title)
