"""The heart-rate alarms' deadband: a rate hovering at a limit is one alarm, not a storm."""

import pytest

from monitoring.alarms import BEAT_FINAL_LAG_S, HR_DEADBAND_BPM, evaluate_alarms
from monitoring.models import Alarm, AlarmKind, Beat, Patient, Recording
from tests.test_alarms import add_beats, changes_of, move_cursor, open_alarms

pytestmark = pytest.mark.django_db


def hover(recording, rates_bpm: list[float], bout_s: float, step_s: float = 5.0) -> list:
    """Bouts of ``bout_s`` at each rate in turn, evaluated every ``step_s``; the changes."""
    changes = []
    for bpm in rates_bpm:
        for _ in range(round(bout_s / step_s)):
            add_beats(recording, bpm=bpm, seconds=step_s)
            changes += evaluate_alarms(recording.pk)
    return changes


def test_a_rate_hovering_at_the_low_limit_is_one_alarm(recording):
    # limit 50: 25 s at 46 bpm, then 25 s at 52, four times: each bout is long enough for
    # the time hold alone (10 s) to raise and resolve, but 52 is not 5 bpm inside the limit
    add_beats(recording, bpm=70, seconds=30)
    changes = hover(recording, [46, 52] * 4, bout_s=25)
    assert changes_of(changes, AlarmKind.HR_LOW) == [("raised", AlarmKind.HR_LOW)]
    # back 5 bpm inside the limit for the hold: resolved, once
    changes = hover(recording, [50 + HR_DEADBAND_BPM], bout_s=25)
    assert changes_of(changes, AlarmKind.HR_LOW) == [("resolved", AlarmKind.HR_LOW)]
    assert Alarm.objects.filter(kind=AlarmKind.HR_LOW).count() == 1


def test_a_rate_hovering_at_the_high_limit_is_one_alarm(recording):
    add_beats(recording, bpm=80, seconds=30)
    changes = hover(recording, [126, 118] * 4, bout_s=25)
    assert changes_of(changes, AlarmKind.HR_HIGH) == [("raised", AlarmKind.HR_HIGH)]
    changes = hover(recording, [100], bout_s=25)
    assert changes_of(changes, AlarmKind.HR_HIGH) == [("resolved", AlarmKind.HR_HIGH)]


def test_limits_closer_than_two_deadbands_do_not_hold_both_alarms_open(recording):
    Patient.objects.filter(pk=recording.patient_id).update(
        hr_low_limit_bpm=60, hr_high_limit_bpm=62
    )
    add_beats(recording, bpm=61, seconds=30)
    hover(recording, [70], bout_s=25)
    assert open_alarms(recording.patient, AlarmKind.HR_HIGH).exists()
    # under the low limit: raises the low alarm and resolves the high one (59 bpm is not
    # 5 bpm under 62, but it is past the middle of the limits)
    changes = hover(recording, [59], bout_s=25)
    hr_changes = changes_of(changes, AlarmKind.HR_HIGH) + changes_of(changes, AlarmKind.HR_LOW)
    assert sorted(hr_changes) == [("raised", AlarmKind.HR_LOW), ("resolved", AlarmKind.HR_HIGH)]


def test_the_reference_beats_of_mitdb_123_are_few_low_rate_alarms(recording):
    """MIT-BIH 123 is a sinus rhythm that drifts about 50 bpm for much of its 30 min: its
    reference beats, stored as the analysis would (final about 7 s after the R peak) and
    evaluated every 5 s with the default limits (50-120 bpm), raised 20 low-rate alarms
    without the deadband, 4 with it."""
    import wfdb

    from tests.inference.conftest import physionet_folder

    annotation = wfdb.rdann(str(physionet_folder("mitdb", "123") / "123"), "atr")
    fs_hz = 360.0
    Recording.objects.filter(pk=recording.pk).update(sampling_rate_hz=fs_hz)
    recording.refresh_from_db()
    assert (recording.patient.hr_low_limit_bpm, recording.patient.hr_high_limit_bpm) == (50, 120)
    beats = [
        int(sample)
        for sample, symbol in zip(annotation.sample, annotation.symbol, strict=True)
        if symbol in "NLRejAaJSVEF/fQ"  # beats, not rhythm or noise annotations
    ]
    stored, changes = 0, []
    for step in range(1, 30 * 60 // 5 + 1):
        cursor = round(step * 5 * fs_hz)
        final = [b for b in beats[stored:] if b < cursor - BEAT_FINAL_LAG_S * fs_hz]
        Beat.objects.bulk_create(
            Beat(
                recording=recording,
                index=stored + i,
                sample=sample,
                label="N",
                confidence=1.0,
                probabilities={"N": 1.0},
            )
            for i, sample in enumerate(final)
        )
        stored += len(final)
        move_cursor(recording, cursor)
        changes += evaluate_alarms(recording.pk)
    raised = changes_of(changes, AlarmKind.HR_LOW).count(("raised", AlarmKind.HR_LOW))
    assert raised <= 5
