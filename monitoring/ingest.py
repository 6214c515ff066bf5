"""What a device's chunk means for its recording: open, check, store once, acknowledge.

``ingest_chunk(device, chunk)`` is the whole server side of ``POST /api/device/v1/chunks/``
after the body is parsed (``monitoring.protocol``): it finds or opens the recording of the
chunk's session, refuses a chunk that contradicts it, stores a new chunk or recognises a
re-sent one, keeps the recording's running totals, and (after the commit) asks for the
streaming analysis. Everything happens in one transaction: a refused chunk leaves nothing.
The rules are in ``docs/device-protocol.md``.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from inference.qrs import MAX_FS_HZ, MIN_FS_HZ
from monitoring.models import Device, Recording, SampleChunk, parse_lead_names
from monitoring.protocol import MAX_CHUNK_FRAMES, Chunk
from monitoring.samples import encode_int16

logger = logging.getLogger(__name__)

# Two chunks of one recording agree on the sampling rate when they differ by less than this
# (the binary body carries it as float32).
FS_TOLERANCE_HZ = 1e-3
GAIN_RELATIVE_TOLERANCE = 1e-6
# how much faster than its declared rate a device's sampling clock may run (check_not_ahead_of_time)
FS_CLOCK_FAST_SHARE = 0.05
# The furthest back the chunk that opens a recording can put its sample 0 (sample_zero_at). A
# device with session ids is refused far sooner (its first chunk lies within
# DEVICE_MAX_AHEAD_S of sample 0); this bounds a client without them, which counts from where
# it likes: a sample index of 2**53 would otherwise date its recording before year 1. Its
# chunks may then reach no further than check_not_ahead_of_time allows from there.
MAX_SAMPLE_ZERO_AGE_S = 24 * 3600.0
# How much earlier than the device's assignment a chunk that opens a recording may date its
# first sample (check_sampled_after_assignment): its age is measured before the request
# leaves, and the chunk's length counts in the device's sampling clock, which may run slow.
# The firmware starts a session after a move with the first sample taken after the server's
# answer, so its chunks lie after the assignment; a backlog from the previous stay lies at
# least the time the device took to learn of the move before it.
ASSIGNMENT_TOLERANCE_S = 2.0


# The machine-readable ``code`` of a refusal that the device resolves by starting a new
# session (a new session id, seq and first_sample from 0) and sending the chunk there: its
# session's recording was closed by the device, or belongs to a patient the device no longer
# records (the device was moved). Other refusals carry no code.
NEW_SESSION = "new_session"
# What a NEW_SESSION refusal tells the device to do with the chunks it has not had acknowledged
# (``"backlog"`` in the answer, after ``code``): "drop" when they were sampled for another
# patient's stay (the device was moved, or the patient discharged), so that they do not open
# the next patient's recording; absent, the device resends them in the new session (the same
# stay goes on, or its own close ended the session).
DROP_BACKLOG = "drop"
# Who closes a recording for good: its session can never go on (a close by silence is undone
# by a late chunk of it; a late chunk of a session closed by a newer one is stored, and the
# recording stays closed; the device's own close makes either final).
FINAL_CLOSES = (Recording.ClosedBy.DEVICE, Recording.ClosedBy.DISCHARGE)


class IngestError(Exception):
    """A chunk refused for what it means (not its form), with the HTTP status to answer and,
    where the device can act on it, a machine-readable ``code`` (``NEW_SESSION``)."""

    def __init__(
        self, message: str, status: int, code: str | None = None, backlog: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.backlog = backlog

    def body(self) -> dict:
        """The answer's JSON body: ``{"detail": ...}``, with ``"code"`` (and ``"backlog"``)
        first when there is one, so that a device reading only the start of the body (the
        firmware keeps 200 bytes) still sees them."""
        if self.code is None:
            return {"detail": str(self)}
        if self.backlog is None:
            return {"code": self.code, "detail": str(self)}
        return {"code": self.code, "backlog": self.backlog, "detail": str(self)}


@dataclass
class Ack:
    recording: int
    seq: int
    stored: bool  # False: the chunk was already stored (a re-send), acknowledged again
    next_seq: int
    end_sample: int
    missing_samples: int

    def to_dict(self) -> dict:
        return {
            "recording": self.recording,
            "seq": self.seq,
            "stored": self.stored,
            "next_seq": self.next_seq,
            "end_sample": self.end_sample,
            "missing_samples": self.missing_samples,
        }


def lock_device(device: Device) -> Device:
    """The device's row, locked for this transaction; ``IngestError`` 401 when it is gone.

    The token was checked when the request was authenticated; a device deleted since (by an
    admin, while its request was in flight) has no token any more, so the answer is what an
    unknown token gets (docs/device-protocol.md), not the 500 of ``.get()``'s DoesNotExist.
    """
    locked = Device.objects.select_for_update().filter(pk=device.pk).first()
    if locked is None:
        raise IngestError(
            f"device {device.serial} no longer exists (it was deleted): its token is no "
            "longer valid",
            401,
        )
    return locked


def ingest_chunk(device: Device, chunk: Chunk) -> Ack:
    """Store ``chunk`` for ``device`` (once) and return the acknowledgment.

    Raises ``IngestError`` (401, 403, 404, 409, 400) for a chunk that cannot be accepted;
    nothing is stored then (401: the device was deleted during the request). A 409 with
    ``code`` ``NEW_SESSION`` asks the device to send it in a new session; any other 409 is a
    conflict (a seq or a sample range stored with other samples).
    """
    check_fs_hz(chunk.fs_hz)
    now = timezone.now()
    with transaction.atomic():
        # One device's chunks are taken one at a time: two first chunks of a new session
        # arriving together must open one recording, not two.
        device = lock_device(device)
        if device.patient_id is None:
            raise IngestError(
                f"device {device.serial} is not assigned to a patient; assign it before streaming",
                403,
            )
        recording = _recording_for(device, chunk, now)
        check_agrees(recording, chunk)
        check_not_ahead_of_time(recording, chunk, now)
        newest_before = recording.end_sample
        stored = _store(recording, chunk)
        recording.last_chunk_at = now
        if recording.closed_by == Recording.ClosedBy.SILENCE:
            # the device was offline longer than the timeout and delivers its buffer now. Not
            # a recording closed by a newer session: a late or re-sent chunk of it (a request
            # still in flight when the device started anew) is stored, but the device streams
            # the new session, and the old one went live again beside it, for the silence
            # timeout, listed as live. A newer session also marks the device's recordings
            # closed by silence as replaced (open_recording): this one is the device's newest.
            # (Closed by the device or a discharge: refused above.)
            recording.status = Recording.Status.LIVE
            recording.closed_by = Recording.ClosedBy.OPEN
            recording.ended_at = None
        if stored:
            recording.stream_pending = True
        recording.save(
            update_fields=[
                "last_chunk_at",
                "status",
                "closed_by",
                "ended_at",
                "next_seq",
                "end_sample",
                "stored_samples",
                "stream_pending",
            ]
        )
        seen = {"last_seen_at": now}
        current = recording.status == Recording.Status.LIVE
        if stored and current and chunk.end_sample >= newest_before:
            # The device's state is what its newest chunk says: not a re-sent chunk, nor a
            # late one that fills in behind newer samples (sampled up to the buffer's 2
            # minutes ago, its lead-off flag would make the leads-off alarm flap), nor a late
            # chunk of a session the device has replaced (stored in that closed recording:
            # until 2026-12-07 its flag raised the leads-off alarm while the device streamed
            # its new session with the leads on).
            seen.update(battery_pct=chunk.battery_pct, lead_off=chunk.lead_off)
        Device.objects.filter(pk=device.pk).update(**seen)
        if stored:
            transaction.on_commit(lambda: after_commit(recording, chunk))
    return Ack(
        recording=recording.pk,
        seq=chunk.seq,
        stored=stored,
        next_seq=recording.next_seq,
        end_sample=recording.end_sample,
        missing_samples=recording.end_sample - recording.stored_samples,
    )


def check_fs_hz(fs_hz: float) -> None:
    if not MIN_FS_HZ <= fs_hz <= MAX_FS_HZ:
        raise IngestError(
            f"fs_hz {fs_hz:g} is outside {MIN_FS_HZ:g}-{MAX_FS_HZ:g} Hz, the rates the "
            "analysis accepts",
            400,
        )


def _recording_for(device: Device, chunk: Chunk, now) -> Recording:
    """The recording the chunk belongs to, opened if this is its session's first chunk."""
    # without the analyzer's state (about 120 kB, read and written by the analysis alone):
    # every chunk would otherwise fetch it for nothing
    live_or_closed = Recording.objects.select_for_update().defer("stream_state")
    if chunk.recording_id is not None:
        recording = live_or_closed.filter(pk=chunk.recording_id).first()
        if recording is None:
            raise IngestError(f"recording {chunk.recording_id} does not exist", 404)
        if recording.device_id != device.pk:
            raise IngestError(
                f"recording {chunk.recording_id} belongs to another device; a device can write "
                "only its own recordings",
                403,
            )
        if chunk.session and chunk.session != recording.session:
            # Which one did the device mean? Stored in the named recording, the chunk's seq
            # and samples counted in another session's numbering (next_seq mixed the two).
            opened_as = f"session {recording.session!r}" if recording.session else "no session"
            raise IngestError(
                f"the chunk names recording {recording.pk}, opened with {opened_as}, but "
                f"carries session {chunk.session!r}; send that recording's session, or none",
                400,
            )
    elif chunk.session:
        recording = live_or_closed.filter(device=device, session=chunk.session).first()
    else:
        # Without a session the device cannot be told to start a new one: after a move to
        # another patient its chunks go to a new recording of that patient.
        recording = (
            live_or_closed.filter(
                device=device, status=Recording.Status.LIVE, patient_id=device.patient_id
            )
            .order_by("-started_at", "-pk")
            .first()
        )
    if recording is not None:
        check_session_goes_on(recording, device)
        return recording
    check_sampled_after_assignment(device, chunk, now)
    return open_recording(device, chunk, now, started_at=sample_zero_at(chunk, now))


def last_sample_at(chunk: Chunk, now) -> datetime:
    """When the chunk's last sample was taken: ``age_ms`` before it arrived, or as it arrived
    for a chunk without one (a device sends as it samples)."""
    return now - timedelta(milliseconds=chunk.age_ms or 0)


def sample_zero_at(chunk: Chunk, now) -> datetime:
    """When sample 0 of the chunk's session was taken, for the chunk that opens its recording.

    The chunk's last sample was taken ``age_ms`` before it arrived, and sample 0
    ``end_sample / fs_hz`` seconds before that. A chunk without ``age_ms`` is taken as just
    sampled: when it had waited in the device's buffer (the firmware's boot before its Wi-Fi
    is up, a backlog sent oldest first), the start is late by that wait, at most the buffer's
    length (the firmware keeps 120 s). At most ``MAX_SAMPLE_ZERO_AGE_S`` back.

    Only the opening chunk dates the recording; later chunks' ages are not used (the start
    never moves, and the sample index places every later sample).
    """
    back_s = chunk.end_sample / chunk.fs_hz + (chunk.age_ms or 0) / 1000.0
    return now - timedelta(seconds=min(back_s, MAX_SAMPLE_ZERO_AGE_S))


def check_sampled_after_assignment(device: Device, chunk: Chunk, now) -> None:
    """``IngestError`` 409 ``NEW_SESSION`` with ``DROP_BACKLOG`` for a chunk that would open a
    recording of the device's patient with samples taken before the device was assigned to
    them (``Device.assigned_at``): a backlog of a session that had no recording yet when the
    device was moved (one started during a link outage), taken on the previous patient.

    Known only from the chunk's ``age_ms``: without it (older clients) the chunk opens the
    recording as before. A chunk without a session cannot be asked to start again and is not
    checked. The chunk's own first sample counts, not the session's sample 0: a device
    switched on before it was assigned (its first chunks refused with 403) opens its
    recording with a chunk sampled after the assignment, dated back from there.
    """
    if not chunk.session or chunk.age_ms is None or device.assigned_at is None:
        return
    first_sample_at = last_sample_at(chunk, now) - timedelta(seconds=chunk.n_frames / chunk.fs_hz)
    early_s = (device.assigned_at - first_sample_at).total_seconds()
    if early_s > ASSIGNMENT_TOLERANCE_S:
        raise IngestError(
            f"the chunk's first sample was taken {early_s:.0f} s before the device was "
            "assigned to its current patient" + backlog_note("that assignment"),
            409,
            NEW_SESSION,
            DROP_BACKLOG,
        )


def check_not_ahead_of_time(recording: Recording, chunk: Chunk, now) -> None:
    """``IngestError`` for samples the device cannot have taken yet.

    A device sends late what it could not send (the firmware buffers 120 s), never early.
    A session's first chunk must begin within ``DEVICE_MAX_AHEAD_S`` of sample 0; one further
    on (a device switched on before it was assigned, whose first chunks were refused) gets
    409 ``NEW_SESSION``, and the device resends it as sample 0 of a new session. Later chunks
    cannot reach further into the session than the time since its sample 0 (``started_at``:
    the opening chunk dates it, ``sample_zero_at``; an explicit open is sample 0), with 5 %
    for a sampling clock that runs fast, plus ``DEVICE_MAX_AHEAD_S`` (a start dated late by
    a buffered opening chunk, a replay faster than real time): 400. So a backlog whose oldest
    chunk opens the recording 530 s into the session is stored up to its newest chunk, and
    chunks sent in real time after an opening chunk 600 s in are never ahead. Without this
    bound one chunk at sample 2**53 made every later export of the recording try to fill a
    gap of that many samples.

    A chunk without a session id cannot be asked to start again (after a move its chunks go
    on in a new recording, from wherever it counts), so it gets no 409; but it is held to the
    same bound, its recording's opening chunk included: that chunk dates sample 0 at most
    ``MAX_SAMPLE_ZERO_AGE_S`` back, so a count more than about a day in (x 1.05, +
    ``DEVICE_MAX_AHEAD_S``) answers 400 instead of opening a recording whose review, export
    and analysis would span every sample from 0 up to it.
    """
    fs_hz = recording.sampling_rate_hz
    if chunk.session and recording.stored_samples == 0:  # this chunk opens the recording
        if chunk.first_sample > fs_hz * settings.DEVICE_MAX_AHEAD_S:
            raise IngestError(
                f"a session's first chunk must begin within {settings.DEVICE_MAX_AHEAD_S:g} s "
                f"of sample 0, not at sample {chunk.first_sample}; start a new session",
                409,
                NEW_SESSION,
            )
        return
    elapsed_s = max(0.0, (now - recording.started_at).total_seconds())
    latest_s = elapsed_s * (1 + FS_CLOCK_FAST_SHARE) + settings.DEVICE_MAX_AHEAD_S
    if chunk.end_sample > fs_hz * latest_s:
        reaches_s = chunk.end_sample / fs_hz
        if chunk.session:
            where = f"recording {recording.pk}"
            counted_from = "sample indices count from the session's first sample"
        else:
            # not named: it may be the recording this chunk opened, gone with the refusal
            where = "its recording"
            counted_from = (
                "without a session, sample indices count from the recording's sample 0, which "
                f"the chunk that opens a recording dates at most {MAX_SAMPLE_ZERO_AGE_S:g} s back"
            )
        raise IngestError(
            f"samples {chunk.first_sample}-{chunk.end_sample - 1} reach {reaches_s:.0f} s into "
            f"{where}, whose sample 0 was taken {elapsed_s:.0f} s ago: a device cannot be "
            f"more than {settings.DEVICE_MAX_AHEAD_S:g} s ahead ({counted_from})",
            400,
        )


def check_session_goes_on(recording: Recording, device: Device) -> None:
    """``IngestError`` 409 ``NEW_SESSION`` unless the device may go on writing ``recording``:
    not when the device now belongs to another patient, nor when the device closed it or the
    patient was discharged (final, unlike a close by silence, which a late chunk reopens).
    The patient is checked first: a session the device closed and then was moved is another
    patient's backlog all the same. A session older than the device's present assignment
    (``Device.assigned_at``: taken away and given back to the same patient) starts again
    too, dropping what it holds."""
    if recording.patient_id != device.patient_id:
        raise IngestError(
            f"recording {recording.pk} belongs to another patient than the device's "
            "current one" + backlog_note("the device was moved"),
            409,
            NEW_SESSION,
            DROP_BACKLOG,
        )
    if recording.closed_by in FINAL_CLOSES:
        # a readmitted patient's device starts a new recording, as one that ended its
        # session does (a recording closed by silence reopens: the same stay goes on)
        by_device = recording.closed_by == Recording.ClosedBy.DEVICE
        raise IngestError(
            f"recording {recording.pk} was closed by {'the device' if by_device else 'discharge'}"
            + ("; start a new session" if by_device else backlog_note("the stay ended")),
            409,
            NEW_SESSION,
            None if by_device else DROP_BACKLOG,
        )
    if device.assigned_at is not None and recording.created_at < device.assigned_at:
        # taken away and given back (A -> B -> A): the old session's recording is older than
        # B's, so the technical rules, which watch the patient's newest recording, watched
        # B's and this device went unwatched (a review of 2026-12-07). What it holds was
        # taken while it was away from the patient.
        raise IngestError(
            f"recording {recording.pk} began before the device was assigned to its patient "
            "again" + backlog_note("the device was assigned again"),
            409,
            NEW_SESSION,
            DROP_BACKLOG,
        )


def backlog_note(why: str) -> str:
    """The end of a refusal that drops the device's backlog: its unacknowledged samples were
    taken before {why}. Resent in the new session, an exploratory test's 26 s of one patient's
    ECG opened the next patient's recording and raised an HR alarm there."""
    return (
        f"; start a new session and drop the samples not yet acknowledged: they were taken "
        f"before {why}, for another stay than the device's current one"
    )


def open_recording(device: Device, chunk: Chunk, now=None, started_at=None) -> Recording:
    """Open the recording of a new session, closing the device's other live recordings.

    ``started_at`` is when its sample 0 was taken (``sample_zero_at`` for a chunk that opens
    it); ``now`` by default (an explicit open: its samples count from then). It never moves
    afterwards, not even when a late chunk reopens a recording closed by silence: every stored
    sample, beat, episode and alarm is placed in time from it.

    The new session replaces the device's earlier ones: its live recordings are closed, and
    those closed by silence are marked replaced too (``SERVER``), so that a late chunk of
    either (a request still in flight when the device started anew) is stored without making
    it live again beside the new one.

    Call inside a transaction that holds the device's row lock. The sweep (silence) and the
    device's own close request lock the recording, not the device: the live recordings are
    locked here as well, so that on PostgreSQL a close that another transaction is committing
    is waited for and read, not overwritten (SQLite serialises the writes).
    """
    now = now or timezone.now()
    previous_live = (
        Recording.objects.select_for_update()
        .filter(device=device, status=Recording.Status.LIVE)
        .defer("stream_state")  # closing does not need the analyzer's state (about 120 kB)
        .order_by("pk")
    )
    for previous in previous_live:
        close_recording(previous, Recording.ClosedBy.SERVER, now)
    # After the closes: one that a sweep closed for silence meanwhile (the lock waited for its
    # commit, and the recording was no longer live) is marked replaced here.
    Recording.objects.filter(device=device, closed_by=Recording.ClosedBy.SILENCE).update(
        closed_by=Recording.ClosedBy.SERVER
    )
    return Recording.objects.create(
        patient_id=device.patient_id,
        device=device,
        source=Recording.Source.DEVICE,
        source_name=device.serial,
        session=chunk.session,
        sampling_rate_hz=chunk.fs_hz,
        gain_adc_per_mv=chunk.gain_adc_per_mv,
        baseline_adc=chunk.baseline_adc,
        n_channels=chunk.n_channels,
        lead_names=lead_names_for(device, chunk.n_channels),
        status=Recording.Status.LIVE,
        started_at=started_at or now,
    )


def lead_names_for(device: Device, n_channels: int) -> list[str]:
    """The lead names of a recording the device opens with ``n_channels`` channels: the
    device's staff-set ``lead_names`` (the protocol has no lead field; the lead is how the
    device is placed), or ``ch1``..``chN`` when they name another number of leads.

    A count that differs means the device is not what staff described (a 3-lead board set
    up as "II", or "I, II, V1" sending one channel): which channel is which lead is then not
    known, and a neutral name is better than a lead name a researcher would trust. Logged, so
    that staff can correct the device.
    """
    try:
        names = parse_lead_names(device.lead_names)
    except ValidationError as error:  # a value written around the admin's validation
        names, problem = [], " ".join(error.messages)
    else:
        problem = f"{len(names)} lead name(s) for {n_channels} channel(s)"
    if len(names) == n_channels:
        return names
    logger.warning(
        "device %s: lead names %r do not fit its %d-channel recording (%s); the channels "
        "are named ch1..ch%d: set the device's lead names in the admin",
        device.serial,
        device.lead_names,
        n_channels,
        problem,
        n_channels,
    )
    return [f"ch{i + 1}" for i in range(n_channels)]


def close_recording(recording: Recording, closed_by: str, now=None) -> bool:
    """Close a live recording and ask for the analysis to finish it; False when it was closed
    already.

    Written only while the row is still live (a conditional update, not a save of
    ``recording``): a caller whose copy was read before another close committed must not
    overwrite that close, nor its ``closed_by`` (a device's close is final, a replacement by
    a newer session is not). Callers lock the row first; this holds without the lock too.
    """
    if recording.status == Recording.Status.CLOSED:
        return False
    ended_at = now or timezone.now()
    closed = Recording.objects.filter(pk=recording.pk, status=Recording.Status.LIVE).update(
        status=Recording.Status.CLOSED, closed_by=closed_by, ended_at=ended_at, stream_pending=True
    )
    if not closed:
        return False
    recording.status = Recording.Status.CLOSED
    recording.closed_by = closed_by
    recording.ended_at = ended_at
    recording.stream_pending = True
    recording_id = recording.pk
    transaction.on_commit(lambda: schedule_analysis(recording_id))
    return True


def after_commit(recording: Recording, chunk: Chunk) -> None:
    """A stored chunk's samples go to live viewers, then its analysis is scheduled."""
    from monitoring import streaming

    streaming.publish_samples(recording, chunk.first_sample, chunk.samples, chunk.lead_off)
    schedule_analysis(recording.pk)


def schedule_analysis(recording_id: int) -> None:
    """After the commit: queue the streaming analysis (coalesced; never raises)."""
    from monitoring import streaming  # imports the analysis models: load it late

    streaming.request_analysis(recording_id)
    streaming.sweep_if_no_beat()


def close_silent_recordings(now=None) -> list[int]:
    """Close live device recordings without a chunk for ``DEVICE_SILENCE_CLOSE_S`` seconds.

    A recording opened explicitly (``/recordings/open/``) that never got a chunk counts from
    its opening, as the device-offline alarm does: it has no ``last_chunk_at``, and a device
    that died after the open used to leave it live for good (the patient's current recording,
    "stale" for ever).
    """
    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.DEVICE_SILENCE_CLOSE_S)
    closed = []
    with transaction.atomic():
        silent = (
            Recording.objects.select_for_update()
            .filter(source=Recording.Source.DEVICE, status=Recording.Status.LIVE)
            .filter(
                Q(last_chunk_at__lt=limit) | Q(last_chunk_at__isnull=True, started_at__lt=limit)
            )
            .defer("stream_state")  # closing does not need the analyzer's state
        )
        for recording in silent:
            if close_recording(recording, Recording.ClosedBy.SILENCE, now):
                closed.append(recording.pk)
    return closed


def check_agrees(recording: Recording, chunk: Chunk) -> None:
    problems = []
    if abs(recording.sampling_rate_hz - chunk.fs_hz) > FS_TOLERANCE_HZ:
        problems.append(
            f"fs_hz {chunk.fs_hz:g} contradicts the recording's {recording.sampling_rate_hz:g} Hz"
        )
    gain = recording.gain_adc_per_mv
    if abs(gain - chunk.gain_adc_per_mv) > GAIN_RELATIVE_TOLERANCE * gain:
        problems.append(
            f"gain_adc_per_mv {chunk.gain_adc_per_mv:g} contradicts the recording's {gain:g}"
        )
    if recording.n_channels != chunk.n_channels:
        problems.append(
            f"n_channels {chunk.n_channels} contradicts the recording's {recording.n_channels}"
        )
    if recording.baseline_adc != chunk.baseline_adc:
        problems.append(
            f"baseline_adc {chunk.baseline_adc} contradicts the recording's "
            f"{recording.baseline_adc}"
        )
    if problems:
        raise IngestError(
            f"recording {recording.pk}: " + "; ".join(problems) + " (start a new session to "
            "change the signal format)",
            400,
        )


def _store(recording: Recording, chunk: Chunk) -> bool:
    """Store a new chunk (True) or recognise a re-sent one (False); 409 for a conflict."""
    data = encode_int16(chunk.samples)
    existing = recording.chunks.filter(seq=chunk.seq).first()
    if existing is not None:
        if existing.first_sample == chunk.first_sample and bytes(existing.data) == data:
            return False
        raise IngestError(
            f"seq {chunk.seq} of recording {recording.pk} was stored with other samples "
            f"(first_sample {existing.first_sample}, {existing.n_samples} frames); a sequence "
            "number names one chunk",
            409,
        )
    # Device chunks are at most MAX_CHUNK_FRAMES long, so only chunks starting that close
    # before this one can reach into it.
    neighbours = recording.chunks.filter(
        first_sample__lt=chunk.end_sample,
        first_sample__gt=chunk.first_sample - MAX_CHUNK_FRAMES,
    ).values_list("seq", "first_sample", "n_samples")
    for other_seq, other_first, other_n in neighbours:
        if other_first + other_n > chunk.first_sample:
            raise IngestError(
                f"samples {chunk.first_sample}-{chunk.end_sample - 1} overlap chunk {other_seq} "
                f"(samples {other_first}-{other_first + other_n - 1}) of recording "
                f"{recording.pk}",
                409,
            )
    SampleChunk.objects.create(
        recording=recording,
        seq=chunk.seq,
        first_sample=chunk.first_sample,
        n_samples=chunk.n_frames,
        data=data,
        # kept with the chunk: the analysis treats a leads-off span as a gap, and a re-sent
        # chunk (recognised above by its seq and samples) never changes it
        lead_off=chunk.lead_off,
    )
    recording.stored_samples += chunk.n_frames
    recording.end_sample = max(recording.end_sample, chunk.end_sample)
    if chunk.seq == recording.next_seq:
        next_seq = chunk.seq + 1
        # chunks that arrived early fill in behind it
        # (a plain query, not .iterator(): on PostgreSQL that opens a server-side cursor, three
        # round trips for what is nearly always no row)
        later = recording.chunks.filter(seq__gt=chunk.seq).order_by("seq")
        for seq in later.values_list("seq", flat=True):
            if seq != next_seq:
                break
            next_seq += 1
        recording.next_seq = next_seq
    return True
