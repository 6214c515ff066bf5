"""Whether a VT run may still go on through a bridging F or Q beat while the V beat after it is
not known yet (``inference.rhythm.vt_run_may_go_on``, what the streaming analysis asks to call
a VT "ongoing"): it must agree with the offline rule (``episodes_from_beats``) on whether the
earliest V beat still to come would be joined to the run."""

import numpy as np
import pytest

from inference.rhythm import (
    RhythmConfig,
    episodes_from_beats,
    vt_bridge_gap_s,
    vt_run_may_go_on,
)

CONFIG = RhythmConfig(detect_vf=False)


def joined_by_the_next_v_beat(times_s, labels, n_v_beats: int, next_v_s: float) -> bool:
    """Whether a V beat at ``next_v_s`` becomes part of the run of ``n_v_beats`` V beats."""
    times_s = [*times_s, next_v_s]
    episodes = episodes_from_beats(times_s, [*labels, "V"], None, next_v_s + 1.0, CONFIG)
    return any(
        episode.kind == "VT" and episode.details["n_v_beats"] == n_v_beats + 1
        for episode in episodes
    )


def test_the_answer_agrees_with_the_offline_rule_on_random_beats_after_a_run():
    rng = np.random.default_rng(11)
    answers = []
    for _ in range(400):
        n_v_beats = int(rng.integers(3, 7))
        times_s = list(10.0 + 0.4 * np.arange(n_v_beats))  # a run at 150 bpm
        labels = ["V"] * n_v_beats
        run_end_s = times_s[-1]
        for _ in range(int(rng.integers(1, 3))):  # one or two beats after the run
            times_s.append(times_s[-1] + float(rng.uniform(0.2, 1.4)))
            labels.append(str(rng.choice(["F", "Q", "N", "S"])))
        # every beat is known up to a moment after the newest one
        known_until_s = times_s[-1] + float(rng.uniform(0.01, 1.0))
        may_go_on = vt_run_may_go_on(times_s, labels, run_end_s, known_until_s, CONFIG)
        # the next beat comes at known_until_s at the earliest: if even that V beat would not
        # be joined, none later would be
        assert may_go_on == joined_by_the_next_v_beat(times_s, labels, n_v_beats, known_until_s), (
            labels[n_v_beats:],
            np.round(np.diff(times_s[n_v_beats - 1 :]), 2),
            known_until_s,
        )
        answers.append(may_go_on)
    assert 0.05 < np.mean(answers) < 0.95  # both answers were checked


def test_the_bridge_gap_is_two_intervals_at_the_vt_rate_and_holds_at_the_limit():
    assert vt_bridge_gap_s(RhythmConfig()) == pytest.approx(1.2)
    assert vt_bridge_gap_s(RhythmConfig(vt_min_bpm=120.0)) == pytest.approx(1.0)
    times_s, labels = [10.0, 10.4, 10.8, 11.2], ["V", "V", "V", "F"]
    assert vt_run_may_go_on(times_s, labels, 10.8, 10.8 + 1.2, CONFIG)
    assert not vt_run_may_go_on(times_s, labels, 10.8, 10.8 + 1.21, CONFIG)
    # a run with no beat after its last V beat is no bridge (it reaches the newest beat)
    assert not vt_run_may_go_on(times_s[:3], labels[:3], 10.8, 11.0, CONFIG)


@pytest.mark.parametrize(
    ("times_s", "labels", "run_end_s", "known_until_s", "message"),
    [
        ([10.0, 10.4], ["V"], 10.0, 11.0, "1 labels for 2 beat times"),
        ([10.0, 10.4], ["V", "F"], float("nan"), 11.0, "must be finite"),
        ([10.0, 10.4], ["V", "F"], 10.0, float("inf"), "must be finite"),
    ],
)
def test_bad_input_is_refused(times_s, labels, run_end_s, known_until_s, message):
    with pytest.raises(ValueError, match=message):
        vt_run_may_go_on(times_s, labels, run_end_s, known_until_s, CONFIG)
