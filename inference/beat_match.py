"""Beat-by-beat comparison of detected beats with reference annotations (ANSI/AAMI EC57).

A detection matches a reference beat when they lie within the match window (150 ms); each
reference and each detection is matched at most once, nearest first.
"""

import numpy as np

MATCH_WINDOW_S = 0.150


def match_beats(
    reference: np.ndarray, detected: np.ndarray, fs: float, window_s: float = MATCH_WINDOW_S
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(reference_index, detected_index)`` of matched beats, as two int arrays.

    Greedy by distance: each reference beat's nearest detection before and after it are the
    candidate pairs, taken closest first. That is the optimal assignment when beats are more
    than twice the window apart (RR > 300 ms with 150 ms); at faster rates a reference whose
    two neighbours both went to other beats stays unmatched even if a third detection lies
    within its window, which can only undercount true positives.
    """
    reference = np.asarray(reference, dtype=np.int64)
    detected = np.asarray(detected, dtype=np.int64)
    tolerance = window_s * fs
    if len(reference) == 0 or len(detected) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    # each reference beat's nearest detections: the one before and the one after it
    after = np.searchsorted(detected, reference)
    pairs = []
    for offset in (-1, 0):
        candidate = np.clip(after + offset, 0, len(detected) - 1)
        distance = np.abs(detected[candidate] - reference)
        ok = distance <= tolerance
        pairs.append(np.stack([np.flatnonzero(ok), candidate[ok], distance[ok]], axis=1))
    pairs = np.concatenate(pairs)
    pairs = pairs[np.argsort(pairs[:, 2], kind="stable")]
    used_reference, used_detected = set(), set()
    ref_out, det_out = [], []
    for ref_index, det_index, _ in pairs:
        if ref_index in used_reference or det_index in used_detected:
            continue
        used_reference.add(ref_index)
        used_detected.add(det_index)
        ref_out.append(ref_index)
        det_out.append(det_index)
    order = np.argsort(ref_out)
    return np.asarray(ref_out, dtype=np.int64)[order], np.asarray(det_out, dtype=np.int64)[order]


def detection_scores(reference: np.ndarray, detected: np.ndarray, fs: float) -> dict:
    """True positives, false negatives, false positives, Se and +P of one record."""
    matched, _ = match_beats(reference, detected, fs)
    tp = len(matched)
    fn = len(reference) - tp
    fp = len(detected) - tp
    return {
        "n_reference": int(len(reference)),
        "n_detected": int(len(detected)),
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "se": tp / (tp + fn) if tp + fn else float("nan"),
        "ppv": tp / (tp + fp) if tp + fp else float("nan"),
    }
