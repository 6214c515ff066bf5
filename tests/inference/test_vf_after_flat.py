"""The VF detector after an asystole: the beats that come back after a flat line are not VF.

The 8-s means of the VF features averaged a flat stretch's segments (an exactly flat line's
features are those of rounding residue) with the first seconds of beats after it, which then
looked like VF: the tester's sinus, 40 s of flat line, sinus again read VF at 64-68 s
(probability 0.98), offline and in a stream, and so did 215 of 315 splices of an exactly flat
line into MIT-BIH DS1 records (21 records x 6-60 s x 3 places; none with 10-30 uV of noise on
the line). Flat segments are now left out of the others' 8-s means
(``inference.vf.context_features``).
"""

import numpy as np
import pytest

from inference.rhythm import RhythmConfig, vf_episodes_from_probability
from inference.vf import (
    _AMPLITUDE_COLUMN,
    CONTEXT_SEGMENTS,
    MIN_VF_STD_MV,
    WINDOW_FEATURES,
    context_features,
    shipped_model,
    vf_probability,
)
from tests.inference.conftest import physionet_folder
from tests.test_asystole_live import sinus_flat_sinus


def vf_episodes(ecg_mv: np.ndarray, fs_hz: float) -> list:
    return vf_episodes_from_probability(vf_probability(ecg_mv, fs_hz), RhythmConfig())


@pytest.mark.parametrize(
    ("sinus_s", "flat_s", "fs_hz"),
    [(25.0, 40.0, 250.0), (40.0, 10.0, 360.0), (60.0, 20.0, 500.0)],
    ids=["testers-case", "10s-flat-360Hz", "20s-flat-500Hz"],
)
def test_the_beats_after_an_exactly_flat_line_are_not_vf(sinus_s, flat_s, fs_hz):
    signal_mv, _ = sinus_flat_sinus(sinus_s, flat_s, 30.0, fs_hz)
    probability = vf_probability(signal_mv, fs_hz)
    resume_s = sinus_s + flat_s
    after = probability[int(resume_s // 2) - 1 : int(resume_s // 2) + 6]  # the 12 s around it
    assert after.max() < shipped_model().threshold, np.round(after, 2)
    assert vf_episodes(signal_mv, fs_hz) == []


@pytest.mark.parametrize("record", ["101", "118", "209"])  # MIT-BIH DS1 only
def test_a_ds1_record_with_an_exactly_flat_line_spliced_in_has_no_vf(record):
    import wfdb

    folder = physionet_folder("mitdb", record)
    raw = wfdb.rdrecord(str(folder / record), channels=[0], sampto=round(240 * 360)).p_signal
    ecg_mv, fs_hz = raw[:, 0], 360.0
    assert vf_episodes(ecg_mv, fs_hz) == []  # none without the flat line
    for at_s, flat_s in [(61.3, 20.0), (121.9, 60.0)]:
        at = round(at_s * fs_hz)
        level_mv = float(np.median(ecg_mv[at - round(fs_hz) : at]))  # the line stays there
        spliced = np.concatenate(
            [ecg_mv[:at], np.full(round(flat_s * fs_hz), level_mv), ecg_mv[at:]]
        )
        assert vf_episodes(spliced, fs_hz) == [], (record, at_s, flat_s)


def test_a_stream_reads_no_vf_after_the_flat_line_either():
    """The tester's case in random chunks with state round trips: the same probabilities as
    the offline pass, none of them VF (the streaming VF stage carries the running sums)."""
    from tests.inference.test_streaming import joined, stream

    fs_hz = 250.0
    signal_mv, _ = sinus_flat_sinus(25.0, 40.0, 30.0, fs_hz)
    updates, _ = stream(signal_mv, fs_hz, np.random.default_rng(3))
    streamed = joined(updates)["vf_probabilities"]
    np.testing.assert_allclose(streamed, vf_probability(signal_mv, fs_hz), rtol=0, atol=1e-12)
    assert streamed.max() < shipped_model().threshold


def plain_context(short: np.ndarray) -> np.ndarray:
    """The 8-s means as the rule reads, one segment at a time: the segment and the three
    before it, the flat ones left out unless all are."""
    flat = short[:, _AMPLITUDE_COLUMN] < np.log10(MIN_VF_STD_MV + 1e-3)
    context = np.empty_like(short)
    for k in range(len(short)):
        window = np.arange(max(0, k - CONTEXT_SEGMENTS + 1), k + 1)
        kept = window[~flat[window]]
        context[k] = short[kept if len(kept) else window].mean(axis=0)
    return context


def test_the_8s_means_leave_out_flat_segments_and_a_stream_gets_the_same_numbers():
    rng = np.random.default_rng(5)
    short = rng.normal(0.0, 1.0, (60, len(WINDOW_FEATURES)))
    # a third of the segments flat, in runs of 1-6 (log10 of 1 uV: an exactly flat line)
    short[:, _AMPLITUDE_COLUMN] = rng.uniform(-1.2, 0.3, len(short))
    for start in (3, 10, 11, 25, 40):
        short[start : start + rng.integers(1, 7), _AMPLITUDE_COLUMN] = -3.0
    assert np.any(short[:, _AMPLITUDE_COLUMN] < -2)

    whole, _ = context_features(short, np.zeros((1, short.shape[1])))
    np.testing.assert_array_equal(whole[:, : short.shape[1]], short)
    np.testing.assert_allclose(whole[:, short.shape[1] :], plain_context(short), atol=1e-12)

    # in pieces of 1-7 segments, the running sums carried: the very same numbers
    pieces, cumulative, start = [], np.zeros((1, short.shape[1])), 0
    while start < len(short):
        stop = start + int(rng.integers(1, 8))
        features, cumulative = context_features(short[start:stop], cumulative)
        pieces.append(features)
        start = stop
    np.testing.assert_array_equal(np.vstack(pieces), whole)


def test_without_flat_segments_the_8s_means_are_the_plain_running_means():
    """The rule changes nothing where no flat segment is near: the vfdb figures move only
    where asystole meets signal (docs/models/rhythm-vf.md)."""
    rng = np.random.default_rng(6)
    short = rng.normal(0.0, 1.0, (30, len(WINDOW_FEATURES)))
    short[:, _AMPLITUDE_COLUMN] = rng.uniform(-1.2, 0.3, len(short))
    features, _ = context_features(short, np.zeros((1, short.shape[1])))
    sums = np.vstack([np.zeros((1, short.shape[1])), np.cumsum(short, axis=0)])
    ends = np.arange(1, len(sums))
    first = np.maximum(ends - CONTEXT_SEGMENTS, 0)
    expected = (sums[ends] - sums[first]) / (ends - first)[:, None]
    np.testing.assert_array_equal(features[:, short.shape[1] :], expected)
