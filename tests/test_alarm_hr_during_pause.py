"""The heart-rate alarms around pauses: the rate of the beats before a pause is not the rate
during it, nor is a mean taken over the pause's interval the rate after it; and pauses that
recur do not blind the rule to the slow rate between them.

The heart-rate rule reads the final beats of up to 80 s back. During an asystole the last final
beats are those before it, so the rule judged their rate as the current one (an open HR_LOW
resolved as the last normal beats before the pause became final); once the beats came back,
the mean of 8 intervals, one of them the pause, raised HR_LOW on top of the pause alarm. The
rule then read only the beats after the latest pause, which needed 8 intervals and 10 s after
every pause: a bradycardia with a pause every 22 s never raised HR_LOW. Now it cannot tell
while a pause goes on, leaves the pauses out of its 8-interval means, and reads a pause in its
last 10 s as 0 bpm: it keeps HR_LOW open and HR_HIGH from being raised, never raises or
resolves anything by itself (docs/alarms.md, "The heart-rate rule and pauses").
"""

import numpy as np
import pytest

from monitoring.alarms import (
    BEAT_FINAL_LAG_S,
    HR_RR_INTERVALS,
    HR_SUSTAIN_S,
    evaluate_alarms,
)
from monitoring.models import Alarm, AlarmKind, Beat, Episode
from tests.test_alarms import FS_HZ, changes_of, move_cursor

pytestmark = pytest.mark.django_db

# The two alarms open before an asystole are resolved at 134 s and 117 s: 16 s more show no
# change after (the rate rule's HR_SUSTAIN_S and more); the beats go on to 175 s.
AFTER_RESUME_END_S = 150

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
    changes = stream(recording, times_s, end_s=AFTER_RESUME_END_S)
    low = [(at_s, change.change) for at_s, change in changes if change.alarm.kind == "HR_LOW"]
    assert low[0][1] == "raised" and low[0][0] < pause_start_s
    assert [change for _, change in low] == ["raised", "resolved"], low
    # resolved once the beats after the pause are final, with a rate for HR_SUSTAIN_S
    assert low[1][0] > resume_s + BEAT_FINAL_LAG_S + 10, low
    assert Alarm.objects.filter(kind=AlarmKind.PAUSE).exists()
    assert not Alarm.objects.filter(kind=AlarmKind.HR_HIGH).exists()


def test_an_open_high_rate_alarm_is_not_resolved_during_an_asystole(recording):
    """Tachycardia (HR_HIGH raised), 15 s of a normal rate, then 40 s without a beat: the rule
    cannot tell while the pause goes on, so the normal beats before it, final during it, do
    not resolve HR_HIGH until the beats come back (a pause reads as no rate above the limit,
    but an ongoing one as nothing at all: docs/alarms.md)."""
    times_s = beat_times((140, 60), (75, 15.2), (0, 40), (75, 60))
    pause_start_s = times_s[times_s < 76][-1]
    resume_s = times_s[times_s > pause_start_s + 3][0]
    changes = stream(recording, times_s, end_s=AFTER_RESUME_END_S)
    high = [(at_s, change.change) for at_s, change in changes if change.alarm.kind == "HR_HIGH"]
    assert [change for _, change in high] == ["raised", "resolved"], high
    assert high[0][0] < pause_start_s and high[1][0] > resume_s, high
    assert not Alarm.objects.filter(kind=AlarmKind.HR_LOW).exists()


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


# --- Pauses that recur (review of the rule that read only the beats after the last pause) ----

ONSET_S = 60.0  # each rhythm below follows a minute at 75 bpm
# The rate rule reads up to 80 s back, so from ONSET_S + 80 s it sees only the repeating
# rhythm; each rhythm below goes on some 40-70 s (two cycles or more) past that, and no
# further: every second streamed is a round of the rules.


def rhythm(rr_s: np.ndarray) -> np.ndarray:
    """Beat times (s) of a minute at 75 bpm, then of the intervals ``rr_s``."""
    return np.cumsum(np.concatenate([np.full(75, 0.8), rr_s]))


def alarm_changes(changes, kind) -> list[tuple[float, str, str]]:
    return [(at_s, c.change, c.alarm.message) for at_s, c in changes if c.alarm.kind == kind]


def pauses_between(times_s: np.ndarray, pause_s: float) -> int:
    return int((np.diff(times_s) >= pause_s).sum())


def test_a_bradycardia_with_a_pause_every_22_s_raises_the_low_rate_alarm(recording):
    """35 bpm, every 12th interval a 3.2-s pause: the PAUSE alarm stays open (and, once
    acknowledged, escalates nothing), so HR_LOW must come too. Needing 8 intervals and 10 s
    after each pause (about 24 s at 35 bpm) it never came; before that rule, at 83 s."""
    rr_35_s = 60.0 / 35
    cycle_s = np.concatenate([np.full(11, rr_35_s), [3.2]])
    n_cycles = 6  # 132 s: to ONSET_S + 80 s, then two cycles and more
    times_s = rhythm(np.tile(cycle_s, n_cycles))
    assert pauses_between(times_s, recording.patient.pause_limit_s) == n_cycles
    changes = stream(recording, times_s, end_s=times_s[-1] + 1)
    low = alarm_changes(changes, AlarmKind.HR_LOW)
    assert [(change, message) for _, change, message in low] == [("raised", "HR 35 < 50")], low
    # as soon as the pauses allow: 8 intervals of the new rate, 10 s of it, the beats' lag
    latest_s = ONSET_S + HR_RR_INTERVALS * rr_35_s + HR_SUSTAIN_S + BEAT_FINAL_LAG_S + 1
    assert low[0][0] <= latest_s, low
    assert alarm_changes(changes, AlarmKind.PAUSE)[0][1] == "raised"
    assert not alarm_changes(changes, AlarmKind.HR_HIGH)


def test_an_escape_rhythm_straddling_the_pause_limit_raises_the_low_rate_alarm(recording):
    """Sinus arrest, escape beats 2.5-3.5 s apart (17-24 bpm) under a 3-s pause limit: about
    every other interval is a pause, so there were never 8 intervals after the last one. The
    intervals that are no pause are the rate (before: HR_LOW at 83 s)."""
    rr_s = 2.5 + (np.arange(45) * 0.618) % 1.0  # spread evenly over 2.5-3.5 s; 134 s
    times_s = rhythm(rr_s)
    assert pauses_between(times_s, recording.patient.pause_limit_s) > 20
    changes = stream(recording, times_s, end_s=times_s[-1] + 1)
    low = alarm_changes(changes, AlarmKind.HR_LOW)
    assert [change for _, change, _ in low] == ["raised"], low
    assert ONSET_S < low[0][0] <= ONSET_S + 35, low
    rate_bpm = int(low[0][2].split()[1])
    assert rate_bpm < 50 and low[0][2].endswith("< 50")
    assert not alarm_changes(changes, AlarmKind.HR_HIGH)


def af(n_beats: int, rng: np.random.Generator) -> np.ndarray:
    """Intervals of an irregular rhythm at about 130 bpm (0.3-0.62 s)."""
    return rng.uniform(0.3, 0.62, n_beats)


def test_af_with_a_pause_every_12_s_raises_neither_rate_alarm(recording):
    """About 9 s of AF at 130 bpm, then a 3.2-s pause, over and over: no 10 s without a pause,
    so no HR_HIGH (as before), and the pauses, below the low limit, raise no HR_LOW beside
    the pause alarm."""
    rng = np.random.default_rng(1)
    # 10 cycles, 124 s; the longest AF (9.75 s, the third) is among them, as in the first 16
    times_s = rhythm(np.concatenate([np.append(af(20, rng), 3.2) for _ in range(10)]))
    changes = stream(recording, times_s, end_s=times_s[-1] + 1)
    assert alarm_changes(changes, AlarmKind.PAUSE)[0][1] == "raised"
    kinds = {change.alarm.kind for _, change in changes}
    assert AlarmKind.HR_HIGH not in kinds and AlarmKind.HR_LOW not in kinds, changes


def test_af_with_a_pause_every_25_s_raises_the_high_rate_alarm_between_them(recording):
    """About 22 s of AF at 130 bpm, then a 3.2-s pause: the rate is over the limit for more
    than 10 s between the pauses, and HR_HIGH is raised (at 134 s, as before), once."""
    rng = np.random.default_rng(1)
    # 6 cycles, 152 s: three pauses after the alarm, which none of them resolves
    times_s = rhythm(np.concatenate([np.append(af(48, rng), 3.2) for _ in range(6)]))
    changes = stream(recording, times_s, end_s=times_s[-1] + 1)
    high = alarm_changes(changes, AlarmKind.HR_HIGH)
    assert [change for _, change, _ in high] == ["raised"], high
    assert high[0][0] <= 140 and high[0][2].endswith("> 120"), high
    assert not alarm_changes(changes, AlarmKind.HR_LOW)
