"""Leads-off spans after the fact: the review page, the exports, the recording's summary and
the live status of a recording whose session was replaced.

A chunk the device sent with ``lead_off`` is stored as sent and not analysed as ECG
(tests/test_leads_off.py). Until 2026-12-07 everything that reads the stored recording
afterwards took those samples for ECG: the review page drew them like any others, the WFDB
and CSV exports did not mark them (re-analysing an export found an asystole there), the
recording's summary counted the interval across a one-chunk span as an RR interval, and the
live status read the device's lead state, which a late chunk of a replaced session could set
(docs/review.md, docs/architecture.md "Leads off").
"""

import csv
import io
import zipfile

import numpy as np
import pytest
import wfdb
from django.db import transaction
from django.utils import timezone

from monitoring import live
from monitoring.alarms import technical_conditions
from monitoring.ingest import ingest_chunk
from monitoring.models import AnalysisStatus, Beat, Recording, SampleChunk
from monitoring.recordings import analysed_stretches, lead_off_spans
from monitoring.review import events, signal_window
from tests.test_device_ingest import make_chunk
from tests.test_leads_off import device_chunks, sinus_with_leads_off

pytestmark = pytest.mark.django_db

FS_HZ = 250.0
N_SAMPLES = 2500  # ten 1-s chunks
# chunks 3 and 4 (samples 750-1250) and chunk 8 (2000-2250) were sent with the leads off;
# samples 1500-1750 (chunk 6) never arrived
LEADS_OFF = [[750, 1250], [2000, 2250]]
GAP = (1500, 1750)


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


@pytest.fixture
def flagged_recording(recording, rng):
    """The conftest recording (250 Hz, 200 ADC/mV, lead II) in 1-s chunks: two leads-off
    spans (one of two chunks, one of one), a gap, and a beat every 0.8 s outside them."""
    adc = rng.integers(-300, 300, size=N_SAMPLES).astype(np.int16)
    for seq, first in enumerate(range(0, N_SAMPLES, 250)):
        if first == GAP[0]:
            continue
        chunk = SampleChunk.from_samples(recording, seq, first, adc[first : first + 250])
        chunk.lead_off = any(lo <= first < hi for lo, hi in LEADS_OFF)
        chunk.save()
    recording.test_adc = adc
    return recording


def cspk_marks(annotation) -> list[tuple]:
    """(sample, symbol, subtype, aux_note) of each annotation read back by wfdb.rdann."""
    fields = (annotation.sample.tolist(), annotation.symbol, annotation.subtype.tolist())
    return list(zip(*fields, annotation.aux_note, strict=True))


def in_any(sample, spans):
    return any(lo <= sample < hi for lo, hi in spans)


# --- 1. The review page -----------------------------------------------------------------


def test_the_spans_are_merged_chunk_by_chunk_and_a_gap_ends_a_stretch(flagged_recording):
    assert lead_off_spans(flagged_recording) == LEADS_OFF
    # a window: clipped to it, the chunk that starts before it included
    assert lead_off_spans(flagged_recording, 1000, 2100) == [[1000, 1250], [2000, 2100]]
    assert lead_off_spans(flagged_recording, 1250, 2000) == []
    assert lead_off_spans(flagged_recording, limit=1) == [LEADS_OFF[0]]
    # what the analysis reads as one: cut at the spans and at the gap
    assert analysed_stretches(flagged_recording) == [
        (0, 750),
        (1250, 1500),
        (1750, 2000),
        (2250, 2500),
    ]


def test_a_signal_window_says_where_its_leads_off_samples_are(api, flagged_recording):
    """In sample ranges clipped to the window, for a window of samples and for one of
    min/max bins; the samples themselves are as the device sent them."""
    pk = flagged_recording.pk
    response = api.get(f"/api/recordings/{pk}/signal/?start_s=2&length_s=4")
    assert response.status_code == 200
    window = response.json()
    assert (window["start_sample"], window["end_sample"]) == (500, 1500)
    assert window["leads_off"] == [[750, 1250]]
    # drawn as sent, not blanked: they are no ECG, but they are what the device measured
    sent_mv = flagged_recording.test_adc[750:1250] / 200.0
    np.testing.assert_allclose(window["values"][250:750], sent_mv, atol=1e-4)

    binned = signal_window(flagged_recording, 0, 10, 100)
    assert binned["step"] > 1 and binned["leads_off"] == LEADS_OFF
    assert signal_window(flagged_recording, 0, 2)["leads_off"] == []
    # a window that starts inside a span: the chunk before it reaches in
    assert signal_window(flagged_recording, 8.5, 1)["leads_off"] == [[2125, 2250]]
    assert signal_window(flagged_recording, 9.0, 1)["leads_off"] == []


def test_the_overview_and_the_events_list_the_leads_off_spans(api, flagged_recording):
    page = api.get(f"/recordings/{flagged_recording.pk}/review/")
    assert page.status_code == 200
    assert page.context["overview"]["leads_off_s"] == [[3.0, 5.0], [8.0, 9.0]]
    assert "leads off 2" in page.content.decode()  # the counts line under the trace

    after = events(flagged_recording, "leads_off", after_s=0, limit=10)
    assert [(e["sample"], e["end_sample"], e["time_s"], e["end_s"]) for e in after] == [
        (750, 1250, 3.0, 5.0),
        (2000, 2250, 8.0, 9.0),
    ]
    before = api.get(
        f"/api/recordings/{flagged_recording.pk}/events/?kind=leads_off&before_s=8"
    ).json()
    assert [e["sample"] for e in before["events"]] == [750]


# --- 2. The exports ---------------------------------------------------------------------


def test_the_wfdb_export_marks_leads_off_as_unreadable_signal(api, flagged_recording, tmp_path):
    """As MIT-BIH marks unreadable signal: "~" with subtype -1 at the span's first sample, "~"
    with subtype 0 one past its last; the samples are written as sent. A recording with no
    beat or episode gets a .cspk for them."""
    name = f"recording-{flagged_recording.pk}"
    response = api.get(f"/api/recordings/{flagged_recording.pk}/export.zip?format=wfdb")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == [f"{name}.cspk", f"{name}.dat", f"{name}.hea"]
        archive.extractall(tmp_path)
    record = wfdb.rdrecord(str(tmp_path / name), physical=False)
    stored = [i for i in range(N_SAMPLES) if not GAP[0] <= i < GAP[1]]
    np.testing.assert_array_equal(record.d_signal[stored, 0], flagged_recording.test_adc[stored])

    ours = wfdb.rdann(str(tmp_path / name), "cspk")
    marks = cspk_marks(ours)
    assert marks == [
        (750, "~", -1, "leads off"),
        (1250, "~", 0, ""),
        (2000, "~", -1, "leads off"),
        (2250, "~", 0, ""),
    ]


def test_a_span_at_the_end_and_beside_beats_and_rhythm(api, flagged_recording, tmp_path):
    """A span that lasts to the record's end has no "clean" mark after it; a noise mark sorts
    before a rhythm change and a beat at the same sample."""
    last = SampleChunk.from_samples(flagged_recording, 10, N_SAMPLES, np.zeros(250, np.int16))
    last.lead_off = True
    last.save()
    Beat.objects.create(
        recording=flagged_recording,
        index=0,
        sample=1250,
        label="N",
        confidence=0.9,
        probabilities={"N": 0.9, "S": 0.0, "V": 0.1, "F": 0.0, "Q": 0.0},
    )
    flagged_recording.episodes.create(kind="AF", start_s=5.0, end_s=6.0)
    name = f"recording-{flagged_recording.pk}"
    response = api.get(f"/api/recordings/{flagged_recording.pk}/export.zip?format=wfdb")
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path)
    ours = wfdb.rdann(str(tmp_path / name), "cspk")
    marks = cspk_marks(ours)
    assert marks == [
        (750, "~", -1, "leads off"),
        (1250, "~", 0, ""),
        (1250, "+", 0, "(AFIB"),
        (1250, "N", 0, ""),
        (1500, "+", 0, "(N"),
        (2000, "~", -1, "leads off"),
        (2250, "~", 0, ""),
        (2500, "~", -1, "leads off"),
    ]


def test_the_csv_export_has_a_lead_off_column_after_the_leads(api, flagged_recording):
    """1 on the rows of a leads-off chunk, 0 on the others, blank in a gap (as the lead
    cells); the columns before it are unchanged, in the streamed CSV and in the zip's."""
    response = api.get(f"/api/recordings/{flagged_recording.pk}/export.csv")
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["time_s", "sample", "II_mv", "lead_off"]
    body = rows[1:]
    assert len(body) == N_SAMPLES
    for sample, row in enumerate(body):
        if GAP[0] <= sample < GAP[1]:
            assert row[2:] == ["", ""]
        else:
            assert row[3] == ("1" if in_any(sample, LEADS_OFF) else "0"), sample
            assert round(float(row[2]) * 200) == flagged_recording.test_adc[sample]
    by_name = list(csv.DictReader(io.StringIO(text)))
    assert by_name[800]["lead_off"] == "1" and by_name[700]["lead_off"] == "0"

    name = f"recording-{flagged_recording.pk}"
    response = api.get(f"/api/recordings/{flagged_recording.pk}/export.zip?format=csv")
    with zipfile.ZipFile(io.BytesIO(response.getvalue())) as archive:
        assert archive.read(f"{name}-signal.csv").decode() == text


# --- 3. The recording's summary ---------------------------------------------------------


def test_the_summary_heart_rate_counts_no_interval_across_a_one_chunk_leads_off_span(
    api, device, eager_celery, django_capture_on_commit_callbacks, one_torch_thread
):
    """72 bpm with one 1-s leads-off chunk: the beats on either side are about 2 s apart,
    under MAX_RR_S, and that is no RR interval. The page's heart rate stays 72 (the 8-beat
    running mean's minimum read 57.6, the mean 69.9, when it was counted)."""
    off_s, end_s = 30.0, 60.0
    spans_s = [(off_s, off_s + 1.0)]
    signal_mv, _ = sinus_with_leads_off(spans_s, end_s)
    for chunk in device_chunks(signal_mv, spans_s):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            ingest_chunk(device, chunk)
    recording = Recording.objects.get()
    assert recording.analysis_status == AnalysisStatus.DONE
    beats_s = np.array(recording.beats.order_by("sample").values_list("sample", flat=True)) / FS_HZ
    across = beats_s[1:][(beats_s[:-1] < off_s) & (beats_s[1:] >= off_s + 1.0)]
    assert len(across) == 1  # the beats on both sides were found: one interval spans it
    bridged_s = across[0] - beats_s[beats_s < off_s][-1]
    assert 1.0 < bridged_s < live.MAX_RR_S

    page = api.get(f"/recordings/{recording.pk}/")
    assert page.status_code == 200
    rate = page.context["summary"]["heart_rate_bpm"]
    assert rate["mean"] == pytest.approx(72.0, abs=1.0)
    assert rate["min"] >= 70.0 and rate["max"] <= 74.0, rate
    assert f"{rate['min']:.0f}–{rate['max']:.0f}" in page.content.decode()


# --- 4. The live status -----------------------------------------------------------------


def test_a_late_chunk_of_a_replaced_session_sets_neither_the_status_nor_the_alarm(device):
    """The device restarts (a new session, same patient) with its leads on; then a chunk of
    the old session sampled with the leads off arrives late (it is stored in the old
    recording, which stays closed). The status of the patient's current recording follows
    that recording's newest chunk: "live", not "leads_off"."""

    def deliver(chunk):
        with transaction.atomic():
            ingest_chunk(device, chunk)

    for seq in range(3):
        deliver(make_chunk(seq=seq, session="01d5e551"))
    deliver(make_chunk(seq=0, session="4e115e55"))
    deliver(make_chunk(seq=3, session="01d5e551", lead_off=True))
    old = Recording.objects.get(session="01d5e551")
    new = Recording.objects.get(session="4e115e55")
    assert old.status == Recording.Status.CLOSED and old.chunks.count() == 4
    assert live.current_recording(device.patient_id) == new
    status = live.status_message(new, device.patient_id)
    assert status["recording"] == new.pk and status["signal"] == "live"
    # nor does it set the device's state, which the technical leads-off alarm reads
    device.refresh_from_db()
    assert device.lead_off is False
    # device offline, leads off and battery low (the chunks report no charge): none
    assert [c.active for c in technical_conditions(new, timezone.now())] == [False] * 3

    # and the new recording's own leads-off chunk is "leads_off" at once
    deliver(make_chunk(seq=1, session="4e115e55", lead_off=True))
    assert live.status_message(new, device.patient_id)["signal"] == "leads_off"
    deliver(make_chunk(seq=2, session="4e115e55"))
    assert live.status_message(new, device.patient_id)["signal"] == "live"
