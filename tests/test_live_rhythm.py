"""The rhythm name the live view and the station show when no episode is ongoing
(monitoring.live.beat_rhythm): the underlying rhythm from the intervals between normal beats,
and the ectopic beats as a suffix, as a bedside monitor shows them."""

import numpy as np
import pytest

from monitoring import live
from tests.inference.conftest import physionet_folder

FS_HZ = 250.0


def beats(rr_s, labels):
    """Beat samples at FS_HZ from RR intervals (one more beat than intervals), and labels."""
    samples = np.concatenate([[0.0], np.cumsum(np.asarray(rr_s, dtype=np.float64))]) * FS_HZ
    assert len(labels) == len(samples)
    return np.round(samples), list(labels)


def test_regular_normal_beats_are_sinus_and_a_pvc_does_not_blank_it():
    samples, labels = beats([0.8] * 16, "N" * 17)
    assert live.beat_rhythm(samples, labels, FS_HZ) == "Sinus"
    # one PVC: early, then a compensatory pause; the intervals around it are not sinus ones
    rr_s = [0.8] * 7 + [0.5, 1.1] + [0.8] * 7
    samples, labels = beats(rr_s, "N" * 8 + "V" + "N" * 8)
    assert live.beat_rhythm(samples, labels, FS_HZ) == "Sinus + PVCs"
    samples, labels = beats(rr_s, "N" * 8 + "S" + "N" * 8)
    assert live.beat_rhythm(samples, labels, FS_HZ) == "Sinus + PACs"
    samples, labels = beats(rr_s, "N" * 4 + "V" + "NNN" + "S" + "N" * 8)
    assert live.beat_rhythm(samples, labels, FS_HZ) == "Sinus + PVCs + PACs"


def test_every_other_beat_ventricular_is_bigeminy():
    samples, labels = beats([0.55, 1.05] * 8, "NV" * 8 + "N")
    assert live.beat_rhythm(samples, labels, FS_HZ) == "Vent bigeminy"
    samples, labels = beats([0.55, 1.05] * 8, "VN" * 8 + "V")  # ending on either beat
    assert live.beat_rhythm(samples, labels, FS_HZ) == "Vent bigeminy"
    # a normal pair among the last 8 beats breaks the pattern: PVCs on a sinus rhythm
    rr_s = [0.8] * 8 + [0.55, 1.05, 0.8, 0.55, 1.05, 0.55, 1.05, 0.55]
    samples, labels = beats(rr_s, "N" * 9 + "VNNVNVNV")
    assert live.beat_rhythm(samples, labels, FS_HZ) == "Sinus + PVCs"


def test_irregular_normal_beats_are_irregular_not_sinus():
    rr_s = np.random.default_rng(3).uniform(0.45, 1.1, size=16)  # as in atrial fibrillation
    samples, labels = beats(rr_s, "N" * 17)
    assert live.beat_rhythm(samples, labels, FS_HZ) == "Irregular"


@pytest.mark.parametrize(
    ("rr_s", "labels", "why"),
    [
        ([0.8] * 7, "N" * 8, "too few beats since the stream began"),
        ([0.8] * 10 + [6.0] + [0.8] * 5, "N" * 17, "too few beats since the gap"),
        ([0.4] * 16, "V" * 17, "no normal beats to name an underlying rhythm"),
        ([0.8] * 16, "NNQQQQNQQQQNQQQNQ", "fewer than 4 normal-to-normal intervals"),
    ],
)
def test_nothing_is_named_without_enough_normal_beats(rr_s, labels, why):
    samples, labels = beats(rr_s, labels)
    assert live.beat_rhythm(samples, labels, FS_HZ) is None, why


def test_the_rhythm_after_a_gap_is_named_from_the_beats_after_it():
    samples, labels = beats([0.8] * 4 + [6.0] + [0.8] * 11, "N" * 17)
    assert live.beat_rhythm(samples, labels, FS_HZ) == "Sinus"
    # without the cut the gap would count as an interval: far from sinus
    assert live.heart_rate_bpm(samples, FS_HZ) == 75.0


def test_the_heart_rate_is_the_mean_of_the_last_8_intervals_and_none_across_a_gap():
    samples, labels = beats([0.5] * 8 + [1.0] * 8, "N" * 17)
    assert live.heart_rate_bpm(samples, FS_HZ) == 60.0
    samples, labels = beats([0.8] * 12 + [3.5] + [0.8] * 3, "N" * 17)
    assert live.heart_rate_bpm(samples, FS_HZ) is None
    assert live.heart_rate_bpm(samples[:1], FS_HZ) is None


def names_over(record: str, start_s: float, end_s: float) -> list[str | None]:
    """The rhythm named at every reference beat of a MIT-BIH record from ``start_s`` to
    ``end_s``, from the beat and the RHYTHM_BEATS before it with their AAMI labels."""
    from inference.datasets.mitdb import load_record

    mitdb = load_record(physionet_folder("mitdb", record), record)
    samples = mitdb.beat_samples.astype(np.float64)
    labels = mitdb.beat_classes
    first, end = np.searchsorted(samples, [start_s * mitdb.fs, end_s * mitdb.fs])
    return [
        live.beat_rhythm(
            samples[last - live.RHYTHM_BEATS : last + 1],
            labels[last - live.RHYTHM_BEATS : last + 1],
            mitdb.fs,
        )
        for last in range(max(first, live.RHYTHM_BEATS), end)
    ]


def test_mitdb_reference_beats_are_named_as_their_annotated_rhythm():
    """Reference beats and labels, so this tests the naming alone (docs/dashboard.md gives
    the figures over all records)."""
    sinus = names_over("100", 60.0, 600.0)  # normal sinus rhythm, a few premature beats
    assert np.mean([name is not None and name.startswith("Sinus") for name in sinus]) > 0.95
    assert "Sinus + PACs" in sinus  # record 100 has atrial premature beats
    fibrillation = names_over("201", 30.0, 370.0)  # atrial fibrillation
    assert np.mean([name == "Irregular" for name in fibrillation]) > 0.8
    # ventricular bigeminy, annotated from 1328.7 s to 1342.7 s
    assert names_over("119", 1341.0, 1342.7) == ["Vent bigeminy"] * 2
