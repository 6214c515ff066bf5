"""The rhythm name the live view and the station show when no episode is ongoing
(monitoring.live.beat_rhythm): the underlying rhythm from the intervals between normal beats
and their P waves, and the ectopic beats as a suffix, as a bedside monitor shows them."""

import numpy as np
import pytest

from monitoring import live
from tests.inference.conftest import physionet_folder

FS_HZ = 250.0


def name(rr_s, labels, p_wave=0.95):
    """The rhythm named for beats at FS_HZ from RR intervals (one more beat than intervals)
    and labels; the normal beats' P-wave correlation is ``p_wave`` (a consistent sinus P wave
    by default), the others' unknown (None), as the streaming analysis stores them."""
    samples = np.concatenate([[0.0], np.cumsum(np.asarray(rr_s, dtype=np.float64))]) * FS_HZ
    assert len(labels) == len(samples)
    p_waves = [p_wave if label == "N" else None for label in labels]
    return live.beat_rhythm(np.round(samples), list(labels), FS_HZ, p_waves)


def test_regular_normal_beats_are_sinus_and_a_pvc_does_not_blank_it():
    assert name([0.8] * 16, "N" * 17) == "Sinus"
    # one PVC: early, then a compensatory pause; the intervals around it are not sinus ones
    rr_s = [0.8] * 7 + [0.5, 1.1] + [0.8] * 7
    assert name(rr_s, "N" * 8 + "V" + "N" * 8) == "Sinus + PVCs"
    assert name(rr_s, "N" * 8 + "S" + "N" * 8) == "Sinus + PACs"
    assert name(rr_s, "N" * 4 + "V" + "NNN" + "S" + "N" * 8) == "Sinus + PVCs + PACs"


def test_a_regular_rhythm_without_a_consistent_p_wave_is_regular_not_sinus():
    # atrial fibrillation at a steady ventricular rate: regular intervals, no P wave
    assert name([0.6] * 16, "N" * 17, p_wave=0.1) == "Regular"
    # a P wave this lead does not show (unknown for every beat): no evidence for sinus
    assert name([0.6] * 16, "N" * 17, p_wave=None) == "Regular"
    assert name([0.6] * 16, "N" * 17, p_wave=float("nan")) == "Regular"
    rr_s = [0.8] * 7 + [0.5, 1.1] + [0.8] * 7
    assert name(rr_s, "N" * 8 + "V" + "N" * 8, p_wave=0.2) == "Regular + PVCs"
    assert name([0.6] * 16, "N" * 17, p_wave=0.5) == "Sinus"  # at the limit


def test_every_other_beat_ventricular_is_bigeminy():
    assert name([0.55, 1.05] * 8, "NV" * 8 + "N") == "Vent bigeminy"
    assert name([0.55, 1.05] * 8, "VN" * 8 + "V") == "Vent bigeminy"  # ending on either beat
    # a normal pair among the last 8 beats breaks the pattern: PVCs on a sinus rhythm
    rr_s = [0.8] * 8 + [0.55, 1.05, 0.8, 0.55, 1.05, 0.55, 1.05, 0.55]
    assert name(rr_s, "N" * 9 + "VNNVNVNV") == "Sinus + PVCs"


def test_irregular_normal_beats_are_irregular_not_sinus():
    rr_s = np.random.default_rng(3).uniform(0.45, 1.1, size=16)  # as in atrial fibrillation
    assert name(rr_s, "N" * 17) == "Irregular"
    assert name(rr_s, "N" * 17, p_wave=0.95) == "Irregular"  # a P wave does not make it regular


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
    assert name(rr_s, labels) is None, why


def test_the_rhythm_after_a_gap_is_named_from_the_beats_after_it():
    rr_s = [0.8] * 4 + [6.0] + [0.8] * 11
    assert name(rr_s, "N" * 17) == "Sinus"
    # and the P waves before the gap do not count: without them too few are known
    samples = np.round(np.concatenate([[0.0], np.cumsum(rr_s)]) * FS_HZ)
    p_waves = [0.95] * 5 + [None] * 9 + [0.95] * 3
    assert live.beat_rhythm(samples, ["N"] * 17, FS_HZ, p_waves) == "Regular"
    assert live.heart_rate_bpm(samples, FS_HZ) == 75.0


def test_the_heart_rate_is_the_mean_of_the_last_8_intervals_and_none_across_a_gap():
    def samples(rr_s):
        return np.round(np.concatenate([[0.0], np.cumsum(rr_s)]) * FS_HZ)

    assert live.heart_rate_bpm(samples([0.5] * 8 + [1.0] * 8), FS_HZ) == 60.0
    assert live.heart_rate_bpm(samples([0.8] * 12 + [3.5] + [0.8] * 3), FS_HZ) is None
    assert live.heart_rate_bpm(samples([])[:1], FS_HZ) is None


def names_over(record: str, start_s: float, end_s: float) -> list[str | None]:
    """The rhythm named at every reference beat of a MIT-BIH record from ``start_s`` to
    ``end_s``, from the beat and the RHYTHM_BEATS before it with their AAMI labels and the
    P-wave correlations the analysis computes for them."""
    from inference.beats import beat_features, beat_p_waves
    from inference.datasets.mitdb import load_record

    mitdb = load_record(physionet_folder("mitdb", record), record)
    samples = mitdb.beat_samples.astype(np.float64)
    labels = mitdb.beat_classes
    p_waves = list(beat_p_waves(*beat_features(mitdb.signal_mv, mitdb.fs, mitdb.beat_samples)))
    first, end = np.searchsorted(samples, [start_s * mitdb.fs, end_s * mitdb.fs])
    return [
        live.beat_rhythm(
            samples[last - live.RHYTHM_BEATS : last + 1],
            labels[last - live.RHYTHM_BEATS : last + 1],
            mitdb.fs,
            p_waves[last - live.RHYTHM_BEATS : last + 1],
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
    assert not any(name is not None and name.startswith("Sinus") for name in fibrillation)
    # ventricular bigeminy, annotated from 1328.7 s to 1342.7 s
    assert names_over("119", 1341.0, 1342.7) == ["Vent bigeminy"] * 2
