"""Load: N concurrent sessions against one dashboard server on localhost.

Each session opens the app (page-load latency: index.html, websocket, until the Home page's
script run has finished and its title is in the messages), goes to Phase map, picks a small
scan by server path and classifies it with a small saved model (prediction latency: click to
"Map accuracy" shown), for ``--rounds`` rounds. After one warm-up load (reported apart: the
first run of a fresh server imports torch and friends), the sessions start together.

``--client protocol`` (default) speaks Streamlit's websocket protocol directly, so the figures
are the server's; ``--client browser`` drives headless Chromium instead, which on this 2-core
machine measures mostly the browsers (20 Chromiums rendering React compete with the server).

Target (issue #7): 0 errors, p95 page load < 3 s with 20 sessions.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from _common import ROOT, clean_up_on_sigterm, emit, parser

sys.path.insert(0, str(ROOT / "tests"))
from serving import CHROMIUM, start_dashboard  # noqa: E402
from serving import CHROMIUM_FLAGS as FLAGS  # noqa: E402


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
    env = {"EBSD_MODEL_STORE": str(store), "EBSD_DATA_ROOT": str(root), "EBSD_FEWSHOT_HOME": str(folder / "home")}
    return start_dashboard(port, env)


class ProtocolSession:
    """Speaks Streamlit's websocket protocol like the browser does (BackMsg out, ForwardMsg in)."""

    def __init__(self, url: str):
        self.url = url
        self.query_string = ""
        self.pages: dict[str, str] = {}  # page name -> script hash
        self.widgets: dict[str, str] = {}  # label -> widget id of the last run
        self.states: dict[str, object] = {}
        self.exceptions: list[str] = []
        self.ws = None

    async def open(self) -> None:
        import websockets

        with urllib.request.urlopen(self.url, timeout=60) as response:  # index.html, as a browser would
            response.read()
        ws_url = self.url.replace("http", "ws", 1) + "/_stcore/stream"
        self.ws = await websockets.connect(ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=120)

    async def run(self, page: str | None = None, trigger: str | None = None) -> bytes:
        """One script run; returns the raw bytes of everything it sent (for text checks)."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query_string
        if page:
            state.page_script_hash = self.pages[page]
        for label, value in self.states.items():
            widget = state.widget_states.widgets.add(id=self.widgets[label])
            widget.string_value = value
        if trigger:
            state.widget_states.widgets.add(id=self.widgets[trigger], trigger_value=True)
        await self.ws.send(msg.SerializeToString())
        return await self._until_finished()

    async def _until_finished(self) -> bytes:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        seen = []
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout=300)
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            seen.append(raw)
            if kind == "navigation":
                self.pages = {p.page_name: p.page_script_hash for p in msg.navigation.app_pages}
            elif kind == "page_info_changed":
                self.query_string = msg.page_info_changed.query_string
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                inner = getattr(element, element.WhichOneof("type"))
                if element.WhichOneof("type") == "exception":
                    self.exceptions.append(inner.message)
                if hasattr(inner, "id") and hasattr(inner, "label") and inner.id:
                    self.widgets[inner.label] = inner.id
            elif kind == "script_finished":
                return b"".join(seen)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def protocol_session(url, rounds, loads, predictions, errors):
    try:
        for _ in range(rounds):
            client = ProtocolSession(url)
            start = time.perf_counter()
            await client.open()
            body = await client.run()
            if b"Few-shot EBSD pattern classification" not in body:
                raise RuntimeError("the Home page did not render its title")
            loads.append(time.perf_counter() - start)
            await client.run(page="Phase map")
            label = next(k for k in client.widgets if k.startswith("Scan path under"))
            client.states[label] = "scan.h5"
            await client.run(page="Phase map")
            start = time.perf_counter()
            await client.run(page="Phase map", trigger="Classify every pattern")
            while True:  # the browser's run_every fragment polls; a full rerun does the same
                await asyncio.sleep(1.0)
                if b"Map accuracy" in await client.run(page="Phase map"):
                    break
                if time.perf_counter() - start > 300:
                    raise TimeoutError("no map within 300 s")
            predictions.append(time.perf_counter() - start)
            if client.exceptions:
                raise RuntimeError(f"the app raised: {client.exceptions[0][:160]}")
            await client.close()
    except Exception as exc:  # an error of this session: count it, keep the others going
        errors.append(f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")


async def browser_session(browser, url: str, rounds: int, loads: list, predictions: list, errors: list) -> None:
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


async def drive(url: str, sessions: int, rounds: int, client: str) -> dict:
    loads, predictions, errors = [], [], []
    start = time.perf_counter()
    warm = ProtocolSession(url)  # the first run of a fresh server imports torch & co.: report it apart
    await warm.open()
    await warm.run()
    await warm.close()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    if client == "protocol":
        await asyncio.gather(*(protocol_session(url, rounds, loads, predictions, errors) for _ in range(sessions)))
    else:
        from playwright.async_api import async_playwright

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            await asyncio.gather(
                *(browser_session(browser, url, rounds, loads, predictions, errors) for _ in range(sessions))
            )
            await browser.close()
    wall = time.perf_counter() - start

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
        "client": client,
        "sessions": sessions,
        "rounds": rounds,
        "wall_s": round(wall, 1),
        "cold_first_load_s": round(cold, 2),
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
    p.add_argument(
        "--client",
        choices=["protocol", "browser"],
        default="protocol",
        help="protocol: Streamlit's websocket protocol, no browser (the server's cost); browser: headless Chromium",
    )
    args = p.parse_args()
    clean_up_on_sigterm()
    if args.quick:
        args.sessions, args.rounds = 4, 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store, root = prepare(folder)
        server = start_server(folder, store, root, args.port)
        try:
            result = asyncio.run(drive(f"http://127.0.0.1:{args.port}", args.sessions, args.rounds, args.client))
        finally:
            server.terminate()
            server.wait(timeout=30)
    emit({"benchmark": "load", **result})
