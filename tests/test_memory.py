"""Freed memory is kept for reuse where glibc allocates, and `make app` asks for the same."""

import platform
import re

import pytest
from conftest import ROOT

from ebsd_core import memory


@pytest.fixture
def fresh_lookup():
    memory._glibc.cache_clear()
    yield
    memory._glibc.cache_clear()


@pytest.mark.skipif(platform.system() != "Linux", reason="glibc only")
def test_glibc_takes_the_settings_and_gives_memory_back(fresh_lookup):
    if memory._glibc() is None:
        pytest.skip("not glibc")
    assert memory.keep_freed_memory()
    memory.release_freed_memory()


def test_switched_off_by_the_environment(fresh_lookup, monkeypatch):
    monkeypatch.setenv("EBSD_KEEP_FREED_MEMORY", "0")
    assert not memory.keep_freed_memory()
    assert memory.worker_environment() == {}
    memory.release_freed_memory()  # a no-op, without error


def test_make_app_starts_the_dashboard_with_the_same_settings():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^MALLOC_TUNABLES := (\S+)$", makefile, re.M).group(1) == memory.GLIBC_TUNABLES
    assert "GLIBC_TUNABLES=$(if $(filter 0,$(EBSD_KEEP_FREED_MEMORY)),,$(MALLOC_TUNABLES))" in makefile
