"""The 240 px few-shot curve over the paper's whole range (1-100 shots per class), drawn from the measured means.

The runs behind it were made over several sessions on two machines (``bench/fewshot.py --prior --size 240
--input-size 224 --rehearse 80 --rehearse-from catalogue --camera-binning 4``, transfer from an EBSD prior
against the same network from scratch), and their per-run outputs (``bench/out``) did not all stay on one
machine, so ``fewshot-merge`` cannot join them. This script holds the means, standard deviations and seeds
recorded for each point in bench/RESULTS.md (section named per point) and draws them with the sweep's own
plot, ``ebsd_core.fewshot_curve.plot_curve``, into docs/fewshot_curve_240.png. 1-20 shots were run on a
dataset of 80 patterns per class, 50 and 100 on one of 160 per class (another test split; marked in the plot).
"""

from __future__ import annotations

from _common import ROOT, emit, parser

from ebsd_core.fewshot_curve import TARGETS, plot_curve, transfer_beats_scratch

# shots -> (seeds, unseen mean, std, held-out mean, std, bench/RESULTS.md section it is recorded in)
TRANSFER = {
    1: ([0, 1, 2], 0.776, 0.050, 0.746, 0.060, "Eighteenth session: 1, seeds 0-2"),
    5: ([0, 1, 2], 0.919, 0.025, 0.862, 0.004, "Twenty-second session: 5, seeds 0-2"),
    10: ([0, 1, 2], 0.957, 0.017, 0.890, 0.018, "Twenty-first session: 10, seeds 0-2"),
    20: ([0, 1, 2], 0.985, 0.002, 0.947, 0.018, "Camera binning in training: 3 seeds"),
    50: ([0, 1, 2], 0.988, 0.006, 0.936, 0.025, "Twenty-sixth session: 50, seeds 0-2 (transfer)"),
    100: ([0, 1, 2], 0.993, 0.005, 0.969, 0.016, "Twenty-fifth session: 100, seeds 0-2"),
}
SCRATCH = {
    1: ([0, 1, 2], 0.290, 0.091, 0.222, 0.052, "Eighteenth session: 1, seeds 0-2"),
    5: ([0, 1, 2], 0.719, 0.021, 0.585, 0.015, "Twenty-second session: 5, seeds 0-2"),
    10: ([0, 1, 2], 0.790, 0.013, 0.601, 0.020, "Twenty-first session: 10, seeds 0-2"),
    20: ([0, 1, 2], 0.824, 0.018, 0.563, 0.067, "Twenty-second session: 20, seeds 0-2, scratch"),
    50: ([0, 1, 2], 0.792, 0.011, 0.620, 0.067, "Twenty-seventh session: 50, scratch seed 2"),
    100: ([0, 1, 2], 0.806, 0.012, 0.589, 0.033, "Twenty-fifth session: 100, seeds 0-2"),
}
NOTE = "1-20 shots: 80 patterns per class; 50 and 100: 160 per class (another test split). n = seeds per point."


def summary() -> dict:
    """The recorded points in the form ``ebsd_core.fewshot_curve.summarise`` gives them."""
    return {
        mode: {
            str(k): {
                "seeds": seeds,
                "test_accuracy": unseen,
                "test_accuracy_std": unseen_std,
                "holdout_accuracy": held_out,
                "holdout_accuracy_std": held_out_std,
                "recorded_in": section,
            }
            for k, (seeds, unseen, unseen_std, held_out, held_out_std, section) in points.items()
        }
        for mode, points in (("scratch", SCRATCH), ("transfer", TRANSFER))
    }


def main() -> None:
    parser(__doc__).parse_args()  # --quick draws the same figure: it only reads the table above
    curve = summary()
    out = ROOT / "docs" / "fewshot_curve_240.png"
    plot_curve(curve, out, targets=TARGETS, note=NOTE)
    emit({"plot": str(out.relative_to(ROOT)), "transfer_beats_scratch": transfer_beats_scratch(curve, 100), **curve})


if __name__ == "__main__":
    main()
