"""Episode alarms across a device restart (a new recording) and a gap (a new stretch): the new
stretch has no episodes at first, which is not "gone" (``alarms.EPISODE_STORE_DELAY_S``). And
the last seconds before a gap or a close, final only when the analysis finishes the stretch,
are judged then (``alarms.evaluate_alarms``' ``finished_stretch``)."""

import dataclasses
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from inference.rhythm import RhythmConfig
from monitoring import streaming
from monitoring.alarms import (
    BEAT_FINAL_LAG_S,
    EPISODE_STORE_DELAY_S,
    EVENT_HOLD_S,
    evaluate_alarms,
    resolve_on_discharge,
)
from monitoring.models import Alarm, AlarmState, Beat, Episode, Recording
from tests.test_alarm_backlog import run_round
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


# --- The last seconds of a stretch: judged when the analysis finishes it ------------------


def finishing_round(recording, store, gap_s: float) -> list:
    """Run the streaming analysis' loop over one round that finishes the current stretch, as
    ``streaming.analyze_next`` does at a final gap: ``store()`` stores the stretch's last
    final beats (those of its last ``BEAT_FINAL_LAG_S``, not final before), then the cursor
    and the stretch's start move ``gap_s`` past its end (0: the recording was closed). The
    alarm changes."""

    def analyze_next(recording_id):
        row = Recording.objects.get(pk=recording_id)
        began_at, stretch_start = row.analysis_cursor, row.stream_start_sample
        n_beats = store()
        after_gap = began_at + round(gap_s * FS_HZ)
        Recording.objects.filter(pk=recording_id).update(
            analysis_cursor=after_gap, stream_start_sample=after_gap
        )
        return streaming.RoundResult(
            n_samples=after_gap - began_at,
            n_beats=n_beats,
            first_sample=began_at,
            finished_stretch=(stretch_start, began_at),
        )

    return run_round(recording, analyze_next)


def fast_beats_before_the_end(recording, seconds: float) -> int:
    """``seconds`` of beats at 140 bpm after the last one, all before the cursor (the end of
    what was pushed): what the analyzer's finish stores. Their number."""
    cursor = recording.analysis_cursor
    before = recording.beats.count()
    add_beats(recording, bpm=140, seconds=seconds)
    Recording.objects.filter(pk=recording.pk).update(analysis_cursor=cursor)
    recording.refresh_from_db()
    assert recording.beats.order_by("-sample").first().sample < cursor
    return recording.beats.count() - before


@pytest.mark.parametrize("gap_s", [90.0, 0.0], ids=["a gap longer than the hold", "closed"])
def test_a_fast_rate_in_the_last_seconds_before_a_gap_raises_its_alarm(recording, gap_s):
    add_beats(recording, bpm=75, seconds=60)
    add_beats(recording, bpm=140, seconds=8)  # live, final up to 7 s before the end: 8 s fast
    assert changes_of(evaluate_alarms(recording.pk), "HR_HIGH") == []
    if gap_s == 0.0:
        Recording.objects.filter(pk=recording.pk).update(
            status=Recording.Status.CLOSED, closed_by=Recording.ClosedBy.DEVICE
        )
        recording.refresh_from_db()

    # the device goes silent: the finish makes the last 6.5 s of fast beats final (14.5 s)
    changes = finishing_round(recording, lambda: fast_beats_before_the_end(recording, 6.5), gap_s)
    assert changes_of(changes, "HR_HIGH") == [("raised", "HR_HIGH")]
    alarm = open_alarms(recording.patient, "HR_HIGH").get()
    assert alarm.message == "HR 140 > 120"
    # the new stretch (after the gap, or none after a close) cannot tell: it stays open
    assert changes_of(evaluate_alarms(recording.pk), "HR_HIGH") == []


def ecg_with_a_fast_run_before_a_gap(
    fast_s: float, normal_after_s: float, gap_s: float, fs_hz: float
) -> tuple[np.ndarray, int]:
    """A synthetic lead (MIT-BIH's ADC units): 60 s at 75 bpm, ``fast_s`` at 140 bpm,
    ``normal_after_s`` at 75 bpm, then ``gap_s`` the device sends nothing for and 15 s at
    75 bpm. The ADC values, and the first sample of the gap."""
    from inference.synthetic import _render
    from tests.test_streaming_analysis import MITDB_BASELINE, MITDB_GAIN

    times_s, t_s = [], 0.3
    for rate_bpm, until_s in ((75, 60.0), (140, 60.0 + fast_s)):
        while t_s < until_s:
            times_s.append(t_s)
            t_s += 60.0 / rate_bpm
    gap_start_s = times_s[-1] + normal_after_s
    t_s = times_s[-1] + 0.8
    while t_s < gap_start_s:
        times_s.append(t_s)
        t_s += 0.8
    end_s = gap_start_s + gap_s + 15.0
    times_s += list(np.arange(gap_start_s + gap_s + 0.3, end_s, 0.8))
    signal_mv, _ = _render(
        times_s, ["N"] * len(times_s), end_s, fs_hz, [], None, np.random.default_rng(1)
    )
    adc = np.round(signal_mv * MITDB_GAIN + MITDB_BASELINE).astype(np.int16)
    return adc, round(gap_start_s * fs_hz)


@pytest.mark.parametrize(
    ("fast_s", "normal_after_s"), [(14.0, 3.0), (13.0, 6.0)], ids=["3 s before", "6 s before"]
)
def test_a_fast_run_ending_seconds_before_a_gap_raises_its_alarm_once(
    device, eager_celery, django_capture_on_commit_callbacks, settings, fast_s, normal_after_s
):
    """Through the ingest path and the real analysis, in 1-s chunks or less. Live, the rules
    saw the fast beats only up to about 7 s before the gap (not yet 10 s over the limit); at
    the gap the finish made the rest final, and the end of the stretch, its last 10 s ending
    in normal beats, was not "fast at every beat" either: no alarm, where the same signal
    without the gap raised one (FINISHED_TAIL_STEP_S)."""
    from tests.test_streaming_analysis import deliver, random_chunks

    fs_hz, gap_s = 250.0, 89.0
    adc, gap_start = ecg_with_a_fast_run_before_a_gap(fast_s, normal_after_s, gap_s, fs_hz)
    gap_end = gap_start + round(gap_s * fs_hz)
    rng = np.random.default_rng(7)
    before = random_chunks(adc[:gap_start], fs_hz, rng, max_s=1.0)
    after = [
        dataclasses.replace(chunk, seq=len(before) + chunk.seq, first_sample=gap_end + start)
        for chunk in random_chunks(adc[gap_end:], fs_hz, rng, max_s=1.0)
        for start in [chunk.first_sample]
    ]
    settings.DEVICE_GAP_WAIT_S = 0.0  # the gap is final as soon as the chunk after it arrives
    for chunk in before:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    assert recording.analysis_cursor == gap_start
    assert not Alarm.objects.filter(kind="HR_HIGH").exists()  # not final yet

    for chunk in after:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording.refresh_from_db()
    assert recording.analysis_cursor == len(adc)
    alarm = Alarm.objects.get(kind="HR_HIGH")  # raised once, not again after the gap
    assert alarm.value > 120 and alarm.details["sample"] < gap_start
    # the new stretch after the gap cannot tell yet: the alarm stays open
    assert alarm.state != AlarmState.RESOLVED
    assert Alarm.objects.filter(kind__in=["HR_HIGH", "HR_LOW"]).count() == 1


def test_a_vt_right_before_mitdb_207_goes_silent_for_longer_than_the_hold_raises_its_alarm(
    device, eager_celery, django_capture_on_commit_callbacks, settings
):
    """MIT-BIH 207 has VT runs from 39 s (and a flutter the detector reads as VT beats from
    41 s). The device goes silent at 42 s and comes back 89 s later: the analysis waited at
    the gap with the beats of its last 7 s not final, then finished the stretch (the VT
    episodes stored only then) and began a new one after the gap, whose start is more than
    EVENT_HOLD_S after the VT ended."""
    from tests.inference.conftest import physionet_folder
    from tests.test_streaming_analysis import deliver, mitdb_adc, random_chunks

    adc, fs_hz = mitdb_adc(physionet_folder("mitdb", "207"), "207", seconds=140)
    chunks = random_chunks(adc, fs_hz, np.random.default_rng(7), max_s=2.0)
    settings.DEVICE_GAP_WAIT_S = 0.0  # the gap is final as soon as the chunk after it arrives
    before = [chunk for chunk in chunks if chunk.first_sample < 42 * fs_hz]
    after = [chunk for chunk in chunks if chunk.first_sample >= 131 * fs_hz]
    for chunk in before:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    gap_start = recording.analysis_cursor
    assert not recording.episodes.filter(kind="VT").exists()  # not final yet
    assert not Alarm.objects.filter(kind="VT").exists()

    for chunk in after:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording.refresh_from_db()
    assert recording.stream_start_sample == after[0].first_sample
    vt_ends_s = list(recording.episodes.filter(kind="VT").values_list("end_s", flat=True))
    assert vt_ends_s and max(vt_ends_s) < recording.stream_start_sample / fs_hz - EVENT_HOLD_S
    alarm = Alarm.objects.get(kind="VT")
    assert alarm.details["sample"] < gap_start


# --- The last seconds of a recording that a new session replaced --------------------------


def vt_before_the_end(recording) -> int:
    """A run of 6 V beats at 150 bpm after the last beat, all before the cursor, and its VT
    episode: what the analyzer's finish stores at the close. The beats' number."""
    cursor = recording.analysis_cursor
    last = recording.beats.order_by("-sample").first().sample
    before = recording.beats.count()
    add_beats(recording, bpm=150, seconds=2.4, labels=lambda number: "V")
    Recording.objects.filter(pk=recording.pk).update(analysis_cursor=cursor)
    recording.refresh_from_db()
    run = recording.beats.filter(sample__gt=last).order_by("sample")
    assert run.count() == 6 and run.last().sample < cursor
    Episode.objects.create(
        recording=recording,
        kind="VT",
        start_s=run.first().sample / FS_HZ,
        end_s=run.last().sample / FS_HZ,
        details={"n_beats": 6, "mean_hr_bpm": 150.0},
    )
    return recording.beats.count() - before


def replaced(recording, device) -> Recording:
    """The device restarts: its new session's recording replaces (closes) this one, whose
    analysis then finishes it, after the new one exists."""
    newer = restart(recording, device)
    Recording.objects.filter(pk=recording.pk).update(
        status=Recording.Status.CLOSED, closed_by=Recording.ClosedBy.SERVER
    )
    recording.refresh_from_db()
    return newer


def test_a_vt_in_the_last_seconds_of_a_replaced_recording_raises_one_alarm(recording, device):
    add_beats(recording, bpm=75, seconds=60)
    newer = replaced(recording, device)

    changes = finishing_round(recording, lambda: vt_before_the_end(recording), gap_s=0.0)
    assert changes_of(changes, "VT") == [("raised", "VT")]
    alarm = open_alarms(recording.patient, "VT").get()
    assert alarm.recording_id == recording.pk
    assert alarm.message.startswith("VT 6 beats at 150 bpm")
    # the new recording cannot tell at first (it holds the alarm), then resolves it once:
    # never raised a second time
    later = []
    while stretch_s(newer) < 2 * GONE_AFTER_S:
        add_beats(newer, bpm=75, seconds=STEP_S)
        later += changes_of(evaluate_alarms(newer.pk), "VT")
    assert later == [("resolved", "VT")]
    assert list(Alarm.objects.filter(kind="VT")) == [alarm]


def test_a_replaced_recordings_last_round_resolves_none_of_the_new_ones_alarms(recording, device):
    """The new recording is the patient's present: the old one's last seconds may raise what
    they show, never resolve (a normal rate there says nothing of the rate now), and the device
    alarms are the new recording's."""
    add_beats(recording, bpm=75, seconds=60)
    newer = replaced(recording, device)
    add_beats(newer, bpm=140, seconds=30)
    Recording.objects.filter(pk=newer.pk).update(
        last_chunk_at=timezone.now() - timedelta(seconds=120)
    )
    raised = evaluate_alarms(newer.pk)
    assert changes_of(raised, "HR_HIGH") == [("raised", "HR_HIGH")]
    assert changes_of(raised, "DEVICE_OFFLINE") == [("raised", "DEVICE_OFFLINE")]

    # the old recording's finish: a normal rate to its end, its device heard from just now
    Recording.objects.filter(pk=recording.pk).update(last_chunk_at=timezone.now())
    changes = finishing_round(recording, lambda: 0, gap_s=0.0)
    assert changes == []
    assert {alarm.kind for alarm in open_alarms(recording.patient)} == {
        "HR_HIGH",
        "DEVICE_OFFLINE",
    }


def test_a_vt_right_before_mitdb_207s_device_restarts_raises_its_alarm(
    device, eager_celery, django_capture_on_commit_callbacks
):
    """MIT-BIH 207 through the ingest path: VT runs from 39 s, and the device restarts at
    42 s. The new session's first chunk closes the old recording, whose analysis then finishes
    it (the VT episodes stored only then), the new recording already there."""
    from tests.inference.conftest import physionet_folder
    from tests.test_streaming_analysis import deliver, mitdb_adc, random_chunks

    adc, fs_hz = mitdb_adc(physionet_folder("mitdb", "207"), "207", seconds=140)
    cut = round(42 * fs_hz)
    rng = np.random.default_rng(7)
    before = random_chunks(adc[:cut], fs_hz, rng, max_s=2.0, session="0000207a")
    after = random_chunks(adc[round(131 * fs_hz) :], fs_hz, rng, max_s=2.0, session="0000207b")
    for chunk in before:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    old = Recording.objects.get()
    assert not old.episodes.filter(kind="VT").exists()  # not final yet
    assert not Alarm.objects.filter(kind="VT").exists()

    for chunk in after:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    old.refresh_from_db()
    new = Recording.objects.get(session="0000207b")
    assert (old.closed_by, old.analysis_cursor, old.stream_state) == ("server", cut, None)
    assert old.episodes.filter(kind="VT").exists()
    assert new.analysis_cursor > 0
    alarm = Alarm.objects.get(kind="VT")  # one, held open by the new recording
    assert alarm.recording_id == old.pk and alarm.state != AlarmState.RESOLVED


def add_vt_episode(recording) -> None:
    """A VT episode ending 10 s before the recording's final beats end (its cursor less the
    beat lag)."""
    end_s = recording.analysis_cursor / FS_HZ - BEAT_FINAL_LAG_S - 10.0
    Episode.objects.create(
        recording=recording,
        kind="VT",
        start_s=end_s - 2.4,
        end_s=end_s,
        details={"n_beats": 6, "mean_hr_bpm": 150.0},
    )


def test_a_lagging_replaced_recording_raises_each_of_its_events_once(recording, device):
    """Workers minutes behind: the old recording's leftover rounds run while the new one's do.
    The new one resolves the old one's VT alarm once it has analysed 75 s without VT; the old
    one's next rounds, their VT still in its hold, raised it again after every resolution
    (an alarm and an email each time). Now they raise a VT only once their own signal has
    shown none for the hold: a new VT there is news, once."""
    add_beats(recording, bpm=75, seconds=120)
    add_vt_episode(recording)
    assert changes_of(evaluate_alarms(recording.pk), "VT") == [("raised", "VT")]
    newer = replaced(recording, device)

    def rounds(n: int, new_vt_at: int | None = None) -> list:
        """``n`` rounds of each, interleaved: the new recording 5 s, the old one 2 s of its
        backlog; the VT alarm's changes, each marked with the recording that made it."""
        changes = []
        for number in range(n):
            add_beats(newer, bpm=75, seconds=STEP_S)
            changes += [("new", *c) for c in changes_of(evaluate_alarms(newer.pk), "VT")]
            add_beats(recording, bpm=75, seconds=2.0)
            if number == new_vt_at:
                add_vt_episode(recording)
            changes += [("old", *c) for c in changes_of(evaluate_alarms(recording.pk), "VT")]
        return changes

    # 20 rounds: the new recording resolves at 75 s (round 15); the old one's VT leaves its
    # hold only at round 34 (1.6 s of beats a round; the hold counts from what the rules know
    # of VT: the final beats at the latest 5-s recomputation of the episodes)
    assert rounds(20) == [("new", "resolved", "VT")]
    assert Alarm.objects.filter(kind="VT").count() == 1
    assert "gone_in_recording" not in Alarm.objects.get(kind="VT").details
    # past the hold in the old recording's signal (gone there), then a new VT in it
    assert rounds(20, new_vt_at=16) == [("old", "raised", "VT"), ("new", "resolved", "VT")]
    first, second = Alarm.objects.filter(kind="VT").order_by("pk")
    assert first.details["gone_in_recording"] and second.recording_id == recording.pk
    assert second.state == AlarmState.RESOLVED
