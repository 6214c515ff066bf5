"""Streaming analysis that must go on: gaps wider than one round, a session that begins
minutes in, a saved state that cannot be read (monitoring/streaming.py)."""

import numpy as np
import pytest

from inference.analysis import analyze_signal
from monitoring import streaming
from monitoring.models import Recording
from tests.inference.conftest import physionet_folder
from tests.test_streaming_analysis import (
    MITDB_BASELINE,
    MITDB_GAIN,
    close,
    deliver,
    mitdb_adc,
    random_chunks,
    stored_beats,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def mitdb_folder():
    return physionet_folder("mitdb", "100")


def test_a_gap_longer_than_a_round_is_crossed(
    mitdb_folder, device, eager_celery, django_capture_on_commit_callbacks, settings
):
    """A device offline for longer than STREAM_MAX_ROUND_S leaves a gap wider than one round
    reads: the analysis must still see the chunk after it, wait, then go on past it."""
    settings.STREAM_MAX_ROUND_S = 5.0
    settings.DEVICE_GAP_WAIT_S = 3600.0
    adc, fs_hz = mitdb_adc(mitdb_folder, "100", seconds=40)
    chunks = random_chunks(adc, fs_hz, np.random.default_rng(5), max_s=1.0)
    half = len(chunks) // 2
    gap = round(20 * fs_hz)  # 20 s offline: four rounds wide
    for chunk in chunks[half:]:
        chunk.first_sample += gap
    for chunk in chunks:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    split = chunks[half].first_sample - gap
    assert recording.analysis_cursor == split  # waiting for the gap to fill

    settings.DEVICE_GAP_WAIT_S = 0.0
    with django_capture_on_commit_callbacks(execute=True):
        streaming.sweep()
    recording.refresh_from_db()
    assert recording.analysis_cursor == len(adc) + gap
    close(recording, django_capture_on_commit_callbacks)
    samples, _ = stored_beats(recording)
    to_mv = lambda part: (part.astype(np.float64) - MITDB_BASELINE) / MITDB_GAIN  # noqa: E731
    expected = np.concatenate(
        [
            analyze_signal(to_mv(adc[:split]), fs_hz).r_peaks,
            analyze_signal(to_mv(adc[split:]), fs_hz).r_peaks + split + gap,
        ]
    )
    np.testing.assert_array_equal(samples, expected)


def test_a_device_assigned_minutes_after_it_was_switched_on_is_analysed(
    mitdb_folder, device, eager_celery, django_capture_on_commit_callbacks, settings
):
    """A session whose first stored chunk begins 5 minutes in (docs/device-protocol.md: the
    chunks sent before the device was assigned were refused): the samples before it never
    come, and once that gap is given up the analysis starts there. It stalled at sample 0
    for good: the gap was wider than one round (STREAM_MAX_ROUND_S, 120 s)."""
    settings.DEVICE_GAP_WAIT_S = 0.0
    adc, fs_hz = mitdb_adc(mitdb_folder, "100", seconds=30)
    offset = round(300 * fs_hz)
    chunks = random_chunks(adc, fs_hz, np.random.default_rng(6), max_s=1.0)
    for chunk in chunks:
        chunk.first_sample += offset
        chunk.seq += 300
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    assert recording.analysis_cursor == offset + len(adc)
    close(recording, django_capture_on_commit_callbacks)  # the last beats come at the end
    samples, _ = stored_beats(recording)
    to_mv = (adc.astype(np.float64) - MITDB_BASELINE) / MITDB_GAIN
    np.testing.assert_array_equal(samples, analyze_signal(to_mv, fs_hz).r_peaks + offset)


def test_an_unreadable_saved_state_restarts_the_analysis_instead_of_stopping_it(
    mitdb_folder, device, eager_celery, django_capture_on_commit_callbacks, caplog
):
    """A saved state that cannot be loaded (damaged, or from a version this one cannot read)
    starts a new stretch at the cursor: the analysis goes on. Every round used to raise, and
    the recording got no beat and no alarm any more."""
    adc, fs_hz = mitdb_adc(mitdb_folder, "100", seconds=60)
    chunks = random_chunks(adc, fs_hz, np.random.default_rng(7), max_s=1.0)
    half = len(chunks) // 2
    for chunk in chunks[:half]:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    assert recording.beats.filter(provisional=True).exists()
    cursor = recording.analysis_cursor
    Recording.objects.filter(pk=recording.pk).update(stream_state=b"not a state")
    for chunk in chunks[half:]:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording.refresh_from_db()
    assert recording.analysis_cursor == len(adc)
    assert "the saved analysis state cannot be read" in caplog.text
    close(recording, django_capture_on_commit_callbacks)
    samples, _ = stored_beats(recording)  # indices without a hole
    assert not recording.beats.filter(provisional=True).exists()
    # the new stretch, from the cursor at the restart, has its beats as one offline pass
    to_mv = (adc[cursor:].astype(np.float64) - MITDB_BASELINE) / MITDB_GAIN
    after = analyze_signal(to_mv, fs_hz).r_peaks + cursor
    np.testing.assert_array_equal(samples[samples >= cursor], after)
