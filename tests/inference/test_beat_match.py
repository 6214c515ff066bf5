"""Beat-by-beat matching of detections with reference beats (ANSI/AAMI EC57, 150 ms)."""

import numpy as np
import pytest

from inference.beat_match import MATCH_WINDOW_S, detection_scores, match_beats


def test_it_matches_identical_beats_one_to_one():
    beats = np.array([100, 400, 700])
    reference, detected = match_beats(beats, beats, 360.0)
    np.testing.assert_array_equal(reference, [0, 1, 2])
    np.testing.assert_array_equal(detected, [0, 1, 2])


def test_it_matches_within_150_ms_and_not_beyond():
    fs = 1000.0
    assert MATCH_WINDOW_S == 0.150
    scores = detection_scores(np.array([1000, 3000]), np.array([1150, 3151]), fs)
    assert (scores["tp"], scores["fn"], scores["fp"]) == (1, 1, 1)


def test_the_window_is_in_seconds_whatever_the_rate():
    # 40 samples is 160 ms at 250 Hz (no match) but 40 ms at 1000 Hz (a match)
    assert detection_scores([1000], [1040], 250.0)["tp"] == 0
    assert detection_scores([1000], [1040], 1000.0)["tp"] == 1


def test_it_counts_a_second_detection_of_one_beat_as_false():
    scores = detection_scores(np.array([500]), np.array([480, 510]), 360.0)
    assert (scores["tp"], scores["fn"], scores["fp"]) == (1, 0, 1)


def test_it_pairs_the_nearest_first():
    # the detection at 530 is within the window of both references; it belongs to 520
    reference, detected = match_beats(np.array([500, 520]), np.array([530]), 1000.0)
    np.testing.assert_array_equal(reference, [1])
    np.testing.assert_array_equal(detected, [0])


def test_it_scores_se_and_ppv():
    reference = np.arange(10) * 300
    detected = np.concatenate([reference[:8] + 5, [2950, 5000]])  # 8 found, 2 missed, 2 false
    scores = detection_scores(reference, np.sort(detected), 360.0)
    assert scores["tp"] == 8 and scores["fn"] == 2 and scores["fp"] == 2
    assert scores["se"] == pytest.approx(0.8) and scores["ppv"] == pytest.approx(0.8)
    assert scores["n_reference"] == 10 and scores["n_detected"] == 10


def test_it_handles_no_beats_on_either_side():
    empty = np.array([], dtype=np.int64)
    assert detection_scores(empty, np.array([10, 20]), 360.0)["fp"] == 2
    missed = detection_scores(np.array([10, 20]), empty, 360.0)
    assert missed["fn"] == 2 and missed["se"] == 0.0 and np.isnan(missed["ppv"])
    assert np.isnan(detection_scores(empty, empty, 360.0)["se"])


def test_it_leaves_no_matchable_pair_unmatched_on_random_beats():
    # beats more than two windows apart (RR > 300 ms), where nearest-first is optimal
    rng = np.random.default_rng(1)
    fs = 360.0
    for _ in range(20):
        reference = np.cumsum(rng.integers(109, 400, 40))
        detected = np.cumsum(rng.integers(109, 400, 40))
        matched_reference, matched_detected = match_beats(reference, detected, fs)
        # every pair within the window, each beat used once
        assert np.all(np.abs(reference[matched_reference] - detected[matched_detected]) <= 54)
        assert len(set(matched_reference)) == len(matched_reference)
        assert len(set(matched_detected)) == len(matched_detected)
        # no unmatched reference has an unmatched detection within the window
        free_reference = np.setdiff1d(np.arange(40), matched_reference)
        free_detected = np.setdiff1d(np.arange(40), matched_detected)
        if len(free_reference) and len(free_detected):
            gaps = np.abs(reference[free_reference][:, None] - detected[free_detected][None, :])
            assert gaps.min() > 54
