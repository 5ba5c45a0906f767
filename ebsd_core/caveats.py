"""What a user should know before trusting a model's reading of a scan or pattern.

Pattern sizes the model was not trained on, small simulated scans, recorded patterns read by a
model that has seen only simulations, and a model surely weak on its own test patterns. ``predict``,
phase maps and explanations show these notes with their results; each is backed by a measurement in
``bench/RESULTS.md``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import numpy as np

from ebsd_core.errors import ModelError
from ebsd_core.io.dataset import made_by_simulator
from ebsd_core.io.readers import PatternSource
from ebsd_core.preprocess import BLANK_CAUSES
from ebsd_core.store import ModelCard
from ebsd_core.wording import counted

# scans this many times coarser than the training patterns get the advice below; a 240 px model scored
# 0.996 / 0.983 / 0.771 on simulated unseen orientations at 240 / 120 / 60 px (bench/RESULTS.md)
SMALL_CAMERA_FACTOR = 3


def check_pattern_size(source: PatternSource, card: ModelCard, allow_resize: bool = True) -> list[str]:
    """Warn (or refuse) when the scan's pattern size differs from what the model was trained on."""
    trained = card.training.get("pattern_size")
    shape = source.pattern_shape
    if not trained or tuple(shape) == (int(trained), int(trained)):
        return []
    square = "" if shape[0] == shape[1] else "centre-cropped to a square and "
    message = (
        f"patterns are {shape[1]}x{shape[0]} px but the model was trained on {trained}x{trained} px "
        f"simulations; they are {square}resized to {card.input_size}x{card.input_size} like the training data"
    )
    if not allow_resize:
        raise ModelError(message.split(";")[0] + " (resizing was not allowed)", source.path)
    binning = int(trained) / max(1, min(shape))
    if binning >= SMALL_CAMERA_FACTOR and card.training.get("augment", {}).get("resolution", 1) < binning - 0.5:
        message += (
            f". Patterns {binning:.0f}x coarser than the training data are read much worse (a 240 px model: "
            f"0.996 right at 240 px, 0.771 at 60 px); train for cameras binned {round(binning)}x (--camera-binning "
            f"{round(binning)}, or the Train page's 'Also train for cameras binned up to') or on {min(shape)} px "
            "simulations"
        )
    return [message]


#: Shown when a model trained on simulated patterns alone reads a recorded scan (bench/RESULTS.md, issue 3 (c)).
SIMULATION_ONLY_CAUTION = (
    "the model was trained on simulated patterns only. Models trained that way misread real patterns: six-class ones "
    "read the real Si test patterns right but not the real Ni ones (Ia-3d, Pm-3m or unknown) nor the Fe one, and a "
    "Ni/Ni3Al model read the real Ni patterns Fm-3m, but also the same patterns with Ni3Al's superlattice bands put "
    "in (bench/RESULTS.md): check the result against a region of each phase, or fine-tune this model on labelled "
    "real patterns of every phase from this camera: grains of known phase in this scan (the Phase map page's 'Train "
    "on this scan's own patterns', or python -m ebsd_core dataset --region), class folders or single-phase scans "
    "(the Data page)"
)

#: ``evaluate`` of recorded patterns of one phase with such a model: one phase right proves little (see above).
ONE_PHASE_CHECK = (
    "these patterns are all of one phase, and the model was trained on simulated patterns only: such a model can "
    "read every pattern of a camera as one phase (a Ni/Ni3Al model read real Ni patterns Fm-3m, and the same "
    "patterns with Ni3Al's superlattice bands put in too; bench/RESULTS.md), so evaluate a region of each of its "
    "other phases as well"
)


def _small_simulation_note(source: PatternSource, card: ModelCard) -> list[str]:
    """The simulator renders a small detector directly, which a model trained on larger patterns does not read
    like a binned camera's patterns (bench/RESULTS.md, "Tenth session: small simulated patterns")."""
    trained = int(card.training.get("pattern_size") or 0)
    size = min(source.pattern_shape)
    if not made_by_simulator(source.provenance.get("generator")) or size * SMALL_CAMERA_FACTOR > trained:
        return []
    return [
        f"this scan was simulated at {size} px, and the model was trained on {trained} px patterns. The simulator "
        f"renders a {size} px detector directly, not as a larger camera binned down, and a 240 px model trained for "
        "binned cameras read 60 px simulations of austenite, Si and ferrite right only 0.30, 0.55 and 0.10 of the "
        "time (0.95, 1.00 and 0.75 for 240 px ones binned 4x): simulate the scan at the model's pattern size"
    ]


def reading_notes(source: PatternSource, card: ModelCard, allow_resize: bool = True) -> list[str]:
    """What a user should know before trusting ``card``'s reading of ``source``: :func:`source_notes`, and a model
    that read too few of its own test patterns right (:func:`weak_model_note`)."""
    return source_notes(source, card, allow_resize) + weak_model_note(card)


def source_notes(source: PatternSource, card: ModelCard, allow_resize: bool = True) -> list[str]:
    """What ``source`` asks of ``card``: pattern size, small simulated scans, and recorded patterns (anything the
    simulator did not make) read by a model that has seen only simulations."""
    notes = check_pattern_size(source, card, allow_resize) + _small_simulation_note(source, card)
    if not made_by_simulator(source.provenance.get("generator")) and made_by_simulator(card.training.get("dataset")):
        notes.append(SIMULATION_ONLY_CAUTION)
    return notes


#: A model surely below this accuracy on its own test patterns gets :func:`weak_model_note` with its readings.
WEAK_TEST_ACCURACY = 0.9


def weak_model_note(card: ModelCard) -> list[str]:
    """Say so when ``card``'s model read its own test patterns (held back from its training, of its materials and
    camera) surely less than :data:`WEAK_TEST_ACCURACY` right: the top of the 95 % (Wilson) interval of its accuracy
    there is below it. Many of its readings of anything else are wrong too (on a simulated Ni/Ni3Al scan, pair models
    0.6-0.7 right on their 10 test patterns mapped 0.61-0.88 of the points right after the grain clean-up;
    bench/RESULTS.md). A few test patterns say little: the demo map's pair models read 9 of their 10 right and mapped
    99.9 % of a scan right, and 8 of 10 is no sure sign either. Nothing for a card that records no test."""
    score = own_test_score(card)
    if score and _wilson_top(*score) < WEAK_TEST_ACCURACY:
        mistake = _worst_confusion(card.metrics["test"])
        return [
            f"this model read {own_test_words(card)}{mistake}: expect many of its readings here to be wrong as well. "
            "Train it longer or on more shots per class (the Train page, or train --epochs, --shots) and check it on "
            "Results"
        ]
    return []


def _wilson_top(accuracy: float, count: int, z: float = 1.96) -> float:
    """The top of the Wilson score interval (95 % at ``z`` 1.96) of an ``accuracy`` over ``count`` trials."""
    spread = z * math.sqrt(accuracy * (1 - accuracy) / count + z * z / (4 * count * count))
    return (accuracy + z * z / (2 * count) + spread) / (1 + z * z / count)


def own_test_score(card: ModelCard) -> tuple[float, int] | None:
    """``card``'s accuracy on its own test patterns and their count; None where it records no test (a card made
    elsewhere, a dataset too small to hold one back)."""
    with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
        test = card.metrics["test"]
        accuracy, patterns = float(test["accuracy"]), int(test["patterns"])
        if patterns > 0 and 0 <= accuracy <= 1:
            return accuracy, patterns
    return None


def own_test_words(card: ModelCard) -> str | None:
    """``"70% of its 10 test patterns right"`` (:func:`own_test_score`), or None."""
    if (score := own_test_score(card)) is None:
        return None
    return f"{score[0]:.0%} of its {counted(score[1], 'test pattern')} right"


def _worst_confusion(test: dict) -> str:
    """``" (most often Fm-3m read Pm-3m: 5 of 10)"``: the test's most frequent mistake, from its confusion matrix."""
    with contextlib.suppress(KeyError, TypeError, ValueError, IndexError):
        matrix, classes = np.asarray(test["confusion_matrix"], dtype=np.int64), list(test["classes"])
        wrong = matrix * (1 - np.eye(len(matrix), dtype=np.int64))
        true, read = np.unravel_index(int(np.argmax(wrong)), wrong.shape)
        if wrong[true, read] > 0:
            return f" (most often {classes[true]} read {classes[read]}: {wrong[true, read]} of {matrix[true].sum()})"
    return ""


def blank_pattern_note(
    blank: np.ndarray, imageless: np.ndarray | None = None, unread: Mapping[int, str] | None = None
) -> list[str]:
    """Say how many patterns were blank in a run (``blank``: a mask, see :func:`ebsd_core.inference.blank_points`);
    those of points without an image (``imageless``, :attr:`~ebsd_core.io.readers.PatternSource.imageless`) and of
    images the run could not read (``unread``, :attr:`~ebsd_core.io.readers.PatternSource.unread`) on their own."""
    imageless = np.zeros_like(blank) if imageless is None else blank & imageless
    unread = unread or {}
    unread_mask = np.zeros_like(blank)
    unread_mask[[index for index in unread if index < len(blank)]] = True
    unread_mask &= blank & ~imageless  # read in this run: an image mended since is not blank
    other = blank & ~imageless & ~unread_mask
    notes = []
    if count := int(np.count_nonzero(other)):
        notes.append(
            f"{count:,} of {len(blank):,} patterns hold one value everywhere (index {_first(other)}): "
            f"{BLANK_CAUSES}. There is nothing in them to classify, so they are unknown"
        )
    if count := int(np.count_nonzero(imageless)):
        notes.append(
            f"{count:,} of {len(blank):,} points have no image (index {_first(imageless)}): none of the images' names "
            "gives them, or their images could not be read. There is nothing to classify, so they are unknown"
        )
    if count := int(np.count_nonzero(unread_mask)):
        first = unread[int(np.flatnonzero(unread_mask)[0])]
        them, are = ("it", "a blank pattern, it is") if count == 1 else ("them", "blank patterns, they are")
        notes.append(
            f"{count:,} of {len(blank):,} images could not be read when the run reached {them} (index "
            f"{_first(unread_mask)}; {'the first, ' if count > 1 else ''}{first}). Read as {are} unknown"
        )
    return notes


def _first(mask: np.ndarray) -> str:
    """The first few indices where ``mask`` is set: ``"3, 7, 8, 12, 15, ..."``."""
    found = np.flatnonzero(mask)
    return ", ".join(str(i) for i in found[:5]) + (", ..." if len(found) > 5 else "")
