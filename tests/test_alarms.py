"""Alarm rules and lifecycle on synthetic stored beats, episodes, windows and chunks; the API."""

from datetime import timedelta

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from monitoring.alarms import (
    BEAT_FINAL_LAG_S,
    EVENT_HOLD_S,
    PVC_RESOLVE_HOLD_S,
    arrhythmia_condition,
    check_devices,
    evaluate_alarms,
    periodic_check,
)
from monitoring.models import (
    Alarm,
    AlarmKind,
    AlarmPriority,
    AlarmState,
    Beat,
    Episode,
    Prediction,
    Recording,
    SampleChunk,
)

pytestmark = pytest.mark.django_db

FS_HZ = 250.0


# --- Helpers (tests/test_notifications.py uses them too) ---------------------------------


def add_beats(recording, bpm: float, seconds: float, labels=None) -> int:
    """Append beats at a steady rate after the last stored one; move the cursor past them by
    the beat lag and mark the device as just heard from. Returns the last beat's sample."""
    last = recording.beats.order_by("-index").first()
    index = 0 if last is None else last.index + 1
    sample = 0.0 if last is None else float(last.sample)
    step = 60.0 / bpm * FS_HZ
    beats = []
    for number in range(int(seconds * bpm / 60.0)):
        sample += step
        label = labels(number) if labels else "N"
        beats.append(
            Beat(
                recording=recording,
                index=index + number,
                sample=round(sample),
                label=label,
                confidence=0.9,
                probabilities={
                    "N": 0.9 if label == "N" else 0.1,
                    "V": 0.9 if label == "V" else 0.0,
                },
            )
        )
    Beat.objects.bulk_create(beats)
    move_cursor(recording, beats[-1].sample + round(BEAT_FINAL_LAG_S * FS_HZ))
    return beats[-1].sample


def move_cursor(recording, cursor: int) -> None:
    Recording.objects.filter(pk=recording.pk).update(
        analysis_cursor=cursor, last_chunk_at=timezone.now()
    )
    recording.refresh_from_db()


def store_signal(recording, signal_mv: np.ndarray, first_sample: int = 0, seq: int = 0) -> None:
    adc = np.round(np.asarray(signal_mv) * recording.gain_adc_per_mv).astype(np.int16)
    SampleChunk.from_samples(recording, seq=seq, first_sample=first_sample, samples=adc).save()
    end = first_sample + len(adc)
    Recording.objects.filter(pk=recording.pk, end_sample__lt=end).update(end_sample=end)
    recording.refresh_from_db()


def hr_alarm(recording, sample: int | None = None) -> Alarm:
    """An open HR-high alarm of the recording's patient, its event at ``sample`` (25 s)."""
    return Alarm.objects.create(
        patient=recording.patient,
        recording=recording,
        kind=AlarmKind.HR_HIGH,
        priority=AlarmPriority.WARNING,
        message="HR 134 > 120",
        value=134,
        limit=120,
        details={"sample": round(25 * FS_HZ) if sample is None else sample},
    )


def open_alarms(patient, kind=None):
    alarms = Alarm.objects.open().filter(patient=patient)
    return alarms.filter(kind=kind) if kind else alarms


def changes_of(changes, kind):
    return [(c.change, c.alarm.kind) for c in changes if c.alarm.kind == kind]


# --- Heart rate --------------------------------------------------------------------------


def test_hr_high_is_raised_with_value_and_limit_and_not_raised_again_while_open(recording):
    add_beats(recording, bpm=75, seconds=30)
    assert evaluate_alarms(recording.pk) == []
    add_beats(recording, bpm=134, seconds=20)
    changes = evaluate_alarms(recording.pk)
    assert changes_of(changes, AlarmKind.HR_HIGH) == [("raised", AlarmKind.HR_HIGH)]
    alarm = open_alarms(recording.patient, AlarmKind.HR_HIGH).get()
    assert alarm.message == "HR 134 > 120"
    assert (alarm.value, alarm.limit) == (134.0, 120.0)
    assert alarm.priority == AlarmPriority.WARNING and alarm.state == AlarmState.RAISED
    assert alarm.recording_id == recording.pk and alarm.details["sample"] > 0
    # still tachycardic: evaluated again and again, still one alarm
    for _ in range(3):
        add_beats(recording, bpm=134, seconds=5)
        assert evaluate_alarms(recording.pk) == []
    assert Alarm.objects.filter(kind=AlarmKind.HR_HIGH).count() == 1


def test_hr_high_needs_ten_sustained_seconds(recording):
    add_beats(recording, bpm=75, seconds=30)
    add_beats(recording, bpm=140, seconds=8)  # 8 s past the limit (the mean lags too)
    assert not open_alarms(recording.patient, AlarmKind.HR_HIGH).exists()
    evaluate_alarms(recording.pk)
    assert not open_alarms(recording.patient, AlarmKind.HR_HIGH).exists()


def test_hr_alarm_resolves_when_the_rate_is_back_and_is_raised_again_as_a_new_row(recording):
    add_beats(recording, bpm=134, seconds=30)
    evaluate_alarms(recording.pk)
    first = open_alarms(recording.patient, AlarmKind.HR_HIGH).get()
    add_beats(recording, bpm=80, seconds=6)  # not yet 10 s back below the limit
    assert evaluate_alarms(recording.pk) == []
    add_beats(recording, bpm=80, seconds=14)
    changes = evaluate_alarms(recording.pk)
    assert changes_of(changes, AlarmKind.HR_HIGH) == [("resolved", AlarmKind.HR_HIGH)]
    first.refresh_from_db()
    assert first.state == AlarmState.RESOLVED and first.resolved_at is not None
    add_beats(recording, bpm=150, seconds=20)
    changes = evaluate_alarms(recording.pk)
    assert changes_of(changes, AlarmKind.HR_HIGH) == [("raised", AlarmKind.HR_HIGH)]
    second = open_alarms(recording.patient, AlarmKind.HR_HIGH).get()
    assert second.pk != first.pk and second.message == "HR 150 > 120"
    assert Alarm.objects.filter(kind=AlarmKind.HR_HIGH).count() == 2


def test_hr_low_uses_the_patients_own_limit(recording):
    patient = recording.patient
    patient.hr_low_limit_bpm = 45
    patient.save()
    add_beats(recording, bpm=48, seconds=40)  # below the default 50, above this patient's 45
    evaluate_alarms(recording.pk)
    assert not open_alarms(patient, AlarmKind.HR_LOW).exists()
    add_beats(recording, bpm=40, seconds=40)
    evaluate_alarms(recording.pk)
    assert open_alarms(patient, AlarmKind.HR_LOW).get().message == "HR 40 < 45"


def test_one_premature_beat_does_not_make_a_high_rate(recording):
    # every 4th beat early: the 8-beat mean stays at the underlying rate (about 100 bpm)
    add_beats(recording, bpm=100, seconds=40, labels=lambda n: "V" if n % 4 == 0 else "N")
    evaluate_alarms(recording.pk)
    assert not open_alarms(recording.patient, AlarmKind.HR_HIGH).exists()


def test_the_database_keeps_one_open_alarm_per_patient_and_kind(recording):
    fields = dict(patient=recording.patient, kind=AlarmKind.VT, priority="critical", message="x")
    Alarm.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Alarm.objects.create(**fields)
    Alarm.objects.update(state=AlarmState.RESOLVED)
    Alarm.objects.create(**fields)  # resolved ones do not count
    assert Alarm.objects.count() == 2


# --- Episodes, PVCs, windows, signal quality ---------------------------------------------


def test_vt_episode_raises_a_critical_alarm_held_then_resolved(recording):
    add_beats(recording, bpm=75, seconds=60)
    end_s = recording.analysis_cursor / FS_HZ - 10
    Episode.objects.create(
        recording=recording,
        kind="VT",
        start_s=end_s - 2.0,
        end_s=end_s,
        details={"n_beats": 6, "mean_hr_bpm": 152.3, "max_hr_bpm": 170.0},
    )
    changes = evaluate_alarms(recording.pk)
    assert changes_of(changes, AlarmKind.VT) == [("raised", AlarmKind.VT)]
    alarm = open_alarms(recording.patient, AlarmKind.VT).get()
    assert alarm.priority == AlarmPriority.CRITICAL
    assert alarm.message == "VT 6 beats at 152 bpm (>= 3 V beats at >= 100 bpm)"
    # a while later, within the hold: still the same alarm
    add_beats(recording, bpm=75, seconds=EVENT_HOLD_S - 25)
    assert changes_of(evaluate_alarms(recording.pk), AlarmKind.VT) == []
    add_beats(recording, bpm=75, seconds=30)
    assert changes_of(evaluate_alarms(recording.pk), AlarmKind.VT) == [("resolved", AlarmKind.VT)]


@pytest.mark.parametrize(
    ("kind", "details", "expected"),
    [
        ("PAUSE", {"duration_s": 4.2}, "Pause 4.2 s (>= 3 s)"),
        # at least the limit, as the rule is: "Pause 3.0 s > 3.0 s" read as false
        ("PAUSE", {"duration_s": 3.04}, "Pause 3.0 s (>= 3 s)"),
        ("VF", {"mean_probability": 0.9}, "VF/VFL for 8 s (>= 4 s)"),
        ("AF", {"n_beats": 120, "mean_hr_bpm": 110.0}, "AF onset: 8 s at 110 bpm (>= 60 s)"),
    ],
)
def test_ongoing_episodes_raise_their_alarms(recording, kind, details, expected):
    add_beats(recording, bpm=75, seconds=30)
    end_s = recording.analysis_cursor / FS_HZ
    Episode.objects.create(
        recording=recording,
        kind=kind,
        start_s=end_s - 8.0 if kind != "PAUSE" else end_s - 4.2,
        end_s=end_s,
        details={**details, "ongoing": True},
    )
    evaluate_alarms(recording.pk)
    alarm = open_alarms(recording.patient, kind).get()
    assert alarm.message == expected
    assert alarm.priority == ("warning" if kind == "AF" else "critical")


def test_the_pause_message_gives_the_patients_limit_as_set(recording):
    patient = recording.patient
    patient.pause_limit_s = 2.25
    patient.save()
    add_beats(recording, bpm=75, seconds=30)
    end_s = recording.analysis_cursor / FS_HZ
    Episode.objects.create(
        recording=recording,
        kind="PAUSE",
        start_s=end_s - 2.3,
        end_s=end_s,
        details={"duration_s": 2.3, "open": "end", "ongoing": True},
    )
    evaluate_alarms(recording.pk)
    alarm = open_alarms(patient, "PAUSE").get()
    assert alarm.message == "Pause 2.3 s (>= 2.25 s)"
    assert (alarm.value, alarm.limit) == (2.3, 2.25)


def test_pvcs_counted_before_a_whole_minute_say_over_how_long(recording):
    # bigeminy at 75 bpm: 12 V beats in the first 20 s is a rate of about 37 a minute, and
    # "12/min" would understate it
    add_beats(recording, bpm=75, seconds=25, labels=lambda n: "V" if n % 2 else "N")
    evaluate_alarms(recording.pk)
    alarm = open_alarms(recording.patient, AlarmKind.PVC).get()
    counted_s = recording.beats.filter(provisional=False).order_by("-sample").first().sample
    assert alarm.message == (
        f"PVC {alarm.value:.0f} in the first {counted_s / FS_HZ:.0f} s > 10/min"
    )
    assert alarm.value >= 11


def test_an_open_pvc_alarm_says_the_count_now_and_is_not_notified_again(
    recording, monkeypatch, django_capture_on_commit_callbacks
):
    """Frequent PVCs stay open for hours: the message of the first minute, "PVC 12 in the
    first 13 s", was still on the live view an hour later. While the condition holds the
    alarm's text follows the count, shown to live viewers and not sent to anyone again."""
    from monitoring import live
    from monitoring.models import AlarmRecipient, Notification

    AlarmRecipient.objects.create(patient=recording.patient, address="night@example.org")
    sends = []
    monkeypatch.setattr(live, "_send_all", lambda pairs, what: sends.append(pairs))
    monkeypatch.setattr(live, "_layer_down_until", 0.0)

    def bigeminy(n):
        return "V" if n % 2 else "N"

    add_beats(recording, bpm=75, seconds=25, labels=bigeminy)
    evaluate_alarms(recording.pk)
    alarm = open_alarms(recording.patient, AlarmKind.PVC).get()
    assert " in the first " in alarm.message
    first_value = alarm.value
    assert Notification.objects.filter(alarm=alarm).count() == 1
    # two more minutes of it, then every 5th beat a V beat: about 15 a minute
    add_beats(recording, bpm=75, seconds=120, labels=bigeminy)
    with django_capture_on_commit_callbacks(execute=True):
        changes = evaluate_alarms(recording.pk)
    assert changes == []  # still the one alarm: no change to raise or resolve
    alarm.refresh_from_db()
    assert alarm.message == f"PVC {alarm.value:.0f}/min > 10/min" and alarm.value > first_value
    assert alarm.state == AlarmState.RAISED
    # live viewers get the alarm with its new text; nobody is notified again
    [[(_, event)]] = sends
    assert event["message"]["alarm"]["message"] == alarm.message
    assert Notification.objects.filter(alarm=alarm).count() == 1
    add_beats(recording, bpm=75, seconds=120, labels=lambda n: "V" if n % 5 == 4 else "N")
    sends.clear()
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_alarms(recording.pk)
    alarm.refresh_from_db()
    assert alarm.message == f"PVC {alarm.value:.0f}/min > 10/min" and 14 <= alarm.value <= 16
    assert len(sends) == 1 and Notification.objects.filter(alarm=alarm).count() == 1
    # nothing new stored: the same text, no UPDATE, nothing sent
    sends.clear()
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_alarms(recording.pk)
    assert sends == []


def test_a_discharged_patients_last_analysis_raises_no_alarm(recording):
    # the last rounds of the recording that discharge closed may still run
    add_beats(recording, bpm=75, seconds=90, labels=lambda n: "V" if n % 2 else "N")
    patient = recording.patient
    patient.is_active = False
    patient.save()
    assert evaluate_alarms(recording.pk) == []
    assert not Alarm.objects.filter(patient=patient).exists()
    patient.is_active = True  # readmitted: the same beats raise their alarm
    patient.save()
    evaluate_alarms(recording.pk)
    assert open_alarms(patient, AlarmKind.PVC).exists()


def test_frequent_pvcs_over_the_patients_limit(recording):
    # every 5th beat V at 75 bpm: 15 V beats per minute, over the default 10/min
    add_beats(recording, bpm=75, seconds=200, labels=lambda n: "V" if n % 5 == 4 else "N")
    evaluate_alarms(recording.pk)
    alarm = open_alarms(recording.patient, AlarmKind.PVC).get()
    assert alarm.message == f"PVC {alarm.value:.0f}/min > 10/min" and alarm.value >= 14
    # a higher limit applies at once: the count was under it at every beat of the hold
    patient = recording.patient
    patient.pvc_limit_per_min = 20
    patient.save()
    evaluate_alarms(recording.pk)
    assert not open_alarms(patient, AlarmKind.PVC).exists()


def stream_beats(recording, seconds: float, labels=None, step_s: float = 5.0) -> list:
    """Beats at 75 bpm in steps of ``step_s``, evaluated after each step as the analysis
    rounds do; the alarm changes."""
    changes = []
    for _ in range(round(seconds / step_s)):
        add_beats(recording, bpm=75, seconds=step_s, labels=labels)
        changes += evaluate_alarms(recording.pk)
    return changes


def test_a_bigeminy_that_comes_and_goes_is_one_pvc_alarm(recording):
    def bigeminy(n):
        return "V" if n % 2 else "N"

    changes = stream_beats(recording, 60)  # a normal history
    for _ in range(3):
        # 30 s of bigeminy (about 18 V beats a minute), then a minute without: the count is
        # back under 10/min some 45 s after each bout, but not for the whole hold
        changes += stream_beats(recording, 30, labels=bigeminy)
        changes += stream_beats(recording, 60)
    assert changes_of(changes, AlarmKind.PVC) == [("raised", AlarmKind.PVC)]
    # steady again: resolved once the count has stayed under the limit for the hold
    changes = stream_beats(recording, PVC_RESOLVE_HOLD_S)
    assert changes_of(changes, AlarmKind.PVC) == [("resolved", AlarmKind.PVC)]
    assert Alarm.objects.filter(kind=AlarmKind.PVC).count() == 1


def test_pvcs_resolve_only_once_the_new_stretch_covers_a_window_before_the_hold(recording):
    # 15 V beats a minute, then the stream starts a new stretch (a restart): the V beats before
    # it are not counted, so the hold's counts tell nothing until the stretch is long enough
    add_beats(recording, bpm=75, seconds=70, labels=lambda n: "V" if n % 5 == 4 else "N")
    assert changes_of(evaluate_alarms(recording.pk), AlarmKind.PVC) == [("raised", "PVC")]
    Recording.objects.filter(pk=recording.pk).update(stream_start_sample=recording.analysis_cursor)
    recording.refresh_from_db()
    # (stream_beats' 5-s steps hold 4.8 s of beats; the stretch starts at the cursor, 7 s
    # after the last beat, so the last beat is a window plus the hold past it after 187 s)
    changes = stream_beats(recording, 170)
    assert changes_of(changes, AlarmKind.PVC) == []
    changes = stream_beats(recording, 30)
    assert changes_of(changes, AlarmKind.PVC) == [("resolved", "PVC")]


def test_the_reference_beats_of_mitdb_119_are_one_pvc_alarm_in_30_minutes(recording):
    """MIT-BIH 119 has about 15 V beats a minute in bouts of bigeminy and trigeminy: its
    reference labels, stored as the analysis would store them (final about 7 s after the R
    peak) and evaluated every 5 s, raised 9 PVC alarms in 30 min before the resolve hold."""
    import wfdb

    from tests.inference.conftest import physionet_folder

    annotation = wfdb.rdann(str(physionet_folder("mitdb", "119") / "119"), "atr")
    fs_hz = 360.0
    Recording.objects.filter(pk=recording.pk).update(sampling_rate_hz=fs_hz)
    recording.refresh_from_db()
    beats = [
        (int(sample), "V" if symbol in "VE" else "N")
        for sample, symbol in zip(annotation.sample, annotation.symbol, strict=True)
        if symbol in "NLRejAaJSVEF/fQ"  # beats, not rhythm or noise annotations
    ]
    stored, changes = 0, []
    for step in range(1, 30 * 60 // 5 + 1):
        cursor = round(step * 5 * fs_hz)
        final = [b for b in beats[stored:] if b[0] < cursor - BEAT_FINAL_LAG_S * fs_hz]
        Beat.objects.bulk_create(
            Beat(
                recording=recording,
                index=stored + i,
                sample=sample,
                label=label,
                confidence=1.0,
                probabilities={label: 1.0},
            )
            for i, (sample, label) in enumerate(final)
        )
        stored += len(final)
        move_cursor(recording, cursor)
        changes += evaluate_alarms(recording.pk)
    assert changes_of(changes, AlarmKind.PVC) == [("raised", AlarmKind.PVC)]


def add_windows(recording, labels: list[str], first_start: int = 0) -> int:
    last = recording.predictions.order_by("-window_start").first()
    start = first_start if last is None else last.window_start + last.window_length
    for label in labels:
        Prediction.objects.create(
            recording=recording,
            model_name="window-cnn-mitdb",
            model_version="1.0.0",
            window_start=start,
            window_length=500,
            label=label,
            probabilities={"normal": 0.5, "arrhythmia": 0.5},
        )
        start += 500
    return start


def switch_window_model_alarm(patient, on: bool) -> None:
    patient.sustained_arrhythmia_alarm = on
    patient.save(update_fields=["sustained_arrhythmia_alarm"])


def test_the_window_model_alarm_is_off_by_default_and_works_when_switched_on(recording):
    # a minute of normal beats that the window model calls "arrhythmia" window after window,
    # as it did on MIT-BIH 117 (DS2 specificity 0.53)
    add_beats(recording, bpm=75, seconds=60)
    add_windows(recording, ["arrhythmia"] * 30)
    assert recording.patient.sustained_arrhythmia_alarm is False
    assert evaluate_alarms(recording.pk) == []
    assert not Alarm.objects.exists()
    switch_window_model_alarm(recording.patient, True)
    changes = evaluate_alarms(recording.pk)
    assert changes_of(changes, AlarmKind.ARRHYTHMIA) == [("raised", AlarmKind.ARRHYTHMIA)]
    # switched off again, the open alarm resolves (nothing left to hold it)
    switch_window_model_alarm(recording.patient, False)
    changes = evaluate_alarms(recording.pk)
    assert changes_of(changes, AlarmKind.ARRHYTHMIA) == [("resolved", AlarmKind.ARRHYTHMIA)]


def test_a_minute_of_mitdb_117_raises_no_window_model_alarm_by_default(
    device, eager_celery, django_capture_on_commit_callbacks
):
    """The real chain: 60 s of MIT-BIH 117 (normal sinus rhythm, a DS2 patient) through
    ingest, streaming analysis and the alarm rules."""
    from tests.inference.conftest import physionet_folder
    from tests.test_streaming_analysis import deliver, mitdb_adc, random_chunks

    adc, fs_hz = mitdb_adc(physionet_folder("mitdb", "117"), "117", seconds=60.0)
    rng = np.random.default_rng(117)
    for chunk in random_chunks(adc, fs_hz, rng, max_s=4.0, session="norm0117"):
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get(device=device)
    # the window model did call this normal minute "arrhythmia" 5 windows in a row...
    assert arrhythmia_condition(recording).active is True
    # ...and with the defaults nobody was alarmed by it
    assert not Alarm.objects.filter(kind=AlarmKind.ARRHYTHMIA).exists()
    switch_window_model_alarm(recording.patient, True)
    evaluate_alarms(recording.pk)
    assert open_alarms(recording.patient, AlarmKind.ARRHYTHMIA).exists()


def test_sustained_arrhythmia_needs_five_consecutive_abnormal_windows(recording):
    switch_window_model_alarm(recording.patient, True)
    add_windows(recording, ["normal"] * 3 + ["arrhythmia"] * 4)
    evaluate_alarms(recording.pk)
    assert not open_alarms(recording.patient, AlarmKind.ARRHYTHMIA).exists()
    add_windows(recording, ["arrhythmia"] * 2)
    evaluate_alarms(recording.pk)
    alarm = open_alarms(recording.patient, AlarmKind.ARRHYTHMIA).get()
    assert alarm.message == "Arrhythmia in 6 consecutive 2-s windows (>= 5)"
    add_windows(recording, ["normal"] * 4)
    evaluate_alarms(recording.pk)
    assert open_alarms(recording.patient, AlarmKind.ARRHYTHMIA).exists()
    add_windows(recording, ["normal"])
    evaluate_alarms(recording.pk)
    assert not open_alarms(recording.patient, AlarmKind.ARRHYTHMIA).exists()


def test_abnormal_windows_across_a_gap_are_not_consecutive(recording):
    switch_window_model_alarm(recording.patient, True)
    end = add_windows(recording, ["arrhythmia"] * 3)
    # the next three start 10 windows later: two runs of 3, never 5 in a row
    add_windows(recording, ["arrhythmia"] * 3, first_start=end + 5000)
    Prediction.objects.filter(window_start__gte=end).update(window_start=F("window_start") + 5000)
    evaluate_alarms(recording.pk)
    assert not open_alarms(recording.patient, AlarmKind.ARRHYTHMIA).exists()
    add_windows(recording, ["arrhythmia"] * 2)  # now 5 in a row after the gap
    evaluate_alarms(recording.pk)
    assert open_alarms(recording.patient, AlarmKind.ARRHYTHMIA).exists()


def test_poor_signal_when_beats_stop_in_a_noisy_signal_but_not_in_a_flat_one(recording, rng):
    n = round(60 * FS_HZ)
    noise = rng.normal(0.0, 0.6, n)  # about 2.4 mV peak to peak, no QRS the detector follows
    store_signal(recording, noise)
    add_beats(recording, bpm=75, seconds=25)  # beats up to 24 s, then none
    move_cursor(recording, n)
    evaluate_alarms(recording.pk)
    alarm = open_alarms(recording.patient, AlarmKind.SIGNAL_QUALITY).get()
    assert alarm.priority == AlarmPriority.TECHNICAL
    assert alarm.message.startswith("No beat in 10 s of non-flat signal")
    # the same without beats over a flat line is a pause (its own alarm), not noise
    Alarm.objects.all().delete()
    SampleChunk.objects.all().delete()
    store_signal(recording, np.full(n, 0.01))
    evaluate_alarms(recording.pk)
    assert not open_alarms(recording.patient, AlarmKind.SIGNAL_QUALITY).exists()


def test_poor_signal_is_not_resolved_by_one_beat_found_in_the_noise(recording, rng):
    n = round(60 * FS_HZ)
    store_signal(recording, rng.normal(0.0, 0.6, n))
    add_beats(recording, bpm=75, seconds=25)  # beats up to 24 s, then none
    move_cursor(recording, n)
    evaluate_alarms(recording.pk)
    assert open_alarms(recording.patient, AlarmKind.SIGNAL_QUALITY).exists()
    # one beat at 50 s (inside the last 10 s of final beats): noise the detector took for a
    # QRS, with 26 beatless seconds before it
    last = recording.beats.order_by("-index").first()
    Beat.objects.create(
        recording=recording,
        index=last.index + 1,
        sample=round(50 * FS_HZ),
        label="N",
        confidence=0.5,
        probabilities={"N": 0.5},
    )
    assert changes_of(evaluate_alarms(recording.pk), AlarmKind.SIGNAL_QUALITY) == []
    # beats come steadily again: resolved once no beatless 10 s is left in the last 30 s
    add_beats(recording, bpm=75, seconds=20)
    assert changes_of(evaluate_alarms(recording.pk), AlarmKind.SIGNAL_QUALITY) == []
    add_beats(recording, bpm=75, seconds=25)
    changes = evaluate_alarms(recording.pk)
    assert changes_of(changes, AlarmKind.SIGNAL_QUALITY) == [("resolved", AlarmKind.SIGNAL_QUALITY)]


def test_uploaded_recordings_raise_no_alarms(patient):
    upload = Recording.objects.create(
        patient=patient,
        source=Recording.Source.UPLOAD,
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
    )
    add_beats(upload, bpm=150, seconds=60)
    assert evaluate_alarms(upload.pk) == []
    assert not Alarm.objects.exists()


def test_an_older_recordings_late_analysis_resolves_nothing(recording, device):
    """It may raise what its signal shows (tests/test_alarm_new_stretch.py: a VT in its last
    seconds), never resolve: the new recording is the present."""
    add_beats(recording, bpm=150, seconds=30)
    evaluate_alarms(recording.pk)
    alarm = open_alarms(recording.patient, AlarmKind.HR_HIGH).get()
    # the device restarts: a new recording; the old one's last rounds still run, at 80 bpm
    newer = Recording.objects.create(
        patient=recording.patient,
        device=device,
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        started_at=recording.started_at + timedelta(minutes=5),
    )
    add_beats(recording, bpm=80, seconds=30)
    assert evaluate_alarms(recording.pk) == []
    alarm.refresh_from_db()
    assert alarm.state != AlarmState.RESOLVED  # only the present (the new recording) decides
    add_beats(newer, bpm=80, seconds=30)
    changes = evaluate_alarms(newer.pk)
    assert changes_of(changes, AlarmKind.HR_HIGH) == [("resolved", AlarmKind.HR_HIGH)]


# --- Technical alarms --------------------------------------------------------------------


def test_device_offline_raised_by_the_periodic_check_and_resolved_when_data_returns(recording):
    now = timezone.now()
    Recording.objects.filter(pk=recording.pk).update(last_chunk_at=now - timedelta(seconds=45))
    result = periodic_check(now)
    alarm = open_alarms(recording.patient, AlarmKind.DEVICE_OFFLINE).get()
    assert result["raised"] == [alarm.pk]
    assert alarm.priority == AlarmPriority.TECHNICAL
    # when the data stopped, in the server's zone: a duration would be stale as it is shown
    last = timezone.localtime(now - timedelta(seconds=45))
    assert alarm.message == f"No data from DEV-001 since {last:%H:%M:%S %Z} (> 30 s)"
    assert check_devices(now + timedelta(seconds=10)) == []  # still offline, no second alarm
    # closed by silence later: still watched, still one open alarm
    Recording.objects.filter(pk=recording.pk).update(
        status=Recording.Status.CLOSED, closed_by=Recording.ClosedBy.SILENCE
    )
    assert check_devices(now + timedelta(seconds=400)) == []
    Recording.objects.filter(pk=recording.pk).update(
        status=Recording.Status.LIVE, closed_by="", last_chunk_at=now + timedelta(seconds=401)
    )
    changes = check_devices(now + timedelta(seconds=402))
    assert [(c.change, c.alarm.pk) for c in changes] == [("resolved", alarm.pk)]


def test_device_checks_watch_the_recording_opened_last_not_the_one_started_last(recording):
    """A recording's start is dated back to its sample 0: a device switched on earlier opens
    its recording later but with an earlier start. The technical rules must watch it, not
    the previous recording, silent since it closed."""
    now = timezone.now()
    Recording.objects.filter(pk=recording.pk).update(
        started_at=now - timedelta(minutes=2),
        last_chunk_at=now - timedelta(minutes=1),
        status=Recording.Status.CLOSED,
        closed_by=Recording.ClosedBy.SILENCE,  # still watched: "offline" if it were current
    )
    opened_later = Recording.objects.create(
        patient=recording.patient,
        device=recording.device,
        source=Recording.Source.DEVICE,
        sampling_rate_hz=recording.sampling_rate_hz,
        gain_adc_per_mv=recording.gain_adc_per_mv,
        lead_names=recording.lead_names,
        started_at=now - timedelta(minutes=10),  # its sample 0, taken before the other's
        last_chunk_at=now - timedelta(seconds=1),
    )
    assert opened_later.started_at < Recording.objects.get(pk=recording.pk).started_at
    assert check_devices(now) == []  # streaming now: not offline


def test_device_offline_respects_the_setting_and_a_deliberate_close(recording, settings):
    settings.DEVICE_OFFLINE_S = 120
    now = timezone.now()
    Recording.objects.filter(pk=recording.pk).update(last_chunk_at=now - timedelta(seconds=60))
    assert check_devices(now) == []
    Recording.objects.filter(pk=recording.pk).update(
        status=Recording.Status.CLOSED, closed_by=Recording.ClosedBy.DEVICE
    )
    assert check_devices(now + timedelta(seconds=600)) == []  # ended on purpose: not offline


def test_leads_off_raised_and_resolved_from_the_devices_last_chunk(recording, device):
    move_cursor(recording, 0)
    device.lead_off = True
    device.save()
    changes = evaluate_alarms(recording.pk)
    assert changes_of(changes, AlarmKind.LEADS_OFF) == [("raised", AlarmKind.LEADS_OFF)]
    assert open_alarms(recording.patient, AlarmKind.LEADS_OFF).get().message == (
        "Leads off (DEV-001)"
    )
    assert evaluate_alarms(recording.pk) == []
    device.lead_off = False
    device.save()
    changes = evaluate_alarms(recording.pk)
    assert changes_of(changes, AlarmKind.LEADS_OFF) == [("resolved", AlarmKind.LEADS_OFF)]


def test_technical_alarms_resolve_when_the_device_is_unassigned(recording, device):
    now = timezone.now()
    Recording.objects.filter(pk=recording.pk).update(last_chunk_at=now - timedelta(seconds=90))
    check_devices(now)
    assert open_alarms(recording.patient, AlarmKind.DEVICE_OFFLINE).exists()
    device.patient = None
    device.save()
    check_devices(now)
    assert not open_alarms(recording.patient).exists()


# --- API ---------------------------------------------------------------------------------


@pytest.fixture
def two_alarms(recording, other_patient):
    mine = hr_alarm(recording)
    theirs = Alarm.objects.create(
        patient=other_patient,
        kind=AlarmKind.VT,
        priority=AlarmPriority.CRITICAL,
        message="VT 5 beats at 160 bpm",
    )
    return mine, theirs


def test_api_lists_only_alarms_of_assigned_patients(client, clinician, staff_user, two_alarms):
    mine, theirs = two_alarms
    assert client.get("/api/alarms/").status_code == 401
    client.force_login(clinician)
    body = client.get("/api/alarms/").json()
    assert [row["id"] for row in body["results"]] == [mine.pk]
    assert body["results"][0]["message"] == "HR 134 > 120"
    # the numbers with their unit, for a client that does not parse the message
    assert [body["results"][0][key] for key in ("value", "limit", "unit")] == [134.0, 120.0, "bpm"]
    assert client.get(f"/api/alarms/{theirs.pk}/").status_code == 404
    client.force_login(staff_user)
    assert {row["id"] for row in client.get("/api/alarms/").json()["results"]} == {
        mine.pk,
        theirs.pk,
    }


def test_api_filters_by_state_and_refuses_a_bad_filter(client, clinician, two_alarms):
    mine, _ = two_alarms
    client.force_login(clinician)
    assert [r["id"] for r in client.get("/api/alarms/?state=open").json()["results"]] == [mine.pk]
    assert client.get("/api/alarms/?state=resolved").json()["results"] == []
    response = client.get("/api/alarms/?state=loud")
    assert response.status_code == 400
    assert list(response.json()) == ["detail"]
    assert response.json()["detail"].startswith("state must be one of open, ")


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("priority=loud", "priority must be one of "),
        ("patient=abc", "patient must be a patient id (a whole number)"),
        # "²".isdigit() is true but int("²") raises: it was a 500
        ("patient=%C2%B2", "patient must be a patient id (a whole number)"),
        ("patient=%D9%A3", "patient must be a patient id (a whole number)"),  # Arabic-Indic 3
        ("patient=" + "9" * 5000, "patient must be a patient id (a whole number)"),
        ("patient=99999999999999999999", "patient must be a patient id (a whole number)"),
    ],
)
def test_api_refuses_a_bad_filter_in_the_one_error_shape(client, clinician, query, detail):
    # the refusal was {"priority": ...} or {"patient": ...}: every other one is {"detail": ...}
    client.force_login(clinician)
    response = client.get(f"/api/alarms/?{query}")
    assert response.status_code == 400
    assert list(response.json()) == ["detail"] and response.json()["detail"].startswith(detail)


def test_api_filters_by_patient(client, clinician, two_alarms):
    mine, _ = two_alarms
    client.force_login(clinician)
    rows = client.get(f"/api/alarms/?patient={mine.patient_id}").json()["results"]
    assert [row["id"] for row in rows] == [mine.pk]
    assert client.get(f"/api/alarms/?patient=0{mine.patient_id}").json()["results"] == rows


def test_acknowledge_through_the_api_records_who_and_when(client, clinician, two_alarms):
    mine, _ = two_alarms
    client.force_login(clinician)
    before = timezone.now()
    response = client.post(f"/api/alarms/{mine.pk}/acknowledge/")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "acknowledged" and body["acknowledged_by"] == "clinician"
    mine.refresh_from_db()
    assert mine.acknowledged_by == clinician and mine.acknowledged_at >= before
    first_at = mine.acknowledged_at
    # a second acknowledgment keeps the first one's who and when
    client.post(f"/api/alarms/{mine.pk}/acknowledge/")
    mine.refresh_from_db()
    assert mine.acknowledged_at == first_at


def test_an_unassigned_clinician_cannot_acknowledge(client, other_clinician, two_alarms):
    mine, _ = two_alarms
    client.force_login(other_clinician)
    assert client.post(f"/api/alarms/{mine.pk}/acknowledge/").status_code == 404
    mine.refresh_from_db()
    assert mine.state == AlarmState.RAISED and mine.acknowledged_by is None


def test_an_acknowledged_alarm_still_resolves_when_its_condition_is_gone(
    client, clinician, recording
):
    add_beats(recording, bpm=140, seconds=30)
    evaluate_alarms(recording.pk)
    alarm = open_alarms(recording.patient, AlarmKind.HR_HIGH).get()
    client.force_login(clinician)
    client.post(f"/api/alarms/{alarm.pk}/acknowledge/")
    add_beats(recording, bpm=70, seconds=20)
    evaluate_alarms(recording.pk)
    alarm.refresh_from_db()
    assert alarm.state == AlarmState.RESOLVED and alarm.acknowledged_by == clinician


def test_every_alarm_kind_names_the_unit_of_its_value():
    from monitoring.models import ALARM_VALUE_UNITS

    assert set(ALARM_VALUE_UNITS) == set(AlarmKind)
