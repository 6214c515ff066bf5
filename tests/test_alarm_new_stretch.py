"""Episode alarms across a device restart (a new recording) and a gap (a new stretch): the new
stretch has no episodes at first, which is not "gone" (``alarms.EPISODE_STORE_DELAY_S``)."""

from datetime import timedelta

import pytest

from inference.rhythm import RhythmConfig
from monitoring.alarms import (
    BEAT_FINAL_LAG_S,
    EPISODE_STORE_DELAY_S,
    EVENT_HOLD_S,
    evaluate_alarms,
    resolve_on_discharge,
)
from monitoring.models import Alarm, AlarmState, Beat, Episode, Recording
from tests.test_alarms import FS_HZ, add_beats, changes_of, open_alarms

pytestmark = pytest.mark.django_db

STEP_S = 5.0  # an evaluation every 5 s of signal (live rounds come about every second)
GONE_AFTER_S = EVENT_HOLD_S + EPISODE_STORE_DELAY_S  # 75 s, the same for every kind by default


def restart(recording, device) -> Recording:
    """The device restarts: a new session opens a new recording of the same patient."""
    return Recording.objects.create(
        patient=recording.patient,
        device=device,
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        started_at=recording.started_at + timedelta(minutes=5),
    )


def episode_alarm(recording, kind: str) -> Alarm:
    """Two minutes of beats with an episode of ``kind`` ending 10 s before the analysed end
    (an AF that lasts to the end): its alarm raised."""
    add_beats(recording, bpm=75, seconds=120)
    end_s = recording.analysis_cursor / FS_HZ - BEAT_FINAL_LAG_S
    if kind == "AF":
        start_s, details = end_s - 80.0, {"mean_hr_bpm": 110.0, "ongoing": True}
    else:
        end_s -= 10.0
        start_s, details = end_s - 4.2, {"duration_s": 4.2, "n_beats": 6, "mean_hr_bpm": 150.0}
    Episode.objects.create(
        recording=recording, kind=kind, start_s=start_s, end_s=end_s, details=details
    )
    assert changes_of(evaluate_alarms(recording.pk), kind) == [("raised", kind)]
    return open_alarms(recording.patient, kind).get()


def stretch_s(recording) -> float:
    return (recording.analysis_cursor - recording.stream_start_sample) / FS_HZ


def store_af_so_far(recording) -> None:
    """What the streaming analysis stores for an AF that goes on from the stretch's start: an
    ongoing episode over its final beats, once they span af_min_s (inference.rhythm)."""
    beats = recording.beats.filter(sample__gte=recording.stream_start_sample).order_by("sample")
    first_s, last_s = beats.first().sample / FS_HZ, beats.last().sample / FS_HZ
    if last_s - first_s < RhythmConfig().af_min_s:
        return
    recording.episodes.filter(kind="AF", start_s__gte=first_s).delete()
    Episode.objects.create(
        recording=recording,
        kind="AF",
        start_s=first_s,
        end_s=last_s,
        details={"mean_hr_bpm": 110.0, "ongoing": True},
    )


def test_an_af_that_goes_on_through_a_device_restart_is_one_alarm(recording, device):
    alarm = episode_alarm(recording, "AF")
    newer = restart(recording, device)
    changes = []
    for _ in range(30):  # 150 s of the new recording, the AF going on throughout
        add_beats(newer, bpm=75, seconds=STEP_S)
        store_af_so_far(newer)
        changes += changes_of(evaluate_alarms(newer.pk), "AF")
    assert newer.episodes.filter(kind="AF").exists()  # the new recording found it too
    # neither resolved at the new recording's first round nor raised again (a second email)
    # once the new recording had af_min_s of it
    assert changes == []
    assert list(Alarm.objects.filter(kind="AF")) == [alarm]
    alarm.refresh_from_db()
    assert alarm.state != AlarmState.RESOLVED


@pytest.mark.parametrize("kind", ["PAUSE", "VT", "VF", "AF"])
def test_an_episode_alarm_resolves_once_the_new_recording_has_enough_signal_without_it(
    recording, device, kind
):
    alarm = episode_alarm(recording, kind)
    newer = restart(recording, device)
    resolved_at_s = None
    while resolved_at_s is None and stretch_s(newer) < 2 * GONE_AFTER_S:
        add_beats(newer, bpm=75, seconds=STEP_S)  # a normal rhythm: the episode is over
        if changes_of(evaluate_alarms(newer.pk), kind) == [("resolved", kind)]:
            resolved_at_s = stretch_s(newer)
    # not at the new recording's first rounds, but as soon as it has analysed the hold and
    # the delay before an episode is stored, within one step
    assert GONE_AFTER_S <= resolved_at_s < GONE_AFTER_S + STEP_S
    alarm.refresh_from_db()
    assert alarm.state == AlarmState.RESOLVED
    assert not Alarm.objects.filter(kind=kind).exclude(pk=alarm.pk).exists()


def test_an_af_that_goes_on_across_a_gap_is_one_alarm(recording):
    alarm = episode_alarm(recording, "AF")
    # the network dropped for 3 minutes: the analysis starts a new stretch after the gap, and
    # the episodes before it are older than the hold
    gap_end = recording.beats.order_by("-sample").first().sample + round(180 * FS_HZ)
    last = recording.beats.order_by("-index").first()
    Beat.objects.create(
        recording=recording,
        index=last.index + 1,
        sample=gap_end,
        label="N",
        confidence=0.9,
        probabilities={"N": 0.9},
    )
    Recording.objects.filter(pk=recording.pk).update(
        stream_start_sample=gap_end, analysis_cursor=gap_end
    )
    recording.refresh_from_db()
    changes = changes_of(evaluate_alarms(recording.pk), "AF")
    for _ in range(30):
        add_beats(recording, bpm=75, seconds=STEP_S)
        store_af_so_far(recording)
        changes += changes_of(evaluate_alarms(recording.pk), "AF")
    assert changes == []
    assert list(Alarm.objects.filter(kind="AF")) == [alarm]


def test_discharge_still_resolves_an_episode_alarm_held_through_a_restart(recording, device):
    alarm = episode_alarm(recording, "VT")
    newer = restart(recording, device)
    add_beats(newer, bpm=75, seconds=STEP_S)
    assert changes_of(evaluate_alarms(newer.pk), "VT") == []  # held: cannot tell yet
    changes = resolve_on_discharge(recording.patient)
    assert changes_of(changes, "VT") == [("resolved", "VT")]
    alarm.refresh_from_db()
    assert alarm.state == AlarmState.RESOLVED
