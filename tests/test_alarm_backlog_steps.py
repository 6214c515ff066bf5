"""A backlog raises what the same signal raised live (``alarms.ROUND_REPLAY_STEP_S``).

Live rounds come about once a second (a device's 1-s chunks), and the alarm rules judge the
end of each. A long round (a device resending its buffer after a network drop) was judged
every 5 s of its signal: a condition that held for barely its sustain time, a rate over the
limit at every beat of 10 s but not 15, fell between two steps and raised nothing, though live
streaming raised it. Now a long round is judged every second.

Each test feeds the same synthetic analysis (beats, episodes, 2-s window verdicts) twice:
round by round as it comes in live, and live up to ``BACKLOG_FROM_S`` then as one backlog
round (up to 120 s) to the end, and compares the alarms raised and resolved. The event is
shifted by 0 to 4 s so that it falls at every phase of a 5-s step. Each test streams to
some 15 s past the last change live (at phase 4 s), not further: every second costs a round.
"""

import numpy as np
import pytest
from django.utils import timezone

from monitoring.alarms import BEAT_FINAL_LAG_S, evaluate_alarms
from monitoring.models import Alarm, AlarmKind, Beat, Episode, Prediction, Recording
from tests.test_alarms import FS_HZ, store_signal, switch_window_model_alarm

pytestmark = pytest.mark.django_db

LIVE_ROUND_S = 1.0  # a device's 1-s chunk, analysed as it arrives
BACKLOG_FROM_S = 10.0  # the network drops here; the next 120 s come as one round
END_S = 130.0  # the most one backlog round from BACKLOG_FROM_S reads (120 s)
# Where a test's last change comes live at phase 4 s, measured: HR_HIGH resolved at 86 s,
# ARRHYTHMIA at 86 s, SIGNAL_QUALITY at 105 s (the episodes' hold needs all of END_S).
RATE_END_S = 100.0
WINDOWS_END_S = 100.0
NOISY_END_S = 120.0
PHASES_S = [0.0, 1.0, 2.0, 3.0, 4.0]
WINDOW_LENGTH = round(2.0 * FS_HZ)


def beat_samples(segments: list[tuple[float, float]]) -> np.ndarray:
    """The R peaks (samples) of a rhythm given as (bpm, seconds) segments, one after another;
    a bpm of 0 is a stretch without beats."""
    samples, t_s = [], 0.0
    for bpm, seconds in segments:
        if bpm == 0:
            t_s += seconds
            continue
        rr_s = 60.0 / bpm
        for _ in range(round(seconds / rr_s)):
            t_s += rr_s
            samples.append(round(t_s * FS_HZ))
    return np.array(samples, dtype=np.int64)


class Analysis:
    """Stores a synthetic analysis as the streaming analysis would: beats, episodes and 2-s
    window verdicts once the cursor is ``BEAT_FINAL_LAG_S`` past them (an episode past its
    start), then evaluates the round's alarms with where it began, as
    ``streaming.run_stream_analysis`` does."""

    def __init__(self, recording, samples, labels=None, episodes=(), windows=()):
        self.recording = recording
        self.samples = samples
        self.labels = labels or (lambda index: "N")  # a beat's label from its index
        self.episodes = list(episodes)  # (kind, start_s, end_s, details), in order
        self.windows = list(windows)  # labels of consecutive 2-s windows from sample 0
        self.n_beats = 0
        self.n_windows = 0

    def round_to(self, cursor: int) -> list[tuple[str, str]]:
        since = self.recording.analysis_cursor
        final_before = cursor - round(BEAT_FINAL_LAG_S * FS_HZ)
        new = self.samples[self.n_beats :]
        new = new[new < final_before]
        Beat.objects.bulk_create(
            Beat(
                recording=self.recording,
                index=index,
                sample=int(sample),
                label=self.labels(index),
                confidence=0.9,
                probabilities={"N": 0.9},
            )
            for index, sample in enumerate(new, start=self.n_beats)
        )
        self.n_beats += len(new)
        while self.episodes and self.episodes[0][1] * FS_HZ < final_before:
            kind, start_s, end_s, details = self.episodes.pop(0)
            Episode.objects.create(
                recording=self.recording, kind=kind, start_s=start_s, end_s=end_s, details=details
            )
        while self.n_windows < len(self.windows) and self.n_windows * WINDOW_LENGTH < final_before:
            Prediction.objects.create(
                recording=self.recording,
                model_name="window-cnn-mitdb",
                model_version="1.0.0",
                window_start=self.n_windows * WINDOW_LENGTH,
                window_length=WINDOW_LENGTH,
                label=self.windows[self.n_windows],
                probabilities={"normal": 0.5, "arrhythmia": 0.5},
            )
            self.n_windows += 1
        # the round's chunks just came: without this, a test running over DEVICE_OFFLINE_S
        # of wall time on a loaded machine raised DEVICE_OFFLINE among the changes compared
        Recording.objects.filter(pk=self.recording.pk).update(
            analysis_cursor=cursor, last_chunk_at=timezone.now()
        )
        self.recording.refresh_from_db()
        changes = evaluate_alarms(self.recording.pk, since_sample=since)
        return [(change.change, str(change.alarm.kind)) for change in changes]


def live_and_backlog(recording, samples, end_s=END_S, **analysis) -> tuple[list, list]:
    """The alarm changes of the same analysis fed live (1-s rounds to ``end_s``) and as a
    backlog (live to ``BACKLOG_FROM_S``, then one round to ``end_s``)."""
    live_round = round(LIVE_ROUND_S * FS_HZ)
    backlog_from, end = round(BACKLOG_FROM_S * FS_HZ), round(end_s * FS_HZ)
    assert end - backlog_from <= round(120.0 * FS_HZ)  # what one round reads at most

    def feed(round_ends: list[int]) -> list:
        Alarm.objects.all().delete()
        for rows in (recording.beats, recording.episodes, recording.predictions):
            rows.all().delete()
        Recording.objects.filter(pk=recording.pk).update(analysis_cursor=0)
        recording.refresh_from_db()
        fed = Analysis(recording, samples, **analysis)
        return [change for cursor in round_ends for change in fed.round_to(cursor)]

    live = feed(list(range(live_round, end + 1, live_round)))
    backlog = feed([*range(live_round, backlog_from + 1, live_round), end])
    return live, backlog


@pytest.mark.parametrize("phase_s", PHASES_S)
def test_a_rate_over_the_limit_for_about_11_s_raises_in_a_backlog_as_live(recording, phase_s):
    # 13 s at 140 bpm: the rate (8 RR intervals) is over 120 from the 7th fast beat to the
    # first slow one, about 11 s; the old 5-s steps missed it at 3 of the 5 phases
    samples = beat_samples([(75, 50.0 + phase_s), (140, 13.0), (75, 80.0 - phase_s)])
    live, backlog = live_and_backlog(recording, samples, end_s=RATE_END_S)
    assert live == [("raised", AlarmKind.HR_HIGH), ("resolved", AlarmKind.HR_HIGH)]
    assert backlog == live


@pytest.mark.parametrize("phase_s", PHASES_S)
def test_a_beatless_noisy_12_s_raises_poor_signal_in_a_backlog_as_live(recording, rng, phase_s):
    store_signal(recording, rng.normal(0.0, 0.6, round(END_S * FS_HZ)))  # 2.4 mV p-p, no QRS
    samples = beat_samples([(75, 50.0 + phase_s), (0, 12.0), (75, 80.0 - phase_s)])
    live, backlog = live_and_backlog(recording, samples, end_s=NOISY_END_S)
    assert ("raised", AlarmKind.SIGNAL_QUALITY) in live
    assert backlog == live


@pytest.mark.parametrize("phase_s", PHASES_S)
def test_pvcs_over_the_limit_for_under_2_s_raise_in_a_backlog_as_live(recording, phase_s):
    # 11 V beats 5.83 s apart (every 7th at 72 bpm): 11 in the last 60 s (limit 10) for
    # 1.7 s, at 3 beats
    samples = beat_samples([(72, 150.0)])
    first = int(np.searchsorted(samples, round((48.0 + phase_s) * FS_HZ)))
    v_beats = {first + 7 * number for number in range(11)}
    live, backlog = live_and_backlog(
        recording, samples, labels=lambda index: "V" if index in v_beats else "N"
    )
    assert live == [("raised", AlarmKind.PVC)]
    assert backlog == live


@pytest.mark.parametrize("phase_windows", [0, 1, 2, 3, 4])
def test_six_abnormal_windows_raise_in_a_backlog_as_live(recording, phase_windows):
    switch_window_model_alarm(recording.patient, True)
    windows = ["normal"] * (25 + phase_windows) + ["arrhythmia"] * 6 + ["normal"] * 40
    live, backlog = live_and_backlog(
        recording, beat_samples([(75, 150.0)]), end_s=WINDOWS_END_S, windows=windows
    )
    assert live == [("raised", AlarmKind.ARRHYTHMIA), ("resolved", AlarmKind.ARRHYTHMIA)]
    assert backlog == live


@pytest.mark.parametrize("phase_s", PHASES_S)
def test_short_episodes_raise_in_a_backlog_as_live(recording, phase_s):
    # held EVENT_HOLD_S (60 s) after they end: the old 5-s steps never missed them either
    # (they only raised two stored at one step in the order of the kinds)
    start_s = 50.0 + phase_s
    episodes = [
        ("VT", start_s, start_s + 2.5, {"n_beats": 6, "mean_hr_bpm": 150.0}),
        ("PAUSE", start_s + 4.0, start_s + 7.5, {"duration_s": 3.5}),
    ]
    live, backlog = live_and_backlog(recording, beat_samples([(75, 150.0)]), episodes=episodes)
    assert sorted(live) == [
        ("raised", AlarmKind.PAUSE),
        ("raised", AlarmKind.VT),
        ("resolved", AlarmKind.PAUSE),
        ("resolved", AlarmKind.VT),
    ]
    assert sorted(backlog) == sorted(live)
