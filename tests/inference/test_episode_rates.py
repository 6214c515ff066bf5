"""The heart-rate figures of bradycardia, tachycardia and VT episodes (docs/rhythm.md, "Heart
rate of an episode"): one episode's figures agree with each other (min <= mean <= max), and no
single interval, one no heart can produce included, sets an extreme.

The rhythms below are those an exploratory tester met in MIT-BIH DS1 records: 201's slow
rhythm with PVCs and the long pauses after them (a bradycardia read "mean 46.1, min 49.4"),
and 207's ventricular flutter, where an R peak placed 81 ms after the one before made a VT of
"744.8 bpm" in a recording whose maximum heart rate was 238.
"""

import numpy as np
import pytest

from inference.analysis import HR_SMOOTHING_BEATS, heart_rate_bpm
from inference.rhythm import RhythmConfig, episode_rates_bpm, episodes_from_beats

BEATS_ONLY = RhythmConfig(detect_vf=False)

# RR intervals (s) of MIT-BIH 201 from 733.9 s to 758.9 s, our beats: a slow rhythm at about
# 49 bpm whose PVCs (0.9-0.97 s) are followed by pauses of 1.4-1.8 s
SLOW_WITH_PAUSES_RR_S = [
    0.947, 1.436, 1.178, 0.900, 1.250, 1.814, 1.217, 0.967, 1.206, 1.828,
    1.214, 1.200, 0.942, 1.356, 1.189, 0.917, 1.403, 1.753, 1.125, 1.178, 0.992,
]  # fmt: skip


def times_from(rr_s) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(rr_s)])


def episodes(times_s, labels=None, kind=None):
    found = episodes_from_beats(times_s, labels, None, times_s[-1] + 0.5, BEATS_ONLY)
    return [e for e in found if kind is None or e.kind == kind]


def assert_consistent(episode) -> None:
    details = episode.details
    low = details.get("min_hr_bpm", -np.inf)
    high = details.get("max_hr_bpm", np.inf)
    assert low <= details["mean_hr_bpm"] <= high, (episode.kind, episode.start_s, details)


def test_a_bradycardia_with_pauses_has_its_minimum_at_or_below_its_mean():
    # 201's rhythm between stretches at 70 bpm: the trailing median rule finds a bradycardia
    rr_s = [0.857] * 20 + SLOW_WITH_PAUSES_RR_S + [0.857] * 20
    brady = episodes(times_from(rr_s), kind="BRADY")
    assert len(brady) == 1
    details = brady[0].details
    # the mean is the beats per minute over the episode
    assert details["mean_hr_bpm"] == pytest.approx(
        60.0 * (details["n_beats"] - 1) / brady[0].duration_s, abs=0.05
    )
    assert details["min_hr_bpm"] <= details["mean_hr_bpm"] < 50.0


@pytest.mark.parametrize("seed", range(20))
def test_every_rate_episode_of_an_irregular_rhythm_is_consistent(seed):
    """Slow and fast stretches with ectopic beats, pauses and runs of V beats: every
    bradycardia, tachycardia and VT shows min <= mean <= max."""
    rng = np.random.default_rng(seed)
    rr_s, labels = [], []
    for _ in range(12):
        base_s = rng.choice([1.4, 1.25, 0.8, 0.45, 0.4])
        for _ in range(int(rng.integers(12, 40))):
            draw = rng.random()
            if draw < 0.15:  # an early beat, then the pause after it
                rr_s += [base_s * rng.uniform(0.35, 0.7), base_s * rng.uniform(1.3, 1.9)]
                labels += ["V", "N"]
            elif draw < 0.2:  # a run of V beats
                n_run = int(rng.integers(3, 12))
                rr_s += list(rng.uniform(0.25, 0.5, n_run))
                labels += ["V"] * n_run
            else:
                rr_s.append(base_s * rng.uniform(0.9, 1.1))
                labels.append("N")
    found = episodes(times_from(rr_s), ["N"] + labels)
    rated = [e for e in found if e.kind in ("BRADY", "TACHY", "VT")]
    assert {e.kind for e in rated} == {"BRADY", "TACHY", "VT"}  # the test has teeth
    for episode in rated:
        assert_consistent(episode)


def test_a_tachycardia_with_early_beats_has_its_maximum_at_or_above_its_mean():
    # 130 bpm with an early beat (no pause after it) every third beat: the median of the last
    # 8 intervals reads the regular ones, the mean reads them all
    rr_s = [0.8] * 20 + [0.46, 0.46, 0.3] * 12 + [0.8] * 20
    tachy = episodes(times_from(rr_s), kind="TACHY")
    assert len(tachy) == 1
    details = tachy[0].details
    assert details["max_hr_bpm"] >= details["mean_hr_bpm"] > 120.0


def flutter_vt_with_a_misplaced_r_peak() -> tuple[np.ndarray, list[str]]:
    """Sinus at 75 bpm, 15 V beats at 170 bpm, one of their R peaks placed 0.27 s early, 80 ms
    after the one before (207 at 59.3 s: 81 ms, then 0.58 s), and sinus again."""
    rr_s = [0.8] * 30 + [0.353] * 7 + [0.08, 0.626] + [0.353] * 6 + [0.8] * 29
    labels = ["N"] * 31 + ["V"] * 15 + ["N"] * 29
    return times_from(rr_s), labels


def test_a_vt_maximum_does_not_come_from_one_impossible_interval():
    times_s, labels = flutter_vt_with_a_misplaced_r_peak()
    (vt,) = episodes(times_s, labels, kind="VT")
    assert_consistent(vt)
    # 170 bpm; an 8-interval mean holding the 80-ms interval and not the long one after it
    # reads at most 8/7 of it
    assert vt.details["max_hr_bpm"] < 60.0 / 0.353 * 8 / 7 + 0.1
    assert vt.details["max_hr_bpm"] < 200.0  # not 750


def test_a_vt_maximum_stays_within_the_recording_maximum():
    """The summary's maximum (inference.analysis) is the fastest 8-interval mean; a VT of 8
    intervals or more reads its maximum the same way, so it cannot exceed it."""
    times_s, labels = flutter_vt_with_a_misplaced_r_peak()
    (vt,) = episodes(times_s, labels, kind="VT")
    recording = heart_rate_bpm(np.round(times_s * 360.0).astype(int), 360.0)
    assert vt.details["max_hr_bpm"] <= recording["max"] + 0.1


def test_a_short_vt_has_one_rate():
    # 3 V beats at 0.25 and 0.45 s: too few intervals for a running mean, so its maximum is
    # its mean rate, not the 240 bpm of one interval
    rr_s = [0.8] * 10 + [0.25, 0.45] + [0.8] * 10
    labels = ["N"] * 10 + ["V"] * 3 + ["N"] * 10
    (vt,) = episodes(times_from(rr_s), labels, kind="VT")
    assert vt.details["max_hr_bpm"] == vt.details["mean_hr_bpm"] == pytest.approx(171.4, abs=0.1)


@pytest.mark.parametrize("seed", range(50))
def test_episode_rates_are_ordered_for_any_intervals(seed):
    rng = np.random.default_rng(seed)
    rr_s = rng.uniform(0.08, 3.0, int(rng.integers(1, 40)))
    window = int(rng.integers(2, 12))
    slowest, mean, fastest = episode_rates_bpm(rr_s, window)
    assert slowest <= mean <= fastest
    # rounded as the episodes give them, the order holds too
    assert round(slowest, 1) <= round(mean, 1) <= round(fastest, 1)
    assert mean == pytest.approx(60.0 * len(rr_s) / rr_s.sum())


def test_episode_rates_need_an_interval():
    with pytest.raises(ValueError, match="at least one RR interval"):
        episode_rates_bpm(np.empty(0), 8)


def test_the_rate_window_is_the_summary_window():
    # the episodes' extremes are read as the recording summary reads its own
    assert RhythmConfig().rate_beats == HR_SMOOTHING_BEATS
