"""Memory and time of loading a saved model (``ebsd_core.store.load_model``), per backbone.

Each model is trained for one step on a tiny simulated set and saved, then loaded in a fresh process: once to warm
the imports, then again with the peak resident memory reset (``/proc/self/clear_refs``), which gives how much more
memory the load took at its peak than the process held before it, next to the size of the weights. Linux only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, emit, parser

MEASURE = """
import gc, json, sys, time
from ebsd_core.store import load_model

def mib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field)) / 1024

load_model(sys.argv[1])
gc.collect()
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # the peak resident memory starts again from here
before = mib("VmRSS")
start = time.perf_counter()
model, _ = load_model(sys.argv[1])
seconds = time.perf_counter() - start
tensors = [*model.parameters(), *model.buffers()]
weights = sum(t.numel() * t.element_size() for t in tensors) / 2**20
print(json.dumps({"weights_mib": round(weights, 1), "peak_above_start_mib": round(mib("VmHWM") - before, 1),
                  "seconds": round(seconds, 3)}))
"""


def saved_model(backbone: str, folder: Path) -> Path:
    from ebsd_core.datasets import simulate_dataset
    from ebsd_core.store import save_model
    from ebsd_core.train import TrainConfig, train_model

    dataset = simulate_dataset(per_class=6, phases=["austenite", "ferrite"], size=32, seed=5)
    config = TrainConfig(
        backbone=backbone,
        pretrained=False,
        shots=2,
        epochs=1,
        input_size=64,
        batch_size=4,
        min_steps_per_epoch=1,
        val_per_class=2,
    )
    result = train_model(dataset, config)
    return save_model(result.model, result.card, folder / backbone)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    backbones = ["efficientnet_lite0"] if args.quick else ["efficientnet_lite0", "resnet18", "xception41"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in backbones:
            path = saved_model(backbone, Path(tmp))
            run = subprocess.run(
                [sys.executable, "-c", MEASURE, str(path)], cwd=ROOT, capture_output=True, text=True, check=True
            )
            results[backbone] = json.loads(run.stdout.strip().splitlines()[-1])
    emit({"benchmark": "model_load", "models": results})


if __name__ == "__main__":
    main()
