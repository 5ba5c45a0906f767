"""Load: N concurrent browser sessions against one dashboard server on localhost.

Each session opens the app (page-load latency: until the Home title renders), goes to
Phase map, picks a small scan by server path and classifies it with a small saved
model (prediction latency: click to map accuracy shown), for ``--rounds`` rounds.
The browsers run on the same 2-core machine as the server, so the figures are
an upper bound of what the server alone costs.

Target (issue #7): 0 errors, p95 page load < 3 s with 20 sessions.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from _common import ROOT, emit, parser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def prepare(folder: Path) -> tuple[Path, Path]:
    """A small duplex model in a store and a 8x10 scan under a data root."""
    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.io.dataset import write_dataset
    from ebsd_core.phases import get_material
    from ebsd_core.simulate_map import simulate_scan, voronoi_layout
    from ebsd_core.store import save_model
    from ebsd_core.train import TrainConfig, train_model

    dataset = simulate_dataset(per_class=12, phases=["austenite", "ferrite"], size=32, seed=0)
    result = train_model(dataset, TrainConfig(shots=4, epochs=1, input_size=32, min_steps_per_epoch=2))
    store = folder / "store"
    save_model(result.model, result.card, store / "duplex")
    root = folder / "data"
    layout = voronoi_layout([get_material("austenite"), get_material("ferrite")], (8, 10), seed=1)
    write_dataset(simulate_scan(layout, size=32, seed=1), root / "scan.h5")
    return store, root


def start_server(folder: Path, store: Path, root: Path, port: int) -> subprocess.Popen:
    env = os.environ | {
        "EBSD_MODEL_STORE": str(store),
        "EBSD_DATA_ROOT": str(root),
        "EBSD_FEWSHOT_HOME": str(folder / "home"),
    }
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app.py"),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
            return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the server did not start")


async def session(browser, url: str, rounds: int, loads: list, predictions: list, errors: list) -> None:
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    page = await context.new_page()
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            await page.goto(url)
            await page.get_by_text("Few-shot EBSD pattern classification").wait_for(timeout=120_000)
            loads.append(time.perf_counter() - start)
            await page.get_by_role("link", name="Phase map").first.click()
            await page.get_by_text("Server path").click()
            box = page.get_by_label("Scan path under", exact=False)
            await box.fill("scan.h5")
            await box.press("Enter")
            start = time.perf_counter()
            await page.get_by_role("button", name="Classify every pattern").click(timeout=120_000)
            await page.get_by_text("Map accuracy (ground truth known)").wait_for(timeout=300_000)
            predictions.append(time.perf_counter() - start)
    except Exception as exc:  # an error of this session: count it, keep the others going
        errors.append(f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:160]}")
    finally:
        await context.close()


async def drive(url: str, sessions: int, rounds: int) -> dict:
    from playwright.async_api import async_playwright

    loads, predictions, errors = [], [], []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        start = time.perf_counter()
        await asyncio.gather(*(session(browser, url, rounds, loads, predictions, errors) for _ in range(sessions)))
        wall = time.perf_counter() - start
        await browser.close()

    def stats(values):
        return (
            {
                "n": len(values),
                "p50_s": round(float(np.percentile(values, 50)), 2),
                "p95_s": round(float(np.percentile(values, 95)), 2),
            }
            if values
            else {"n": 0}
        )

    return {
        "sessions": sessions,
        "rounds": rounds,
        "wall_s": round(wall, 1),
        "page_load": stats(loads),
        "prediction": stats(predictions),
        "errors": len(errors),
        "error_messages": errors[:5],
    }


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--port", type=int, default=8612)
    args = p.parse_args()
    if args.quick:
        args.sessions, args.rounds = 4, 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store, root = prepare(folder)
        server = start_server(folder, store, root, args.port)
        try:
            result = asyncio.run(drive(f"http://127.0.0.1:{args.port}", args.sessions, args.rounds))
        finally:
            server.terminate()
            server.wait(timeout=30)
    emit({"benchmark": "load", **result})
