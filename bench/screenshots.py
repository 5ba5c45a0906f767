"""The README's screenshots of the dashboard, taken again as a person would click.

Needs Chromium (``make test`` installs it) and Playwright (requirements-dev.txt). Starts a dashboard of its own on
a free port with an empty working folder and store, so that the pictures show what a fresh clone shows: the demo at
its default epochs, the same dataset trained from ImageNet and from scratch side by side for as many epochs (the
paper's comparison), its results, the Data page, the Ni/Ni3Al demo map and SHAP on a point of it; about 9 minutes
on 2 cores. Writes PNGs to ``--out`` (default ``docs/screenshots``, where the README shows them; with ``--quick``,
1 epoch and no phase map, into bench/out/screenshots) and prints JSON with what each page showed.
``phasemap_regions.png`` is not retaken: it needs the real SDSS layout labelled by hand (bench/RESULTS.md).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import OUT, ROOT, clean_up_on_sigterm, emit, parser

sys.path.insert(0, str(ROOT / "tests"))
from serving import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_FLAGS,
    free_port,
    start_dashboard,
    stop_dashboard,
    wait_until_idle,
)

VIEWPORT = {"width": 1400, "height": 1000}
FIRST_RUN_MS = 180_000  # a page's first run imports PyTorch
JOB_MS = 600_000
TRAINED = re.compile(r"; trained in [0-9.]+ s$")  # a finished run's line on the Train page


def _shot(page, out: Path, name: str, anchor: str | re.Pattern | None = None) -> str:
    """Save the viewport as ``name``.png, once the page's script has ended, scrolled so that the text ``anchor``
    is at its top."""
    wait_until_idle(page, FIRST_RUN_MS)
    if anchor is not None:
        page.get_by_text(anchor).first.evaluate("node => node.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(2000)  # plotly's transitions and Streamlit's fade-in
    path = out / f"{name}.png"
    page.screenshot(path=str(path))
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def _demo(page, out: Path, shown: dict, epochs: int | None) -> int:
    """Home's demo (at ``epochs``, or Home's default), then the Data page; returns the demo's epochs."""
    page.get_by_text("Few-shot EBSD pattern classification").wait_for(timeout=FIRST_RUN_MS)
    shown["home"] = _shot(page, out, "home")
    epochs_field = page.get_by_test_id("stNumberInputField")
    if epochs is not None:
        epochs_field.fill(str(epochs))
        page.keyboard.press("Enter")
        page.wait_for_timeout(1500)  # the rerun the new value starts, before the click starts another
    epochs = int(epochs_field.input_value())
    start = time.perf_counter()
    page.get_by_role("button", name="Run the demo").click()
    page.get_by_text("Finished: the model is in the store.").wait_for(timeout=JOB_MS)
    shown["demo_s"] = round(time.perf_counter() - start, 1)
    shown["demo_result"] = page.get_by_text(TRAINED).first.inner_text()
    wait_until_idle(page)
    page.get_by_role("link", name="Data").click()
    page.get_by_text("Active dataset").wait_for(timeout=60_000)
    shown["data"] = _shot(page, out, "data")
    return epochs


def _comparison(page, out: Path, shown: dict, epochs: int) -> None:
    """The Train page's transfer and scratch side by side, then the Results page."""
    page.get_by_role("link", name="Train").click()
    _transfer_and_scratch(page, epochs)
    shown["train"] = _shot(page, out, "train", anchor=re.compile(r": 2 runs$"))
    shown["comparison"] = [line.inner_text() for line in page.get_by_text(TRAINED).all()]
    page.get_by_role("link", name="See the results").click()
    page.get_by_text("Unseen orientations", exact=True).wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").nth(2).wait_for(timeout=60_000)
    shown["results"] = _shot(page, out, "results")


def _transfer_and_scratch(page, epochs: int) -> None:
    """The paper's comparison on the Train page: the demo's dataset, ImageNet transfer and scratch side by side."""
    page.get_by_text("both side by side").click(timeout=FIRST_RUN_MS)
    field = page.get_by_test_id("stNumberInput").filter(has_text=re.compile(r"^Epochs"))
    field.get_by_test_id("stNumberInputField").fill(str(epochs))
    page.keyboard.press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Finished: the 2 models are in the store.").wait_for(timeout=JOB_MS)


def _phase_map_and_explain(page, out: Path, shown: dict) -> None:
    page.get_by_role("link", name="Phase map").click()
    page.get_by_role("button", name="Run the demo map").click(timeout=FIRST_RUN_MS)
    start = time.perf_counter()
    page.get_by_text("Map accuracy (ground truth known)").wait_for(timeout=JOB_MS)
    shown["demo_map_s"] = round(time.perf_counter() - start, 1)
    metric = page.get_by_test_id("stMetric").filter(has_text="Map accuracy").first
    shown["map_accuracy"] = [line for line in metric.inner_text().splitlines()[1:] if line]
    shown["phasemap"] = _shot(page, out, "phasemap", anchor=re.compile(r": \d+ x \d+ points$"))
    chart = page.locator(".js-plotly-plot").first
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.6)
    page.wait_for_timeout(3000)
    page.get_by_role("button", name="Explain this pattern").click(timeout=60_000)
    page.get_by_text("SHAP (Shapley values").click(timeout=FIRST_RUN_MS)
    page.get_by_text("SHAP explainer").wait_for(timeout=60_000)
    page.get_by_role("button", name="Explain", exact=True).click(timeout=60_000)
    page.get_by_text("Evidence on Kikuchi bands").wait_for(timeout=300_000)
    shown["explained"] = page.get_by_text(re.compile(r"; explaining ")).first.inner_text()
    shown["explain"] = _shot(page, out, "explain", anchor=re.compile(r"; explaining "))


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--out", type=Path, help="folder of the PNGs")
    args = p.parse_args()
    clean_up_on_sigterm()
    out = args.out or (OUT / "screenshots" if args.quick else ROOT / "docs" / "screenshots")
    if CHROMIUM is None:
        sys.exit("error: no Chromium on the PATH (make test installs it)")
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="screenshots-"))
    env = {"EBSD_FEWSHOT_HOME": str(work / "home"), "EBSD_MODEL_STORE": str(work / "store")}
    port = free_port()
    shown: dict = {}
    try:
        server = start_dashboard(port, env, timeout_s=120, log=work / "server.log")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(f"http://127.0.0.1:{port}")
                epochs = _demo(page, out, shown, epochs=1 if args.quick else None)
                if not args.quick:  # with the Home demo's model, which the demo map replaces by a model for the pair
                    _phase_map_and_explain(page, out, shown)
                _comparison(page, out, shown, epochs)
                browser.close()
        finally:
            stop_dashboard(server)
    except Exception:
        log = work / "server.log"  # what the server said, before its folder goes
        print(log.read_text(errors="replace")[-4000:] if log.exists() else "no server log", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit({"benchmark": "screenshots", **shown})


if __name__ == "__main__":
    main()
