"""The heart-rate alarms around an asystole: the rate of the beats before a pause is not the
rate during it, nor is a mean taken over the pause's interval the rate after it.

The heart-rate rule reads the final beats of up to 80 s back. During an asystole the last final
beats are those before it, so the rule judged their rate as the current one (an open HR_LOW
resolved as the last normal beats before the pause became final); once the beats came back,
the mean of 8 intervals, one of them the pause, raised HR_LOW on top of the pause alarm. The
rule now reads only the beats after the latest pause: "cannot tell" while it goes on.
"""

import numpy as np
import pytest

from monitoring.alarms import BEAT_FINAL_LAG_S, evaluate_alarms
from monitoring.models import Alarm, AlarmKind, Beat, Episode
from tests.test_alarms import FS_HZ, changes_of, move_cursor

pytestmark = pytest.mark.django_db

# The QRS detector knows every beat's position about this long after it (its class comes
# with the next beat and the BEAT_FINAL_LAG_S: inference/streaming.py, "Pauses").
POSITIONS_LAG_S = 0.4


def beat_times(*runs: tuple[float, float]) -> np.ndarray:
    """Beat times (s) of consecutive ``(bpm, seconds)`` runs; a rate of 0 is an asystole."""
    times, now_s = [], 0.0
    for bpm, seconds in runs:
        if bpm:
            times += list(now_s + np.arange(1, int(seconds * bpm / 60.0) + 1) * 60.0 / bpm)
        now_s += seconds
    return np.asarray(times)


def stream(recording, times_s: np.ndarray, end_s: float) -> list[tuple[float, object]]:
    """Store what the streaming analysis stores, round by round (one a second), and evaluate
    the alarms after each: a beat is final once its next beat is known and ``BEAT_FINAL_LAG_S``
    has passed; the pauses (``pause_limit_s``) are read from every known position, the one
    after the last beat ongoing. Returns (time, change) of every alarm change."""
    pause_s = recording.patient.pause_limit_s
    stored, changes = 0, []
    for now_s in np.arange(1.0, end_s + 0.5, 1.0):
        known = times_s[times_s <= now_s - POSITIONS_LAG_S]
        final = known[:-1][known[:-1] <= now_s - BEAT_FINAL_LAG_S]
        Beat.objects.bulk_create(
            Beat(
                recording=recording,
                index=index,
                sample=round(time_s * FS_HZ),
                label="N",
                confidence=0.9,
                probabilities={"N": 0.9},
            )
            for index, time_s in enumerate(final[stored:], start=stored)
        )
        stored = len(final)
        recording.episodes.filter(kind="PAUSE").delete()
        frontier_s = now_s - POSITIONS_LAG_S
        stops_s = [*known[1:], frontier_s] if len(known) else []
        for start_s, stop_s in zip(known, stops_s, strict=True):
            if stop_s - start_s >= pause_s:
                ongoing = stop_s == frontier_s
                Episode.objects.create(
                    recording=recording,
                    kind="PAUSE",
                    start_s=round(start_s, 3),
                    end_s=round(stop_s, 3),
                    details={"duration_s": round(stop_s - start_s, 3)}
                    | ({"open": "end", "ongoing": True} if ongoing else {}),
                )
        move_cursor(recording, round(now_s * FS_HZ))
        changes += [(now_s, change) for change in evaluate_alarms(recording.pk)]
    return changes


def test_an_open_low_rate_alarm_is_not_resolved_by_the_beats_before_an_asystole(recording):
    """Bradycardia (HR_LOW raised), 15 s of a normal rate, then 40 s without a beat: the
    normal beats before the pause became final during it, and the rule, reading them as the
    current rate, resolved HR_LOW while the heart had stopped. It stays open during the
    pause and is judged again on the beats after it."""
    times_s = beat_times((40, 60), (75, 15.2), (0, 40), (75, 60))
    pause_start_s = times_s[times_s < 76][-1]
    resume_s = times_s[times_s > pause_start_s + 3][0]
    changes = stream(recording, times_s, end_s=170)
    low = [(at_s, change.change) for at_s, change in changes if change.alarm.kind == "HR_LOW"]
    assert low[0][1] == "raised" and low[0][0] < pause_start_s
    assert [change for _, change in low] == ["raised", "resolved"], low
    # resolved once the beats after the pause are final, with a rate for HR_SUSTAIN_S
    assert low[1][0] > resume_s + BEAT_FINAL_LAG_S + 10, low
    assert Alarm.objects.filter(kind=AlarmKind.PAUSE).exists()
    assert not Alarm.objects.filter(kind=AlarmKind.HR_HIGH).exists()


def test_no_low_rate_alarm_when_the_beats_come_back_after_an_asystole(recording):
    """A normal rate, 20 s without a beat, the normal rate again: the pause alarm only. The
    mean of 8 intervals over the pause's (the first beats after it) raised "HR 18 < 50"."""
    times_s = beat_times((75, 60), (0, 20), (75, 60))
    changes = stream(recording, times_s, end_s=140)
    assert changes_of([change for _, change in changes], AlarmKind.PAUSE) == [
        ("raised", AlarmKind.PAUSE)
    ]
    kinds = {change.alarm.kind for _, change in changes}
    assert AlarmKind.HR_LOW not in kinds and AlarmKind.HR_HIGH not in kinds, changes


def test_a_low_rate_after_an_asystole_still_raises_its_alarm(recording):
    """The rule is not blind after a pause: once the beats after it give rates for
    HR_SUSTAIN_S, a bradycardia there raises HR_LOW, with its own rate."""
    times_s = beat_times((75, 60), (0, 20), (40, 60))
    changes = stream(recording, times_s, end_s=140)
    low = [change for _, change in changes if change.alarm.kind == AlarmKind.HR_LOW]
    assert [change.change for change in low] == ["raised"]
    assert low[0].alarm.message == "HR 40 < 50"
