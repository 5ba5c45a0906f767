"""Fuzzing every reader: mutated files are read or refused with the project's own error, never crash or hang.

``make test`` runs FUZZ_CASES (200) cases per format; ``bench/fuzz.py`` runs 1,000+.
"""

import os
from pathlib import Path

import pytest
from fuzzing import FORMATS, case_file, outcome
from hypothesis import HealthCheck, given, settings

FUZZ_CASES = int(os.environ.get("EBSD_FUZZ_CASES", "200"))


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    return {name: _make(fmt, folder / name) for name, fmt in FORMATS.items()}


def _make(fmt, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return fmt.make(folder)


@pytest.mark.parametrize("name", list(FORMATS))
def test_valid_sample_reads(samples, name):
    assert outcome(FORMATS[name].read, samples[name]) == "read"


@pytest.mark.parametrize("name", list(FORMATS))
def test_mutated_files_are_read_or_refused(samples, name, tmp_path_factory):
    target, strategy = case_file(name, samples[name], tmp_path_factory.mktemp(f"case-{name}"))

    @settings(
        max_examples=FUZZ_CASES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(strategy)
    def case(data):
        target.write_bytes(data)
        outcome(FORMATS[name].read, target)

    case()
