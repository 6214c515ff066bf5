"""A chunk that arrives after the streaming analysis gave up its gap (monitoring/backfill.py).

A device streams 1-s chunks in real time at 75 bpm through the device API; chunk 10 is
withheld. The live analysis waits DEVICE_GAP_WAIT_S (20 s) from the arrival of chunk 11, then
goes past the gap; chunk 10 sent after that is analysed afterwards (its beats stored among
the live ones, numbered in time order), and one sent within the wait is analysed in order.
Until 2026-12-07 the analysis stalled for 60 s and a chunk sent later was never analysed: its
beat was missing from the beats, the counts and the review page for good.

Time: the analysis decides on ``timezone.now()`` against each chunk's ``received_at``; the
``clock`` fixture drives both, one second per chunk, so that the test does not sleep.
"""

from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from rest_framework.test import APIClient

from inference.analysis import analyze_signal
from inference.synthetic import generate
from monitoring import backfill, streaming
from monitoring.ingest import close_recording
from monitoring.models import Beat, GivenUpGap, Recording, SampleChunk
from monitoring.protocol import Chunk, encode_json_chunk

pytestmark = pytest.mark.django_db

URL = "/api/device/v1/chunks/"
FS_HZ = 250.0
GAIN = 200.0
SECONDS = 120


class Clock:
    def __init__(self):
        self.now = timezone.now()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    """What the streaming analysis and a new chunk's ``received_at`` read as now."""
    clock = Clock()
    monkeypatch.setattr(streaming, "timezone", SimpleNamespace(now=lambda: clock.now))
    received_at = SampleChunk._meta.get_field("received_at")
    monkeypatch.setattr(received_at, "_get_default", lambda: clock.now)
    return clock


@pytest.fixture(scope="module")
def ecg():
    """120 s of sinus rhythm at 75 bpm as the device's ADC values, and its beats as one
    offline pass over the whole signal finds them."""
    strip = generate(SECONDS, fs=FS_HZ, hr_bpm=75.0, seed=3)
    adc = np.round(strip.signal_mv * GAIN).astype(np.int16)
    offline = analyze_signal(adc / GAIN, FS_HZ)
    return adc, offline


# The edge cases below hinge on one R peak of ``ecg`` at 71.992 s, 2 samples before a chunk
# boundary. They stream the signal from SHIFT_S on (as a recording of its own), so that the
# peak lies at 31.992 s: the same ECG around the gap, with 32 s of sinus before it (more than
# the 32 beats a stretch needs before it emits any), in 60 chunks instead of 100.
SHIFT_S = 40


@pytest.fixture(scope="module")
def shifted_ecg(ecg):
    """``ecg`` from SHIFT_S on, and its beats as one offline pass over that signal finds them."""
    adc = ecg[0][SHIFT_S * round(FS_HZ) :]
    return adc, analyze_signal(adc / GAIN, FS_HZ)


@pytest.fixture
def device_client(device_token, django_capture_on_commit_callbacks):
    """The device API, with what a chunk's commit triggers (its analysis) run at once."""
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Device {device_token}")
    api.capture = django_capture_on_commit_callbacks
    return api


def post(client, adc, k: int):
    """Chunk ``k`` (second k of the signal) through the device API, and its analysis."""
    n = round(FS_HZ)
    chunk = Chunk(
        seq=k,
        first_sample=k * n,
        fs_hz=FS_HZ,
        gain_adc_per_mv=GAIN,
        n_channels=1,
        samples=adc[k * n : (k + 1) * n, np.newaxis],
        session="late0001",
    )
    with client.capture(execute=True):
        response = client.post(URL, data=encode_json_chunk(chunk), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def stream(client, adc, clock, seconds, withheld=(), late=None, start=0):
    """Chunks start..seconds-1 in real time (chunk k sent at t = k + 1 s), the ``withheld``
    ones left out; ``late``: {t: chunk} sent at t instead. The analysis cursor (s) after each."""
    late = late or {}
    cursor_s = {}
    for k in range(start, seconds):
        clock.advance(1.0)
        t = k + 1
        if k not in withheld:
            post(client, adc, k)
        if t in late:
            post(client, adc, late[t])
        cursor_s[t] = Recording.objects.get().analysis_cursor / FS_HZ
    return cursor_s


def stored(recording) -> tuple[np.ndarray, list[str]]:
    rows = list(Beat.objects.filter(recording=recording).order_by("index"))
    # numbered without a hole or a repeat, in the order of their R peaks
    assert [row.index for row in rows] == list(range(len(rows)))
    samples = np.array([row.sample for row in rows])
    assert np.all(np.diff(samples) > 0)
    return samples, [row.label for row in rows]


def close(recording):
    close_recording(Recording.objects.get(pk=recording.pk), Recording.ClosedBy.DEVICE)
    streaming.run_stream_analysis(recording.pk)


def between(samples, lo_s, hi_s):
    return samples[(samples >= lo_s * FS_HZ) & (samples < hi_s * FS_HZ)]


def test_the_default_wait_is_20_s():
    assert django_settings.DEVICE_GAP_WAIT_S == 20.0


def test_a_chunk_sent_after_its_gap_was_given_up_gets_its_beats(
    device_client, clinician, ecg, clock, eager_celery
):
    """The fidelity check of 2026-12-07 (t17): chunk 10 withheld, sent late (the check sent
    it at t = 76 s; any time after the gap was given up, at t = 32 s, takes the same path)."""
    adc, offline = ecg
    cursor_s = stream(device_client, adc, clock, 50, withheld={10}, late={45: 10})
    recording = Recording.objects.get()

    # the stall is bounded by the wait: chunk 11 arrived at t = 12 s, the gap is given up
    # 20 s later, and the analysis goes on at once (it stalled until t = 71 s before)
    assert all(cursor_s[t] == 10.0 for t in range(11, 32)), cursor_s
    assert cursor_s[32] >= 31.0

    # the late chunk was analysed afterwards: the beat in 10-11 s is stored, the beats
    # around it once each, as one offline pass over the whole signal finds them
    samples, labels = stored(recording)
    expected = between(offline.r_peaks, 9, 12)
    assert len(between(offline.r_peaks, 10, 11)) == 1
    np.testing.assert_allclose(between(samples, 9, 12), expected, atol=1)
    late_beat = Beat.objects.get(recording=recording, sample__gte=10 * FS_HZ, sample__lt=11 * FS_HZ)
    assert not late_beat.provisional and late_beat.label == "N"
    assert set(late_beat.probabilities) == {"N", "S", "V", "F", "Q"}
    # the gap stays on record, with nothing left to backfill
    assert GivenUpGap.objects.get().start_sample == 10 * FS_HZ
    assert not backfill.filled_gaps().exists()

    # the review page's window and the summary's counts include it
    api = APIClient()
    api.force_authenticate(clinician)
    window = api.get(
        f"/api/recordings/{recording.pk}/signal/", {"start_s": 10, "length_s": 1}
    ).json()
    assert [beat["sample"] for beat in window["beats"]] == [late_beat.sample]

    close(recording)
    samples, labels = stored(recording)
    summary = streaming.stream_summary(Recording.objects.get())
    assert summary["n_beats"] == len(samples) == summary["counts"]["N"]
    # every beat of the 50 s sent (the stretches on either side of the given-up gap are
    # analysed as two, and agree with one pass over the whole signal within a sample)
    expected = analyze_signal(adc[: 50 * round(FS_HZ)] / GAIN, FS_HZ).r_peaks
    assert len(samples) == len(expected)
    np.testing.assert_allclose(samples, expected, atol=1)


def test_a_chunk_sent_within_the_wait_is_analysed_in_order(device_client, ecg, clock, eager_celery):
    """Chunk 10 sent at t = 25 s, 13 s after chunk 11: the analysis waited for it and reads
    it in order, as one stretch: no gap was given up, nothing is backfilled."""
    adc, offline = ecg
    cursor_s = stream(device_client, adc, clock, 30, withheld={10}, late={25: 10})
    recording = Recording.objects.get()
    assert all(cursor_s[t] == 10.0 for t in range(11, 25))
    assert cursor_s[25] >= 24.0
    assert not GivenUpGap.objects.exists()  # never given up
    close(recording)
    samples, _ = stored(recording)
    expected = analyze_signal(adc[: 30 * round(FS_HZ)] / GAIN, FS_HZ).r_peaks
    np.testing.assert_array_equal(samples, expected)


def test_chunks_that_fill_a_given_up_gap_piece_by_piece_are_each_analysed_once(
    device_client, ecg, clock, eager_celery
):
    """Chunks 10-12 withheld; 11 comes first, alone between two missing chunks: 1 s is too
    short to hold a beat, and it is analysed again once 12 joins it. Then 10. The beats end
    up as one offline pass finds them, none twice."""
    adc, offline = ecg
    n = round(FS_HZ)
    withheld = {10, 11, 12}
    stream(device_client, adc, clock, 40, withheld)
    gap = GivenUpGap.objects.get()
    assert (gap.start_sample, gap.end_sample) == (10 * n, 13 * n)
    recording = Recording.objects.get()

    stream(device_client, adc, clock, 41, withheld, late={41: 11}, start=40)
    assert not between(stored(recording)[0], 10, 13).size
    assert not backfill.filled_gaps().exists()  # not tried again at every chunk

    stream(device_client, adc, clock, 46, withheld, late={46: 12}, start=41)
    samples, _ = stored(recording)
    np.testing.assert_allclose(between(samples, 11, 13), between(offline.r_peaks, 11, 13), atol=1)
    assert not between(samples, 10, 11).size

    stream(device_client, adc, clock, 51, withheld, late={51: 10}, start=46)
    samples, _ = stored(recording)
    np.testing.assert_allclose(between(samples, 8, 15), between(offline.r_peaks, 8, 15), atol=1)
    assert not backfill.filled_gaps().exists()


def test_the_beat_a_stretch_loses_at_the_start_of_a_given_up_gap_is_backfilled(
    device_client, shifted_ecg, clock, eager_celery, monkeypatch
):
    """The R peak at 31.992 s (of ``shifted_ecg``) lies 2 samples before chunk 32: the stretch
    that ends at the gap of chunk 32 loses it (the QRS detector needs the samples after a
    peak). The backfill takes the beats from ``BACKFILL_EDGE_S`` before the filled samples, so
    it is stored; without that margin it stays missing. Chunk 32 is sent at t = 59 s, 5 s
    after the gap was given up, as chunk 72 was in the full signal."""
    adc, offline = shifted_ecg
    lost = 7998
    assert lost in offline.r_peaks
    stream(device_client, adc, clock, 60, withheld={32}, late={59: 32})
    samples, _ = stored(Recording.objects.get())
    np.testing.assert_allclose(between(samples, 28, 38), between(offline.r_peaks, 28, 38), atol=1)

    Beat.objects.all().delete()  # again, without the margin
    Recording.objects.all().delete()
    monkeypatch.setattr(backfill, "BACKFILL_EDGE_S", 0.0)
    stream(device_client, adc, clock, 60, withheld={32}, late={59: 32})
    samples, _ = stored(Recording.objects.get())
    assert lost not in samples


def test_a_beat_at_the_end_of_a_given_up_gap_is_not_stored_twice(
    device_client, shifted_ecg, clock, eager_celery
):
    """Chunk 31 withheld: the R peak at 31.992 s (of ``shifted_ecg``) lies in its last samples.
    The live stretch that starts after the gap places that beat at its own first sample
    (32.0 s); the backfill finds it at 31.992 s and knows it for the same beat."""
    adc, offline = shifted_ecg
    assert 7998 in offline.r_peaks
    stream(device_client, adc, clock, 59, withheld={31}, late={58: 31})
    samples, _ = stored(Recording.objects.get())
    expected = between(offline.r_peaks, 28, 38)
    assert len(between(samples, 28, 38)) == len(expected)
    np.testing.assert_allclose(between(samples, 28, 38), expected, atol=2)


def test_the_sweep_backfills_a_late_chunk_whose_task_was_lost(
    device_client, ecg, clock, eager_celery, monkeypatch
):
    """A worker that died after the late chunk was stored: the sweep finds the filled gap."""
    adc, offline = ecg
    stream(device_client, adc, clock, 35, withheld={10})  # given up at t = 32 s
    recording = Recording.objects.get()
    assert GivenUpGap.objects.filter(recording=recording).count() == 1
    monkeypatch.setattr(streaming, "backfill_given_up_gaps", lambda recording_id: 0)
    post(device_client, adc, 10)
    assert not between(stored(recording)[0], 10, 11).size
    assert streaming.lagging_recordings() == [recording.pk]

    monkeypatch.undo()
    streaming.sweep()
    samples, _ = stored(recording)
    np.testing.assert_allclose(between(samples, 10, 11), between(offline.r_peaks, 10, 11), atol=1)
    assert streaming.lagging_recordings() == []


def test_a_backfill_that_fails_is_marked_and_the_live_analysis_goes_on(
    device_client, ecg, clock, eager_celery, monkeypatch, caplog
):
    adc, _ = ecg

    def broken(*args, **kwargs):
        raise RuntimeError("the classifier broke")

    monkeypatch.setattr("inference.analysis.detect_and_classify_beats", broken)
    stream(device_client, adc, clock, 45, withheld={10}, late={40: 10})
    gap = GivenUpGap.objects.get()
    assert gap.backfill_failed
    assert "the classifier broke" in caplog.text
    assert Recording.objects.get().analysis_cursor >= 43 * FS_HZ
    assert backfill.filled_gaps().count() == 0  # not tried again at every chunk


def test_a_filled_gap_before_a_flat_line_is_not_backfilled_again_at_every_chunk(
    device_client, ecg, clock, eager_celery, monkeypatch
):
    """Chunk 30 withheld and the ECG flat from 31 s on (no beat, and not flagged leads off):
    the backfill of chunk 30, sent late, waits for the live stretch after the gap to store a
    beat, which never comes while the line is flat. The wait is decided in the query, so the
    rounds and the sweep do not backfill it (load the recording) again at every chunk; the
    recording's close finishes the stretch, and the beats are then backfilled once. Until
    2026-12-08 every chunk and every sweep re-ran the backfill for nothing."""
    adc, offline = ecg
    n = round(FS_HZ)
    flat = adc.copy()
    flat[31 * n :] = 0
    stream(device_client, flat, clock, 56, withheld={30})
    gap = GivenUpGap.objects.get()
    assert (gap.start_sample, gap.end_sample) == (30 * n, 31 * n)
    recording = Recording.objects.get()

    calls = []
    real_backfill_gap = backfill.backfill_gap
    monkeypatch.setattr(
        backfill, "backfill_gap", lambda g: calls.append(g.pk) or real_backfill_gap(g)
    )
    stream(device_client, flat, clock, 66, withheld={30}, late={57: 30}, start=56)
    assert SampleChunk.objects.filter(first_sample=30 * n).exists()
    assert calls == []
    assert not backfill.filled_gaps().exists()
    assert streaming.lagging_recordings() == []
    assert not between(stored(recording)[0], 30, 31).size

    close(recording)
    assert calls == [gap.pk]
    samples, _ = stored(recording)
    expected = between(offline.r_peaks, 29.5, 30.9)
    assert len(expected)
    np.testing.assert_allclose(between(samples, 29.5, 30.9), expected, atol=1)
    assert not backfill.filled_gaps().exists()


def test_a_recording_without_given_up_gaps_costs_the_backfill_one_indexed_lookup(
    device_client, ecg, clock, eager_celery, django_assert_num_queries
):
    """The backfill runs after every chunk's analysis; a recording that never gave a gap up
    (nearly all) pays one lookup of its given-up gaps, not filled_gaps()' query over the
    chunks (6.7 ms a call against 0.6 ms, most of it compiling the query)."""
    adc, _ = ecg
    stream(device_client, adc, clock, 3)
    recording = Recording.objects.get()
    with django_assert_num_queries(1) as captured:
        assert backfill.backfill_given_up_gaps(recording.pk) == 0
    sql = captured.captured_queries[0]["sql"]
    assert "monitoring_givenupgap" in sql
    assert "monitoring_samplechunk" not in sql
