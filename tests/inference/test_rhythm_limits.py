"""Rhythm limits hold exactly at the limit, whatever the floating-point error of sample / fs;
episodes that touch the start or the end of the signal, or are cut by VF.

Beat times are sample indices divided by the sampling rate, so two beats exactly 3 s apart in
samples can be 2.9999999999999996 s apart in seconds. The cases below are beat positions
where that rounding fell on the wrong side of the limit before the comparisons had slack.
"""

import numpy as np
import pytest

from inference.rhythm import RhythmConfig, episodes_from_beats

BEATS_ONLY = RhythmConfig(detect_vf=False)


def kinds(times_s, labels=None, duration_s=None, config=BEATS_ONLY) -> list[str]:
    duration_s = times_s[-1] + 0.5 if duration_s is None else duration_s
    return [e.kind for e in episodes_from_beats(times_s, labels, None, duration_s, config)]


@pytest.mark.parametrize(("fs_hz", "first"), [(250.0, 251), (360.0, 394), (1000.0, 1004)])
def test_a_pause_of_exactly_the_limit_is_a_pause(fs_hz, first):
    # 3 s in samples; first / fs and (first + 3 fs) / fs differ by a hair less than 3.0
    times_s = np.array([first, first + round(3 * fs_hz)]) / fs_hz
    assert times_s[1] - times_s[0] < 3.0  # the rounding this test is about
    assert kinds(times_s) == ["PAUSE"]


def test_a_pause_just_under_the_limit_is_no_pause():
    times_s = np.array([251, 250 + 750]) / 250.0  # one sample short of 3 s
    assert kinds(times_s) == []


@pytest.mark.parametrize(("fs_hz", "first"), [(250.0, 15), (360.0, 7)])
def test_three_v_beats_at_exactly_the_vt_rate_are_vt(fs_hz, first):
    rr_samples = round(0.6 * fs_hz)  # 100 bpm
    times_s = (first + rr_samples * np.arange(3)) / fs_hz
    assert 60.0 / np.diff(times_s).mean() < 100.0  # the rounding this test is about
    assert kinds(times_s, ["V"] * 3) == ["VT"]


def test_v_beats_one_sample_slower_than_the_vt_rate_are_no_vt():
    times_s = (15 + 151 * np.arange(3)) / 250.0  # 99.3 bpm
    assert kinds(times_s, ["V"] * 3) == []


def test_a_rate_exactly_at_the_bradycardia_limit_is_no_bradycardia():
    # 50 bpm for 30 s from 38.8 s into a 250 Hz recording: 1.2 s intervals in samples,
    # each read as a hair over or under 1.2 s
    times_s = (9701 + 300 * np.arange(26)) / 250.0
    rr_windows = np.lib.stride_tricks.sliding_window_view(np.diff(times_s), 8)
    rates_bpm = 60.0 / np.median(rr_windows, axis=1)  # the monitor's 8-beat rate
    assert (rates_bpm < 50.0).any()  # the rounding this test is about
    assert "BRADY" not in kinds(times_s)  # (a pause from the start: no beat before 38.8 s)
    slower = (9701 + 301 * np.arange(26)) / 250.0  # 49.8 bpm
    assert "BRADY" in kinds(slower)


def test_an_episode_exactly_as_long_as_the_minimum_is_kept():
    # at 360 Hz from sample 1: 7 intervals at 60 bpm, then 7 at 40 bpm spanning exactly
    # 10.5 s in samples (10.499999999999998 s in seconds)
    config = RhythmConfig(detect_vf=False, rate_beats=2, rate_min_s=10.5)
    samples = 1 + np.concatenate([360 * np.arange(8), 360 * 7 + 540 * np.arange(1, 8)])
    times_s = samples / 360.0
    assert times_s[-1] - times_s[7] < 10.5  # the rounding this test is about
    brady = [e for e in kinds_and_episodes(times_s, config) if e.kind == "BRADY"]
    assert len(brady) == 1
    assert brady[0].start_s == times_s[7] and brady[0].end_s == times_s[-1]


def kinds_and_episodes(times_s, config):
    return episodes_from_beats(times_s, None, None, times_s[-1] + 0.5, config)


# --- episodes touching the start or the end of the signal ------------------------------


def test_bradycardia_from_the_first_beat_is_an_episode_from_there():
    # 12 s at 40 bpm: the trailing 8-interval median left the first 7 intervals without a
    # rate, so the episode began at the 8th beat, lasted 1.5 s and was dropped
    times_s = 0.2 + 1.5 * np.arange(9)
    brady = [e for e in kinds_and_episodes(times_s, BEATS_ONLY) if e.kind == "BRADY"]
    assert len(brady) == 1
    assert brady[0].start_s == times_s[0] and brady[0].end_s == times_s[-1]
    assert brady[0].details["n_beats"] == 9 and brady[0].details["min_hr_bpm"] == 40.0


def test_tachycardia_over_a_whole_short_strip_is_an_episode_end_to_end():
    times_s = (50 + 100 * np.arange(28)) / 250.0  # 150 bpm for 10.8 s
    tachy = [e for e in kinds_and_episodes(times_s, BEATS_ONLY) if e.kind == "TACHY"]
    assert [(e.start_s, e.end_s) for e in tachy] == [(times_s[0], times_s[-1])]


def test_one_long_interval_at_the_start_makes_no_bradycardia():
    # a missed beat at the start: 1.6 s, then 75 bpm
    times_s = np.concatenate([[0.1], 1.7 + 0.8 * np.arange(25)])
    assert "BRADY" not in kinds(times_s)


def test_a_pause_open_at_the_end_of_exactly_the_limit_is_a_pause():
    times_s = np.array([1, 251]) / 250.0
    duration_s = 1001 / 250.0  # 3 s after the last beat, in samples
    assert duration_s - times_s[-1] < 3.0  # the rounding this test is about
    pauses = [
        e
        for e in episodes_from_beats(times_s, None, None, duration_s, BEATS_ONLY)
        if e.kind == "PAUSE"
    ]
    assert [e.details.get("open") for e in pauses] == ["end"]


def test_a_pause_cut_by_vf_describes_each_part():
    # a pause open at the end with VF from 6 to 12 s: each part gives its own duration, and
    # only the part that reaches the end of the signal is open there
    vf_probabilities = np.zeros(15)
    vf_probabilities[3:6] = 0.99  # 2-s segments 3-5: 6-12 s
    episodes = episodes_from_beats(
        np.array([1.0, 2.0]), None, vf_probabilities, 30.0, RhythmConfig()
    )
    pauses = [(e.start_s, e.end_s, e.details) for e in episodes if e.kind == "PAUSE"]
    assert pauses == [
        (2.0, 6.0, {"duration_s": 4.0}),
        (12.0, 30.0, {"duration_s": 18.0, "open": "end"}),
    ]
