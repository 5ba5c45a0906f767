"""Dashboard page render time after the first load (AppTest, no browser). Target: < 2 s per page."""

from __future__ import annotations

import os
import sys
import tempfile
import time

from _common import ROOT, emit, parser

sys.path.insert(0, str(ROOT / "tests"))
from serving import as_running_server  # noqa: E402

PAGES = ["pages/home.py", "pages/data.py", "pages/train.py", "pages/results.py"]


def main() -> None:
    args = parser(__doc__).parse_args()
    os.environ.setdefault("EBSD_FEWSHOT_HOME", tempfile.mkdtemp())
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    PagesManager.__init__ = as_running_server(PagesManager.__init__)

    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    start = time.perf_counter()
    app.run()
    first = time.perf_counter() - start
    timings = {}
    for page in PAGES:
        app.switch_page(page).run()  # first visit of this page (imports)
        runs = []
        for _ in range(2 if args.quick else 5):
            start = time.perf_counter()
            app.run()
            runs.append(time.perf_counter() - start)
        timings[page] = round(max(runs), 3)
    emit({"benchmark": "pages", "first_load_s": round(first, 2), "rerun_max_s": timings, "target_s": 2.0})


if __name__ == "__main__":
    main()
