"""A long analysis round (a backlog) is judged by the alarm rules as if it had come in live
(``alarms.ROUND_REPLAY_STEP_S``): judged at its end only, an event in its first minute had
ended too long before to raise anything."""

from unittest import mock

import numpy as np
import pytest

from monitoring import streaming
from monitoring.alarms import ROUND_REPLAY_STEP_S, replay_ends
from monitoring.models import Alarm, AlarmKind, AlarmRecipient, Beat, Episode, Recording
from tests.test_alarms import FS_HZ, add_beats, changes_of, evaluate_alarms

pytestmark = pytest.mark.django_db


def one_round(recording, store) -> list:
    """Run the streaming analysis' loop over one round whose work ``store()`` does (beats,
    episodes, the cursor moved past them), as a backlog analysed at once; the alarm changes."""

    def analyze_next(recording_id):
        began_at = Recording.objects.get(pk=recording_id).analysis_cursor
        store()
        return streaming.RoundResult(n_samples=1, n_beats=1, first_sample=began_at)

    return run_round(recording, analyze_next)


def run_round(recording, analyze_next) -> list:
    """``streaming.run_stream_analysis`` with ``analyze_next`` standing in for the round; the
    alarm changes that the evaluations after it made."""
    from monitoring import alarms

    changes = []
    evaluate = alarms.evaluate_alarms

    def recorded(*args, **kwargs):
        result = evaluate(*args, **kwargs)
        changes.extend(result)
        return result

    with (
        mock.patch.object(streaming, "analyze_next", analyze_next),
        mock.patch.object(alarms, "evaluate_alarms", recorded),
    ):
        streaming.run_stream_analysis(recording.pk)
    return changes


def add_pause(recording, pause_s: float) -> None:
    """The next beat ``pause_s`` after the last one, and the PAUSE episode the analysis finds."""
    last = recording.beats.order_by("-index").first()
    sample = last.sample + round(pause_s * FS_HZ)
    Beat.objects.create(
        recording=recording,
        index=last.index + 1,
        sample=sample,
        label="N",
        confidence=0.9,
        probabilities={"N": 0.9},
    )
    Episode.objects.create(
        recording=recording,
        kind="PAUSE",
        start_s=last.sample / FS_HZ,
        end_s=sample / FS_HZ,
        details={"duration_s": pause_s},
    )


def test_a_pause_early_in_a_long_round_raises_its_alarm(recording):
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    add_beats(recording, bpm=75, seconds=60)
    evaluate_alarms(recording.pk)

    def backlog():
        # 100 s the device resent after its network came back: a 6-s pause 10 s in, which
        # ended some 85 s before the end of the round
        add_beats(recording, bpm=75, seconds=10)
        add_pause(recording, 6.0)
        add_beats(recording, bpm=75, seconds=84)

    changes = one_round(recording, backlog)
    # raised, then resolved at the round's end (over for more than EVENT_HOLD_S): a critical
    # alarm latches, so it waits for someone to acknowledge it
    assert changes_of(changes, AlarmKind.PAUSE) == [
        ("raised", AlarmKind.PAUSE),
        ("resolved", AlarmKind.PAUSE),
    ]
    alarm = Alarm.objects.get(kind=AlarmKind.PAUSE)
    assert alarm.latches and alarm.message == "Pause 6.0 s (>= 3 s)"
    assert alarm.notifications.filter(recipient="nurse@example.org").count() == 1


def test_a_tachycardia_early_in_a_long_round_raises_its_alarm(recording):
    add_beats(recording, bpm=75, seconds=60)
    evaluate_alarms(recording.pk)

    def backlog():
        add_beats(recording, bpm=140, seconds=40)
        add_beats(recording, bpm=75, seconds=70)

    changes = one_round(recording, backlog)
    assert changes_of(changes, AlarmKind.HR_HIGH) == [
        ("raised", AlarmKind.HR_HIGH),
        ("resolved", AlarmKind.HR_HIGH),
    ]


def test_a_live_sized_round_is_judged_at_its_end_only(recording):
    add_beats(recording, bpm=75, seconds=60)
    cursor = recording.analysis_cursor
    step = round(ROUND_REPLAY_STEP_S * FS_HZ)
    assert replay_ends(recording, None) == []
    assert replay_ends(recording, cursor - round(1.0 * FS_HZ)) == []
    assert replay_ends(recording, cursor - step) == []
    assert replay_ends(recording, cursor - 3 * step) == [cursor - 2 * step, cursor - step]


def test_a_round_that_began_a_new_stretch_is_judged_from_the_stretch_on(recording):
    add_beats(recording, bpm=75, seconds=60)
    cursor = recording.analysis_cursor
    step = round(ROUND_REPLAY_STEP_S * FS_HZ)
    # the round jumped a gap: its stretch began 2 steps before its end
    Recording.objects.filter(pk=recording.pk).update(stream_start_sample=cursor - 2 * step)
    recording.refresh_from_db()
    assert replay_ends(recording, 0) == [cursor - step]


def test_a_vt_in_a_resent_backlog_of_mitdb_207_raises_its_alarms(
    device, eager_celery, django_capture_on_commit_callbacks, settings
):
    """MIT-BIH 207 has VT runs and VF from 39 s to 63 s, then none to 140 s. The device's
    network drops at 20 s and it resends what it buffered when it is back, at 140 s: the
    analysis reads the 120 s in one round, whose end is 77 s past the last episode."""
    from tests.inference.conftest import physionet_folder
    from tests.test_streaming_analysis import deliver, mitdb_adc, random_chunks

    adc, fs_hz = mitdb_adc(physionet_folder("mitdb", "207"), "207", seconds=140)
    chunks = random_chunks(adc, fs_hz, np.random.default_rng(7), max_s=2.0)
    lost = next(i for i, chunk in enumerate(chunks) if chunk.first_sample >= 20 * fs_hz)
    settings.DEVICE_GAP_WAIT_S = 3600.0  # the analysis waits for the missing chunk
    for chunk in chunks[:lost] + chunks[lost + 1 :]:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    assert recording.analysis_cursor == chunks[lost].first_sample
    assert not Alarm.objects.filter(kind__in=["VT", "VF"]).exists()

    deliver(device, chunks[lost], django_capture_on_commit_callbacks)  # resent: one round
    recording.refresh_from_db()
    assert recording.analysis_cursor == len(adc)
    episodes = set(recording.episodes.values_list("kind", flat=True))
    assert {"VT", "VF"} <= episodes
    assert all(end_s < 64.0 for end_s in recording.episodes.values_list("end_s", flat=True))
    raised = set(Alarm.objects.values_list("kind", flat=True))
    assert {AlarmKind.VT, AlarmKind.VF} <= raised
