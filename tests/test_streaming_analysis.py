"""Streaming analysis of device recordings (monitoring/streaming.py) on the database.

The property of issue 5: a real MIT-BIH record delivered through the ingest path in random
chunk sizes and orders, analysed as it arrives, ends with the same beats (within one sample)
and the same labels as one offline pass over the whole record. The tasks run eagerly here;
tests/test_streaming_faults.py runs them on a real worker.
"""

import asyncio
from datetime import timedelta

import numpy as np
import pytest
import wfdb
from django.db import transaction
from django.utils import timezone

from inference.analysis import analyze_signal
from monitoring import streaming
from monitoring.ingest import close_recording, ingest_chunk, open_recording
from monitoring.models import Alarm, Beat, Prediction, Recording, SampleChunk
from monitoring.protocol import Chunk
from tests.inference.conftest import physionet_folder

pytestmark = pytest.mark.django_db

MITDB_GAIN = 200.0
MITDB_BASELINE = 1024


@pytest.fixture(scope="module")
def mitdb_folder():
    return physionet_folder("mitdb", "100")


def mitdb_adc(folder, record: str, seconds: float) -> tuple[np.ndarray, float]:
    """The first ``seconds`` of MLII as the ADC values the record stores."""
    header = wfdb.rdheader(str(folder / record))
    n = round(seconds * header.fs)
    data = wfdb.rdrecord(str(folder / record), sampto=n, channels=[0], physical=False)
    assert data.adc_gain[0] == MITDB_GAIN and data.baseline[0] == MITDB_BASELINE
    return data.d_signal[:, 0].astype(np.int16), float(header.fs)


def random_chunks(adc, fs_hz, rng, max_s=5.0, session="prop0001"):
    """Consecutive chunks of random length (1 sample to ``max_s`` seconds)."""
    chunks, start, seq = [], 0, 0
    while start < len(adc):
        n = int(rng.integers(1, round(max_s * fs_hz) + 1))
        chunks.append(
            Chunk(
                seq=seq,
                first_sample=start,
                fs_hz=fs_hz,
                gain_adc_per_mv=MITDB_GAIN,
                baseline_adc=MITDB_BASELINE,
                n_channels=1,
                samples=adc[start : start + n, np.newaxis],
                session=session,
            )
        )
        start += n
        seq += 1
    return chunks


def shuffled_nearby(chunks, rng, reach=4):
    """The chunks in an order where each may arrive up to ``reach`` places early or late."""
    keys = np.arange(len(chunks)) + rng.uniform(0, reach, size=len(chunks))
    return [chunks[i] for i in np.argsort(keys)]


def deliver(device, chunk, capture):
    """One chunk through the ingest path, committing and running what the commit triggers."""
    with capture(execute=True):
        with transaction.atomic():
            ingest_chunk(device, chunk)


def close(recording, capture):
    with capture(execute=True):
        with transaction.atomic():
            close_recording(Recording.objects.get(pk=recording.pk), Recording.ClosedBy.DEVICE)


def stored_beats(recording):
    rows = list(Beat.objects.filter(recording=recording).order_by("index"))
    assert [row.index for row in rows] == list(range(len(rows)))  # no hole, no duplicate
    return np.array([row.sample for row in rows]), [row.label for row in rows]


@pytest.mark.parametrize(
    ("record", "seed", "horizon_s"),
    [("208", 1, None), ("232", 2, None), ("201", 4, 240.0)],
    ids=["208", "232", "201-episodes-longer-than-the-horizon"],
)
def test_streamed_beats_equal_one_offline_pass(
    mitdb_folder,
    device,
    eager_celery,
    django_capture_on_commit_callbacks,
    monkeypatch,
    record,
    seed,
    horizon_s,
):
    """Random chunk sizes, chunks arriving out of order, analysis after every commit.

    With a horizon shorter than the excerpt, an episode longer than the horizon (201's AF,
    378 s) must still come out whole: the horizon reaches back to the start of a running
    episode. 400 s of 201 hold the whole episode, its end included. (A horizon shorter than
    new beats can move an episode's end, about 3 minutes for AF, would freeze ends too early;
    the default is 10 minutes.)
    """
    seconds = 180.0
    if horizon_s is not None:
        monkeypatch.setattr(streaming, "EPISODE_HORIZON_S", horizon_s)
        seconds = 400.0
    adc, fs_hz = mitdb_adc(mitdb_folder, record, seconds=seconds)
    rng = np.random.default_rng(seed)
    for chunk in shuffled_nearby(random_chunks(adc, fs_hz, rng), rng):
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    # everything received is analysed up to the end, except what the detectors hold back
    assert recording.analysis_cursor == len(adc)
    close(recording, django_capture_on_commit_callbacks)

    offline = analyze_signal((adc.astype(np.float64) - MITDB_BASELINE) / MITDB_GAIN, fs_hz)
    samples, labels = stored_beats(recording)
    assert len(samples) == len(offline.r_peaks) > 100
    assert np.max(np.abs(samples - offline.r_peaks)) <= 1
    assert labels == list(offline.labels)
    recording.refresh_from_db()
    assert recording.stream_state is None  # finished
    # within the episode horizon the episodes are the offline ones too
    streamed = [
        (episode.kind, round(episode.start_s, 2), round(episode.end_s, 2))
        for episode in recording.episodes.order_by("start_s", "end_s", "kind")
    ]
    assert streamed == [
        (episode.kind, round(episode.start_s, 2), round(episode.end_s, 2))
        for episode in offline.episodes
    ]
    # the 2-s verdicts cover the record once each
    vf = Prediction.objects.filter(recording=recording, model_name=streaming.VF_MODEL_NAME)
    starts = sorted(vf.values_list("window_start", flat=True))
    assert starts == list(range(0, len(starts) * round(2 * fs_hz), round(2 * fs_hz)))
    assert len(starts) == len(adc) // round(2 * fs_hz)
    # the alarms ran after every round: each AF episode the stream found raised an AF alarm
    af_alarms = Alarm.objects.filter(patient=device.patient, kind="AF")
    assert af_alarms.exists() == any(episode.kind == "AF" for episode in offline.episodes)


def test_analysis_is_coalesced_to_one_task_per_recording(device, recording, monkeypatch):
    queued = []
    monkeypatch.setattr(
        "monitoring.tasks.analyze_stream_task.apply_async",
        lambda args, **kwargs: queued.append(args),
    )
    for _ in range(5):
        streaming.request_analysis(recording.pk)
    assert queued == [[recording.pk]]  # the claim holds while the task is queued

    # a claim older than STREAM_STALE_S belongs to a dead worker: taken over
    Recording.objects.filter(pk=recording.pk).update(
        stream_queued_at=timezone.now() - timedelta(hours=1)
    )
    streaming.request_analysis(recording.pk)
    assert len(queued) == 2


def test_a_chunk_committed_during_a_run_makes_the_task_go_round_again(
    device, recording, monkeypatch
):
    rounds = []

    def fake_round(recording_id):
        rounds.append(recording_id)
        if len(rounds) == 1:  # a chunk commits while the first round runs
            Recording.objects.filter(pk=recording_id).update(stream_pending=True)
        return streaming.RoundResult()

    monkeypatch.setattr(streaming, "analyze_next", fake_round)
    Recording.objects.filter(pk=recording.pk).update(stream_queued_at=timezone.now())
    streaming.run_stream_analysis(recording.pk)
    assert len(rounds) == 2
    recording.refresh_from_db()
    assert recording.stream_queued_at is None and recording.stream_pending is False


def test_a_broker_that_is_down_leaves_the_chunk_stored_and_the_claim_free(
    device, recording, monkeypatch
):
    def refuse(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")

    monkeypatch.setattr("monitoring.tasks.analyze_stream_task.apply_async", refuse)
    monkeypatch.setattr(streaming, "_broker_down_until", 0.0)  # restored after the test
    assert streaming.request_analysis(recording.pk) is False
    recording.refresh_from_db()
    assert recording.stream_queued_at is None  # the next chunk or the sweep tries again
    # and for a few seconds this process does not even try: each chunk would pay for it
    tried = []
    monkeypatch.setattr(
        "monitoring.tasks.analyze_stream_task.apply_async", lambda *a, **k: tried.append(a)
    )
    assert streaming.request_analysis(recording.pk) is False and tried == []


def test_a_gap_waits_then_stays_a_gap_and_no_beat_is_invented_in_it(
    mitdb_folder, device, eager_celery, django_capture_on_commit_callbacks, settings
):
    # 60 s: 30 s on either side of the gap, more than the 32 beats a stretch needs to emit any
    adc, fs_hz = mitdb_adc(mitdb_folder, "100", seconds=60)
    chunks = random_chunks(adc, fs_hz, np.random.default_rng(3), max_s=2.0)
    middle = len(chunks) // 2
    lost = chunks.pop(middle)
    settings.DEVICE_GAP_WAIT_S = 3600.0
    for chunk in chunks:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    assert recording.analysis_cursor == lost.first_sample  # waiting for the gap to fill

    # the gap is final once the chunk after it is old enough: the sweep picks it up
    settings.DEVICE_GAP_WAIT_S = 0.0
    with django_capture_on_commit_callbacks(execute=True):
        streaming.sweep()
    recording.refresh_from_db()
    assert recording.analysis_cursor == len(adc)
    close(recording, django_capture_on_commit_callbacks)

    samples, _ = stored_beats(recording)
    assert not np.any((samples >= lost.first_sample) & (samples < lost.end_sample))
    before = (adc[: lost.first_sample].astype(np.float64) - MITDB_BASELINE) / MITDB_GAIN
    after = (adc[lost.end_sample :].astype(np.float64) - MITDB_BASELINE) / MITDB_GAIN
    expected = np.concatenate(
        [
            analyze_signal(before, fs_hz).r_peaks,
            analyze_signal(after, fs_hz).r_peaks + lost.end_sample,
        ]
    )
    np.testing.assert_array_equal(samples, expected)
    assert SampleChunk.objects.filter(recording=recording).count() == len(chunks)


def test_a_run_that_another_beat_to_finishing_the_stretch_stores_nothing_twice(
    mitdb_folder, device, eager_celery, django_capture_on_commit_callbacks, monkeypatch
):
    """A redelivered task next to its sweep: both read the closed recording with its state;
    the first to commit finishes the stretch (clears the state, cursor unchanged), and the
    other must then store nothing, not the last beats a second time."""
    from inference.streaming import StreamingAnalyzer

    adc, fs_hz = mitdb_adc(mitdb_folder, "100", seconds=40)
    for chunk in random_chunks(adc, fs_hz, np.random.default_rng(5), max_s=2.0):
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    assert recording.analysis_cursor == len(adc) and recording.stream_state is not None
    monkeypatch.setattr(streaming, "request_analysis", lambda recording_id: False)
    close(recording, django_capture_on_commit_callbacks)  # closed, not yet finished
    before_finish = Beat.objects.filter(recording=recording).count()

    finish = StreamingAnalyzer.finish
    rival = {}

    def finish_after_a_rival_did(analyzer):
        if "started" not in rival:  # the other run reads, finishes and commits first
            rival["started"] = True
            rival["result"] = streaming.analyze_next(recording.pk)
            rival["beats"] = Beat.objects.filter(recording=recording).count()
        return finish(analyzer)

    monkeypatch.setattr(StreamingAnalyzer, "finish", finish_after_a_rival_did)
    with django_capture_on_commit_callbacks(execute=True):
        late = streaming.analyze_next(recording.pk)

    assert rival["result"].n_beats > 0  # the finish stored the held-back beats
    assert late.n_beats == 0 and late.more
    samples, _ = stored_beats(recording)
    assert before_finish <= rival["beats"] == len(samples)  # the late run added no row
    assert len(np.unique(samples)) == len(samples)
    recording.refresh_from_db()
    assert recording.stream_state is None


async def drain(layer, channel: str, wait_s: float = 1.0) -> list[dict]:
    """Every message waiting on ``channel`` (receive blocks while there is none)."""
    messages = []
    while True:
        try:
            messages.append(await asyncio.wait_for(layer.receive(channel), wait_s))
        except TimeoutError:
            return messages


def test_the_results_are_published_to_the_recordings_group(
    mitdb_folder, device, eager_celery, django_capture_on_commit_callbacks
):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    adc, fs_hz = mitdb_adc(mitdb_folder, "100", seconds=30)
    chunks = random_chunks(adc, fs_hz, np.random.default_rng(5), max_s=10.0)
    with transaction.atomic():  # opened before any chunk, so the group hears every beat
        recording = open_recording(device, chunks[0])
    async_to_sync(layer.group_add)(streaming.group_name(recording.pk), channel)
    try:
        for chunk in chunks:
            deliver(device, chunk, django_capture_on_commit_callbacks)
        close(recording, django_capture_on_commit_callbacks)
        published = async_to_sync(drain)(layer, channel)
    finally:
        async_to_sync(layer.group_discard)(streaming.group_name(recording.pk), channel)
    analysis = [message for message in published if message["type"] == "recording.analysis"]
    samples = [message for message in published if message["type"] == "recording.samples"]
    assert len(analysis) + len(samples) == len(published)
    sent = [beat for message in analysis for beat in message["beats"]]
    stored = list(Beat.objects.filter(recording=recording).values_list("sample", flat=True))
    # each beat went out once final, in order; most went out provisional before that
    assert [beat["sample"] for beat in sent if not beat["provisional"]] == stored
    assert len(stored) > 20
    assert not Beat.objects.filter(recording=recording, provisional=True).exists()
    first_sent = {}
    for position, beat in enumerate(sent):
        first_sent.setdefault(beat["sample"], (position, beat["provisional"]))
    provisional_first = [sample for sample, (_, early) in first_sent.items() if early]
    assert len(provisional_first) > 0.8 * len(stored)
    assert set(first_sent) == set(stored)
    verdicts = [v["start_sample"] for message in analysis for v in message["verdicts"]]
    assert len(verdicts) == Prediction.objects.filter(recording=recording).count() > 0
    # every stored chunk went out as it was stored, in mV, in order of arrival
    assert [message["first_sample"] for message in samples] == [c.first_sample for c in chunks]
    live = np.concatenate([message["samples_mv"][0] for message in samples])
    expected = (adc.astype(np.float64) - MITDB_BASELINE) / MITDB_GAIN
    np.testing.assert_allclose(live, expected, atol=1e-4)


def test_an_episode_up_to_the_newest_beat_is_ongoing_and_names_the_live_rhythm(
    mitdb_folder, device, eager_celery, django_capture_on_commit_callbacks
):
    """201 is in atrial fibrillation for its first 378 s: streamed for 90 s, its AF episode
    reaches the newest beat, so the live status names AF; once the recording is closed nothing
    is ongoing."""
    from monitoring import live

    seconds = 90.0
    adc, fs_hz = mitdb_adc(mitdb_folder, "201", seconds=seconds)
    rng = np.random.default_rng(7)
    for chunk in random_chunks(adc, fs_hz, rng):
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    af = recording.episodes.get(kind="AF")
    assert af.details.get("ongoing") is True
    assert af.end_s > seconds - 10.0
    assert live.status_message(recording, device.patient_id)["rhythm"] == "AF"

    close(recording, django_capture_on_commit_callbacks)
    assert not recording.episodes.filter(details__ongoing=True).exists()
    assert recording.episodes.filter(kind="AF").exists()


def test_a_vt_run_whose_fusion_beat_is_the_newest_final_beat_is_joined_by_the_next_round(
    recording,
):
    """A single F beat inside a VT run continues it (docs/rhythm.md). The stream recomputes
    the episodes of the recent past each round from the final beats: a round that ends with
    the F beat stores the run so far, and the next one must replace it with the whole run,
    as one offline pass over the same beats does, not leave a second episode beside it."""
    from inference.rhythm import episodes_from_beats

    fs_hz = recording.sampling_rate_hz
    rr_s = [0.8] * 20 + [0.4] * 7 + [0.8] * 10  # 20 s of sinus, a run at 150 bpm, sinus
    labels = ["N"] * 21 + list("VVVFVVV") + ["N"] * 10
    samples = np.round((1.0 + np.concatenate([[0.0], np.cumsum(rr_s)])) * fs_hz).astype(int)
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=index,
            sample=int(sample),
            label=label,
            confidence=0.9,
            probabilities={label: 0.9},
        )
        for index, (sample, label) in enumerate(zip(samples, labels, strict=True))
    )

    def vt_stored():
        return [
            (episode.start_s, episode.end_s, episode.details["n_beats"])
            for episode in recording.episodes.filter(kind="VT").order_by("start_s")
        ]

    fusion = labels.index("F")
    # round 1: every beat up to the F beat is final (the next one has not come yet)
    Beat.objects.filter(recording=recording, index__gt=fusion).update(provisional=True)
    streaming._update_episodes(recording, 0, int(samples[fusion]) + 1, finished=False)
    assert vt_stored() == [(samples[21] / fs_hz, samples[23] / fs_hz, 3)]
    # round 2: the rest is final
    Beat.objects.filter(recording=recording).update(provisional=False)
    end = int(samples[-1]) + round(fs_hz)
    streaming._update_episodes(recording, 0, end, finished=True)
    offline = episodes_from_beats(
        samples / fs_hz,
        labels,
        np.zeros(end // round(2 * fs_hz)),
        end / fs_hz,
        streaming._rhythm_config(recording),
    )
    expected = [
        (round(episode.start_s, 3), round(episode.end_s, 3), episode.details["n_beats"])
        for episode in offline
        if episode.kind == "VT"
    ]
    assert (
        vt_stored()
        == expected
        == [(round(samples[21] / fs_hz, 3), round(samples[27] / fs_hz, 3), 7)]
    )


@pytest.mark.parametrize(
    ("episode", "others", "newest", "expected"),
    [
        (("VT", 50.0, 59.0), [], "", True),  # up to the newest beat
        (("VT", 50.0, 55.0), [], "", False),  # beats came after it
        (("VT", 50.0, 59.0), [("PAUSE", 59.0, 63.0, {"open": "end"})], "", False),  # silence
        (("PAUSE", 59.0, 63.0, {"open": "end"}), [], "", True),
        (("PAUSE", 40.0, 44.0), [], "", False),  # a pause that ended
        (("VF", 20.0, 30.0), [], "", True),  # its last segment is the newest (15 segments of 2 s)
        (("VF", 20.0, 26.0), [], "", False),
        # after the run's last V beat (59 s) one F beat (59.5 s) that may still bridge it
        (("VT", 50.0, 59.0), [], "F", True),
        (("VT", 50.0, 59.0), [], "N", False),
        (("TACHY", 40.0, 59.0), [], "F", False),  # only a VT run goes on through an F beat
    ],
)
def test_what_counts_as_ongoing(episode, others, newest, expected):
    from inference.rhythm import Episode, RhythmConfig

    def make(spec):
        kind, start_s, end_s, *details = spec
        return Episode(kind, start_s, end_s, details[0] if details else {})

    found = [make(episode)] + [make(other) for other in others]
    times_s = list(np.arange(50.0, 59.01, 0.5))  # V beats every 0.5 s up to 59 s
    labels = ["V"] * len(times_s)
    if newest:
        times_s.append(59.5)
        labels.append(newest)
    # every beat before 59.6 s is known, and there are 15 VF segments of 2 s
    known = streaming._KnownBeats(np.array(times_s), labels, 59.6, 15, RhythmConfig())
    assert streaming._reaches_the_end(found[0], found, known) is expected


def store_final_beats(recording, rr_s, labels, first_s=1.0) -> np.ndarray:
    """Final beats of ``recording``, the first at ``first_s`` and then ``rr_s`` apart, with
    ``labels``; their samples."""
    fs_hz = recording.sampling_rate_hz
    samples = np.round((first_s + np.concatenate([[0.0], np.cumsum(rr_s)])) * fs_hz).astype(int)
    assert len(samples) == len(labels)
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=index,
            sample=int(sample),
            label=label,
            confidence=0.9,
            probabilities={label: 0.9},
        )
        for index, (sample, label) in enumerate(zip(samples, labels, strict=True))
    )
    return samples


def vt_ongoing(recording) -> list[bool]:
    return [
        episode.details.get("ongoing") is True
        for episode in recording.episodes.filter(kind="VT").order_by("start_s")
    ]


# 20 s of sinus at 75 bpm, then 4 V beats at 150 bpm (the VT run)
SINUS_RR_S, VT_RR_S = [0.8] * 20, [0.4] * 4
SINUS_THEN_VT = ["N"] * 21 + ["V"] * 4


@pytest.mark.parametrize("bridge", ["F", "Q"])
def test_a_vt_whose_newest_final_beat_may_still_bridge_it_stays_ongoing(recording, bridge):
    """A single F or Q beat inside a VT run does not end it (docs/rhythm.md). While it is the
    newest final beat the V beat after it is not final yet, and the run may go on: the live
    status must keep naming VT, not say it ended at every fusion beat for the ~5 s until the
    next V beat is final."""
    from monitoring import live

    fs_hz = recording.sampling_rate_hz
    samples = store_final_beats(
        recording, SINUS_RR_S + VT_RR_S + [0.4, 0.4], SINUS_THEN_VT + [bridge, "V"]
    )
    Beat.objects.filter(recording=recording, index=len(samples) - 1).update(provisional=True)
    # every beat is known up to 0.3 s after the F/Q beat: 0.7 s after the run's last V beat,
    # within the bridge gap (two intervals at 100 bpm, 1.2 s)
    known_end = int(samples[-2] + round(0.3 * fs_hz))
    streaming._update_episodes(recording, 0, known_end, finished=False)
    assert vt_ongoing(recording) == [True]
    vt = recording.episodes.get(kind="VT")
    assert vt.end_s == pytest.approx(samples[-3] / fs_hz, abs=1e-3)  # the run so far: to its last V
    assert live.status_message(recording, recording.patient_id)["rhythm"] == "VT"

    # the V beat after it is final: one run through the bridging beat, still going on
    Beat.objects.filter(recording=recording).update(provisional=False)
    streaming._update_episodes(recording, 0, int(samples[-1]) + 1, finished=False)
    assert vt_ongoing(recording) == [True]
    assert recording.episodes.get(kind="VT").details["n_beats"] == 6


@pytest.mark.parametrize(
    ("after_run_rr_s", "after_run", "known_after_s", "why"),
    [
        ([0.4, 0.4], ["F", "N"], 0.1, "an N beat after the F beat ends the run"),
        ([0.4, 0.4], ["Q", "S"], 0.1, "an S beat after the Q beat ends the run"),
        ([0.4, 0.4], ["F", "F"], 0.1, "two F beats in a row end the run"),
        ([0.4, 0.4], ["F", "Q"], 0.1, "an F and a Q beat in a row end the run"),
        ([1.3], ["F"], 0.1, "an F beat after a gap longer than the bridge gap ends the run"),
        ([0.4], ["F"], 0.9, "the bridge gap passed after the F beat without a V beat"),
        ([0.4], ["N"], 0.1, "an N beat ends the run"),
    ],
)
def test_a_vt_that_no_beat_can_bridge_any_more_is_not_ongoing(
    recording, after_run_rr_s, after_run, known_after_s, why
):
    """The run ends at its last V beat, as before: whatever V beat comes next, the offline
    rule (inference.rhythm.episodes_from_beats) would not join it to this run."""
    from inference.rhythm import episodes_from_beats
    from monitoring import live

    fs_hz = recording.sampling_rate_hz
    rr_s = SINUS_RR_S + VT_RR_S + after_run_rr_s
    labels = SINUS_THEN_VT + after_run
    samples = store_final_beats(recording, rr_s, labels)
    known_end = int(samples[-1] + round(known_after_s * fs_hz))
    streaming._update_episodes(recording, 0, known_end, finished=False)
    assert vt_ongoing(recording) == [False], why
    assert live.status_message(recording, recording.patient_id)["rhythm"] != "VT", why

    # the check of the rule itself: the earliest V beat still to come is not joined to the run
    times_s = list(samples / fs_hz) + [known_end / fs_hz]
    offline = episodes_from_beats(times_s, labels + ["V"], None, times_s[-1] + 1.0)
    (vt,) = [episode for episode in offline if episode.kind == "VT"]
    assert vt.details["n_v_beats"] == 4, why


def test_a_device_recordings_page_summarises_the_beats_stored_so_far(
    mitdb_folder, client, clinician, device, eager_celery, django_capture_on_commit_callbacks
):
    """The recording page of a streamed recording shows its beats, class counts and heart rate
    (it used to show zeros: only uploads stored a summary). MIT-BIH 119 has frequent PVCs."""
    adc, fs_hz = mitdb_adc(mitdb_folder, "119", seconds=60.0)
    chunks = random_chunks(adc, fs_hz, np.random.default_rng(3))
    for chunk in chunks[: len(chunks) // 2]:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    # a gap of 10 s, then the rest: the gap is no heart rate
    for chunk in chunks[len(chunks) // 2 :]:
        chunk.first_sample += round(10 * fs_hz)
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    client.force_login(clinician)
    live_summary = streaming.stream_summary(recording)
    assert live_summary["live"] is True and live_summary["n_beats"] > 20
    # closed, the stretch after the gap is analysed too (a gap waits for the signal to come)
    close(recording, django_capture_on_commit_callbacks)
    recording.refresh_from_db()
    samples, labels = stored_beats(recording)
    assert samples[-1] > len(adc)  # beats after the gap
    assert labels.count("V") > 5

    page = client.get(f"/recordings/{recording.pk}/").content.decode()
    assert f'<dd id="n-beats">{len(samples)}</dd>' in page
    assert f'<td class="cls cls-V">V</td><td>{labels.count("V")}</td>' in page
    summary = streaming.stream_summary(recording)
    assert summary["counts"]["V"] == labels.count("V") and summary["live"] is False
    assert summary["duration_s"] == pytest.approx(len(adc) / fs_hz)
    # 119 runs at about 65-75 bpm: a mean over the 10-s gap would read far lower
    assert 55 < summary["heart_rate_bpm"]["mean"] < 85
    assert summary["heart_rate_bpm"]["min"] > 40
    assert f"{summary['heart_rate_bpm']['mean']:.0f} bpm mean" in page


def test_a_device_summary_gives_no_heart_rate_range_without_a_long_enough_run(recording):
    """The range is the extremes of an 8-beat running mean: 5 beats have a mean rate but no
    range (not a made-up "75 (75-75)")."""
    for index in range(5):
        Beat.objects.create(
            recording=recording,
            index=index,
            sample=200 * (index + 1),
            label="N",
            confidence=0.9,
            probabilities={"N": 0.9},
        )
    rate = streaming.stream_summary(recording)["heart_rate_bpm"]
    assert rate == {"mean": 75.0, "min": None, "max": None}
