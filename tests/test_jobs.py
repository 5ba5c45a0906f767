"""Jobs run library code on worker threads next to the server's script threads."""

import ast
import gc
import sys
import threading
from pathlib import Path

from ebsd_core.jobs import JobManager


class _Finaliser:
    def __del__(self):
        sum(range(50))  # Python code run by the garbage collector: another thread may take the GIL here


def _parse_while_collecting(source: str, errors: list[str], rounds: int) -> None:
    for _ in range(rounds):
        for _ in range(200):  # cyclic garbage, so that the collector runs finalisers in the middle of a parse
            garbage = _Finaliser()
            garbage.cycle = garbage
        try:
            ast.parse(source)
        except SystemError as exc:
            errors.append(str(exc))
            return


def test_threads_parse_python_at_once_without_a_system_error(tmp_path):
    """On CPython 3.11.7 this raised "AST constructor recursion depth mismatch" within a second (python/cpython#106905),
    as the dashboard's demo did in CI when its job imported kikuchipy while Streamlit parsed the Train page."""
    JobManager(tmp_path / "jobs")  # a job manager makes the process safe before its first worker thread
    source = Path(ast.__file__).read_text()
    errors: list[str] = []
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(50, 2, 2)
    try:
        threads = [threading.Thread(target=_parse_while_collecting, args=(source, errors, 20)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
    assert errors == []
