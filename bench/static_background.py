"""Patterns as recorded vs patterns that have had their static background removed, told apart by the background.

For every real scan beside the project that carries a static background (``../shared/data/real``, and kikuchipy's own
NORDIF example), the Pearson correlation of the mean of its patterns (spread over it, as the reader takes them) with
that background, as recorded and after kikuchipy's static, dynamic and both background removals: the reader subtracts
a file's background only above ``ebsd_core.io.readers.RAW_PATTERN_CORRELATION``. With ``--model NAME``, also how far a
model's probabilities move from its reading of the recorded patterns when processed patterns get the background again,
and when they do not. Prints JSON; about 10 s without a model.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from _common import SHARED, emit, parser

from ebsd_core.io.readers import RAW_PATTERN_CORRELATION, image_correlation, spread_mean

PROCESSING = {
    "static removed": ("remove_static_background",),
    "dynamic removed": ("remove_dynamic_background",),
    "both removed": ("remove_static_background", "remove_dynamic_background"),
}


def _scans() -> list:
    import kikuchipy as kp

    found = sorted((SHARED / "real").glob("*/*.h5")) if (SHARED / "real").is_dir() else []
    found.append(kp.data.__file__.rsplit("/", 1)[0] + "/nordif/Pattern.dat")
    return found


def _largest_change(classifier, signal, reference, **given) -> float:
    table = classifier.classify(signal, **given)
    return round(float(np.abs(table.filter(like="p_").to_numpy() - reference).max()), 3)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--model", help="a saved model (name or folder) whose readings to compare")
    args = p.parse_args()
    import kikuchipy as kp

    logging.disable(logging.WARNING)  # the readers' notes on every processed signal
    warnings.filterwarnings("ignore")
    classifier = None
    if args.model:
        from ebsd_core.api import load_classifier

        classifier = load_classifier(args.model)
    result = {"benchmark": "static_background", "threshold": RAW_PATTERN_CORRELATION, "scans": {}}
    for path in _scans():
        signal = kp.load(str(path))
        if signal.static_background is None:
            continue
        background = np.asarray(signal.static_background)
        row = {"as recorded": round(image_correlation(spread_mean(signal.data, background.shape)[0], background), 3)}
        reference = None if classifier is None else classifier.classify(signal).filter(like="p_").to_numpy()
        if classifier is not None:  # what leaving it out of recorded patterns would do
            row["as recorded: change without it"] = _largest_change(classifier, signal.data, reference)
        for name, steps in PROCESSING.items():
            processed = signal.deepcopy()
            for step in steps:
                getattr(processed, step)(show_progressbar=False)
            row[name] = round(image_correlation(spread_mean(processed.data, background.shape)[0], background), 3)
            if classifier is not None:
                row[f"{name}: change subtracted again"] = _largest_change(
                    classifier, processed.data, reference, static_background=background
                )
                row[f"{name}: change without it"] = _largest_change(classifier, processed.data, reference)
        result["scans"]["/".join(str(path).split("/")[-2:])] = row
    emit(result)


if __name__ == "__main__":
    main()
