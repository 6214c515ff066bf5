"""While the device reports leads off, its samples are no ECG: they are not analysed as ECG.

An exploratory tester streamed 35 s of chunks with ``lead_off: true`` and a flat signal. The
technical "Leads off" alarm came, but the live pages kept the heart rate and rhythm of the
beats before it over the flat trace, and when the leads were back on a critical "Pause 34.6 s"
and a low heart rate were raised and e-mailed: the analysis read the leads-off span as an
asystole. Each chunk now keeps its ``lead_off`` flag (``SampleChunk.lead_off``), the streaming
analysis treats a leads-off span as a gap that is final at once (the stretch before it ends
there, a new one starts when the leads are back on), and the live status says "leads_off",
with no heart rate or rhythm (docs/architecture.md, "Streaming analysis"; docs/dashboard.md,
"Leads off").
"""

import numpy as np
import pytest
from django.db import transaction

from inference.synthetic import _render
from monitoring import consumers, live, streaming
from monitoring.ingest import ingest_chunk
from monitoring.models import Alarm, AlarmKind, Beat, Recording, SampleChunk
from monitoring.protocol import Chunk
from monitoring.recordings import samples_mv

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_torch_thread")]

FS_HZ = 250.0
GAIN_ADC_PER_MV = 200.0
HR_BPM = 72.0
# An R peak rendered this far from a span's edge must have its stored beat (a stretch's first
# beats wait for the QRS detector to learn the signal; its last one may fall at the edge).
EDGE_S = 2.5
# ...within this much of the rendered R peak.
BEAT_TOLERANCE_S = 0.05


def sinus_with_leads_off(spans_s, end_s, leads_off_noise_mv=0.0, seed=3):
    """Sinus rhythm at HR_BPM over ``[0, end_s)`` except in the leads-off ``spans_s``
    (``(start, end)`` pairs), which hold a flat line, or white noise of ``leads_off_noise_mv``
    (an electrode off often gives noise); the signal (mV, 5-uV steps) and the R peaks (s)."""
    rr_s = 60.0 / HR_BPM
    times_s = [
        t
        for t in np.arange(0.3, end_s - 0.3, rr_s)
        if not any(start - 0.3 <= t < end + 0.3 for start, end in spans_s)
    ]
    rng = np.random.default_rng(seed)
    signal_mv, _ = _render(times_s, ["N"] * len(times_s), end_s, FS_HZ, [], None, rng)
    for start, end in spans_s:
        lo, hi = round(start * FS_HZ), round(end * FS_HZ)
        signal_mv[lo:hi] = rng.normal(0.0, leads_off_noise_mv, hi - lo) if leads_off_noise_mv else 0
    return np.round(signal_mv * 200.0) / 200.0, np.array(times_s)


def device_chunks(signal_mv, spans_s, chunk_s=1.0, session="1ead0ff0"):
    """The signal as a device sends it, in ``chunk_s`` chunks, each flagged ``lead_off`` when
    it lies in a leads-off span."""
    adc = np.clip(np.round(signal_mv * GAIN_ADC_PER_MV), -32768, 32767).astype(np.int16)
    n = round(chunk_s * FS_HZ)
    chunks = []
    for seq, start in enumerate(range(0, len(adc), n)):
        start_s = start / FS_HZ
        chunks.append(
            Chunk(
                seq=seq,
                first_sample=start,
                fs_hz=FS_HZ,
                gain_adc_per_mv=GAIN_ADC_PER_MV,
                n_channels=1,
                samples=adc[start : start + n, np.newaxis],
                session=session,
                lead_off=any(lo <= start_s < hi for lo, hi in spans_s),
            )
        )
    return chunks


def deliver(device, chunk, capture):
    """One chunk through the ingest path, committing and running what the commit triggers
    (the streaming analysis and the alarm rules, eagerly)."""
    with capture(execute=True):
        with transaction.atomic():
            return ingest_chunk(device, chunk)


def beat_times_s(recording) -> np.ndarray:
    samples = Beat.objects.filter(recording=recording).order_by("index").values_list("sample")
    return np.array([sample for (sample,) in samples], dtype=np.float64) / FS_HZ


def assert_beats_found(stored_s, rendered_s, spans_s, end_s):
    """Every rendered R peak away from the spans' edges has its stored beat, and no beat lies
    inside a leads-off span."""
    edges = [0.0, end_s] + [edge for span in spans_s for edge in span]
    for r_s in rendered_s:
        if min(abs(r_s - edge) for edge in edges) < EDGE_S:
            continue
        assert np.min(np.abs(stored_s - r_s)) <= BEAT_TOLERANCE_S, f"no beat at {r_s:.2f} s"
    for start, end in spans_s:
        inside = stored_s[(stored_s >= start) & (stored_s < end)]
        assert len(inside) == 0, f"beats inside the leads-off span {start}-{end} s: {inside}"


def leads_off_alarm(patient):
    return Alarm.objects.filter(patient=patient, kind=AlarmKind.LEADS_OFF).order_by("pk").last()


def test_leads_off_is_no_pause_no_rate_and_no_rhythm(
    device, eager_celery, django_capture_on_commit_callbacks
):
    """The tester's case through the ingest path in 1-s chunks: 30 s of sinus, 35 s of flat
    leads-off chunks, 30 s of sinus (each sinus span more than the 32 beats a stretch needs to
    emit any; the tester sent 40 s). No PAUSE episode and no pause or low-rate alarm over the
    leads-off span; during it the status says "leads_off", with no heart rate or rhythm, and
    just after it gives no rate from the beats before it; the beats on both sides are found;
    the technical leads-off alarm is raised and resolved."""
    off_s, on_s, end_s = 30.0, 65.0, 95.0
    spans_s = [(off_s, on_s)]
    signal_mv, rendered_s = sinus_with_leads_off(spans_s, end_s)
    first_on_chunk_seen = False
    for chunk in device_chunks(signal_mv, spans_s):
        deliver(device, chunk, django_capture_on_commit_callbacks)
        recording = Recording.objects.get()
        status = live.status_message(recording, device.patient_id)
        start_s, now_s = chunk.first_sample / FS_HZ, chunk.end_sample / FS_HZ
        if 20.0 <= now_s <= off_s:  # sinus, enough beats for a rate
            assert status["signal"] == "live"
            assert status["hr_bpm"] == pytest.approx(HR_BPM, abs=2)
            assert status["rhythm"] is not None
        if chunk.lead_off:
            assert status["signal"] == "leads_off"
            assert status["hr_bpm"] is None and status["rhythm"] is None
            alarm = leads_off_alarm(device.patient)
            assert alarm is not None and alarm.resolved_at is None
            assert alarm.priority == "technical"
        elif start_s >= on_s and not first_on_chunk_seen:
            first_on_chunk_seen = True
            assert status["signal"] == "live"
            # a new stretch from the leads back on, with no beat yet: no rate from before
            assert recording.stream_start_sample == round(on_s * FS_HZ)
            assert status["hr_bpm"] is None
            assert leads_off_alarm(device.patient).resolved_at is not None
        if now_s >= on_s + 20.0:
            assert status["hr_bpm"] == pytest.approx(HR_BPM, abs=2)
        assert not recording.episodes.filter(kind="PAUSE").exists(), f"a pause at {now_s} s"
    recording = Recording.objects.get()
    kinds = set(Alarm.objects.filter(patient=device.patient).values_list("kind", flat=True))
    assert AlarmKind.PAUSE not in kinds and AlarmKind.HR_LOW not in kinds, kinds
    assert AlarmKind.LEADS_OFF in kinds
    assert not Alarm.objects.filter(kind=AlarmKind.LEADS_OFF, resolved_at__isnull=True).exists()
    assert not recording.episodes.exists(), list(recording.episodes.values("kind", "start_s"))
    assert_beats_found(beat_times_s(recording), rendered_s, spans_s, end_s)
    # the leads-off samples are kept as the device sent them (the review and the exports
    # show them), and marked
    lo, hi = round(off_s * FS_HZ), round(on_s * FS_HZ)
    stored = samples_mv(recording, lo, hi)
    np.testing.assert_array_equal(stored, signal_mv[lo:hi])
    flags = dict(recording.chunks.values_list("first_sample", "lead_off"))
    assert all(flags[first] == (lo <= first < hi) for first in flags)


def test_the_live_messages_say_which_samples_were_sent_with_the_leads_off(
    device, eager_celery, django_capture_on_commit_callbacks
):
    """The samples and the station's waves of a leads-off chunk say so, live and in a
    backlog, so that the pages show "Leads off" over that trace at once."""
    spans_s = [(3.0, 5.0)]
    signal_mv, _ = sinus_with_leads_off(spans_s, 6.0)
    for chunk in device_chunks(signal_mv, spans_s):
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    messages = consumers.backlog_samples(recording, since_s=6.0)
    assert [(m["first_sample"], m["lead_off"]) for m in messages] == [
        (round(s * FS_HZ), 3.0 <= s < 5.0) for s in range(6)
    ]
    waves = [consumers.wave_message(device.patient_id, message) for message in messages]
    assert [wave["lead_off"] for wave in waves] == [False] * 3 + [True] * 2 + [False]
    chunk = recording.chunks.get(seq=4)
    live_message = live.samples_message(recording, chunk.first_sample, chunk.samples(), True)
    assert live_message["lead_off"] is True
    assert live.samples_message(recording, 0, chunk.samples())["lead_off"] is False


def test_a_recording_that_starts_with_the_leads_off(
    device, eager_celery, django_capture_on_commit_callbacks
):
    """The electrodes not yet on when the device starts: its first 8 s are leads off. No beat
    or episode there, the status says so, and the analysis starts when the leads are on."""
    on_s, end_s = 8.0, 48.0
    spans_s = [(0.0, on_s)]
    signal_mv, rendered_s = sinus_with_leads_off(spans_s, end_s, leads_off_noise_mv=1.0)
    for chunk in device_chunks(signal_mv, spans_s):
        deliver(device, chunk, django_capture_on_commit_callbacks)
        recording = Recording.objects.get()
        status = live.status_message(recording, device.patient_id)
        if chunk.lead_off:
            assert status["signal"] == "leads_off" and status["hr_bpm"] is None
            assert recording.analysis_cursor == chunk.end_sample
            assert not recording.beats.exists()
        else:
            assert status["signal"] == "live"
            assert recording.stream_start_sample == round(on_s * FS_HZ)
    recording = Recording.objects.get()
    assert not recording.episodes.exclude(kind__in=["BRADY", "TACHY"]).exists()
    assert_beats_found(beat_times_s(recording), rendered_s, spans_s, end_s)
    assert live.status_message(recording, device.patient_id)["hr_bpm"] == pytest.approx(
        HR_BPM, abs=2
    )


def test_leads_off_for_one_chunk_only(device, eager_celery, django_capture_on_commit_callbacks):
    """One noisy leads-off chunk (an electrode that lost contact for a second) between two
    runs of sinus: no beat is found in its noise, the stretch ends before it and a new one
    starts after it, and the beats on both sides are found."""
    off_s, end_s = 30.0, 60.0
    spans_s = [(off_s, off_s + 1.0)]
    signal_mv, rendered_s = sinus_with_leads_off(spans_s, end_s, leads_off_noise_mv=1.5)
    stretch_starts = set()
    for chunk in device_chunks(signal_mv, spans_s):
        deliver(device, chunk, django_capture_on_commit_callbacks)
        recording = Recording.objects.get()
        stretch_starts.add(recording.stream_start_sample)
        if chunk.lead_off:
            assert live.status_message(recording, device.patient_id)["signal"] == "leads_off"
    recording = Recording.objects.get()
    assert_beats_found(beat_times_s(recording), rendered_s, spans_s, end_s)
    assert not recording.episodes.filter(kind__in=["PAUSE", "VF", "VT"]).exists()
    assert stretch_starts == {0, round((off_s + 1.0) * FS_HZ)}


def test_a_replayed_chunk_keeps_its_lead_off_flag(
    client, device, eager_celery, django_capture_on_commit_callbacks
):
    """A chunk sent again (its acknowledgment lost) is recognised by its seq and samples and
    changes nothing: the flag it was stored with stays, whatever the copy says."""
    spans_s = [(2.0, 3.0)]
    signal_mv, _ = sinus_with_leads_off(spans_s, 5.0)
    chunks = device_chunks(signal_mv, spans_s)
    for chunk in chunks:
        deliver(device, chunk, django_capture_on_commit_callbacks)
    for seq, flag in ((2, False), (1, True), (2, True)):
        original = chunks[seq]
        again = Chunk(**{**original.__dict__, "lead_off": flag})
        ack = deliver(device, again, django_capture_on_commit_callbacks)
        assert ack.stored is False
    flags = dict(SampleChunk.objects.values_list("seq", "lead_off"))
    assert flags == {0: False, 1: False, 2: True, 3: False, 4: False}


def test_a_backlog_with_a_long_leads_off_span_in_short_rounds(
    device, django_capture_on_commit_callbacks, settings
):
    """Stored first, analysed after (a worker that was away) in rounds of 4 s: a leads-off
    span longer than a round is skipped round after round, and the result is the live one's:
    beats on both sides, no pause, and the new stretch starts where the leads came back on."""
    settings.STREAM_MAX_ROUND_S = 4.0
    off_s, on_s, end_s = 20.0, 32.0, 52.0
    spans_s = [(off_s, on_s)]
    signal_mv, rendered_s = sinus_with_leads_off(spans_s, end_s)
    for chunk in device_chunks(signal_mv, spans_s, chunk_s=0.5):
        with transaction.atomic():
            ingest_chunk(device, chunk)  # no commit hooks run: nothing is analysed yet
    recording = Recording.objects.get()
    assert recording.analysis_cursor == 0
    streaming.run_stream_analysis(recording.pk)
    recording.refresh_from_db()
    assert not recording.episodes.filter(kind="PAUSE").exists()
    assert not Alarm.objects.filter(kind__in=[AlarmKind.PAUSE, AlarmKind.HR_LOW]).exists()
    assert_beats_found(beat_times_s(recording), rendered_s, spans_s, end_s)
    assert recording.analysis_cursor == recording.end_sample == round(end_s * FS_HZ)
    assert recording.stream_start_sample == round(on_s * FS_HZ)


def test_the_station_hello_reads_every_tiles_lead_state_in_one_query(clinician):
    """The hello's statuses say "leads_off" for the tiles whose recording's newest chunk says
    so (an older chunk with the leads off does not count), "live" for the others, and read
    the lead states in one query however many tiles there are."""
    from django.utils import timezone

    from monitoring.models import Device, Patient
    from tests.test_station_queries import hello_queries

    patients = []
    for number in range(6):
        patient = Patient.objects.create(mrn=f"MRN-L{number}", name=f"Patient {number}")
        patient.clinicians.add(clinician)
        device = Device.objects.create(serial=f"DEV-L{number}", patient=patient)
        recording = Recording.objects.create(
            patient=patient,
            device=device,
            sampling_rate_hz=FS_HZ,
            gain_adc_per_mv=GAIN_ADC_PER_MV,
            lead_names=["II"],
            last_chunk_at=timezone.now(),
        )
        for seq, lead_off in enumerate((number % 2 == 1, number % 2 == 0)):
            chunk = SampleChunk.from_samples(recording, seq, seq * 250, np.zeros(250, np.int16))
            chunk.lead_off = lead_off
            chunk.save()
        patients.append(patient.pk)
    two, six = hello_queries(patients[:2]), hello_queries(patients)
    assert len(six) == len(two), "\n".join(sql[:90] for sql in six)
    assert sum('"lead_off"' in sql for sql in six) == 1
    tiles, _ = consumers.station_backlog(patients, set(), 0.0)
    assert [tile["signal"] for tile in tiles] == ["leads_off", "live"] * 3
    assert all(tile["hr_bpm"] is None and tile["rhythm"] is None for tile in tiles)
