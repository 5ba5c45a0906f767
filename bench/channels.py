"""Grey patterns into an RGB-pretrained network: adapted 1-channel stem vs replicated 3 channels.

Same data, shots, seeds and schedule; reports test accuracy and training time of each.
"""

from __future__ import annotations

import numpy as np
from _common import OUT, emit, parser

from ebsd_core.datasets import simulate_dataset
from ebsd_core.train import TrainConfig, evaluate_split, train_model


def main() -> None:
    args = parser(__doc__).parse_args()
    seeds = [0] if args.quick else [0, 1, 2]
    epochs = 6 if args.quick else 12
    OUT.mkdir(parents=True, exist_ok=True)
    dataset = simulate_dataset(per_class=60, size=120, seed=7)
    result = {"benchmark": "channels", "epochs": epochs, "shots": 20, "seeds": seeds, "classes": 6}
    for mode in ("adapt", "replicate"):
        accuracies, seconds = [], []
        for seed in seeds:
            config = TrainConfig(shots=20, epochs=epochs, input_size=128, seed=seed, channel_mode=mode, patience=epochs)
            trained = train_model(dataset, config)
            accuracies.append(evaluate_split(trained.model, trained.card, dataset, trained.split.test)["accuracy"])
            seconds.append(trained.seconds)
        result[mode] = {
            "test_accuracy": round(float(np.mean(accuracies)), 4),
            "seconds": round(float(np.mean(seconds)), 1),
        }
    emit(result)


if __name__ == "__main__":
    main()
