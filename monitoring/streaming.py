"""Streaming analysis of device recordings, on Celery workers, as samples arrive.

The flow (``docs/architecture.md``, "Streaming analysis"):

1. A chunk commits (``monitoring.ingest``) with ``stream_pending`` set, then
   :func:`request_analysis` claims the recording (``stream_queued_at``) and queues
   ``analyze_stream_task``, unless a task is already queued or running for it: at most one
   per recording, however many chunks arrive (coalescing).
2. The task (:func:`run_stream_analysis`) clears ``stream_pending`` and runs rounds of
   :func:`analyze_next` until nothing is left, then releases the claim; a chunk that
   committed in the meantime set ``stream_pending`` again and makes it go round once more, so
   no chunk is left unanalysed and no wake-up is lost.
3. A round reads the contiguous samples from ``analysis_cursor`` (at most
   ``STREAM_MAX_ROUND_S`` seconds), loads the analyzer's state (``inference.streaming``),
   pushes the samples, and in one transaction stores the final beats, the 2-second verdicts
   (the window model's and the VF/VFL detector's, as ``Prediction`` rows), the episodes of the
   recent past (each marked ``details["ongoing"]`` while it lasts up to the newest final
   beat or VF segment, a pause while no beat has come since it began, or a VT while a
   single F/Q beat after it may still bridge it, :func:`_reaches_the_end`: the live status
   names the current rhythm from it), the new state and the moved cursor. Episodes are
   recomputed every ``EPISODE_EVERY_S`` of signal, and in every round while no beat has
   come for the pause limit: pauses are read from the positions of the beats detected so
   far, final or not, up to where the QRS detector can place no more
   (``StreamingAnalyzer.beat_positions_final_through``, about 0.4-4.5 s behind the signal),
   so an asystole raises its alarm while it goes on, not when the beats come back. A
   worker killed before the commit leaves everything as it was: the next run starts again
   from the same cursor and state, so no beat is lost or stored twice. After the commit the
   new results go to the recording's channel-layer group (``recording-<id>``).
4. A gap (a range no chunk covers) stops the analysis until it is filled, or until it is
   final: the chunk after it arrived ``DEVICE_GAP_WAIT_S`` (20 s) ago (the firmware and the
   simulator send oldest first, so a chunk they still deliver comes sooner) or the recording
   is closed. Then the analyzer finishes the stretch before the gap and a new one starts after
   it: beats are never invented across missing signal. The gap is recorded (``GivenUpGap``);
   a chunk stored in it afterwards is analysed once the live rounds have caught up, by the
   offline pipeline (``monitoring.backfill``). A gap may be wider than a round reads (a
   device offline for minutes): :func:`_read_stretch` then looks past the round for the chunk
   after it.
   A leads-off span (chunks the device sent with ``lead_off``: the samples are stored, but
   they are no ECG) is treated as a gap that is final at once: the stretch before it ends
   there, the cursor moves past it, and a new stretch starts when the leads are back on. No
   beat, pause, rate or VF is computed inside it: before 2026-12-07 a flat leads-off trace
   was analysed as ECG, and every reattachment raised a critical pause alarm over it.
5. :func:`sweep` (celery beat, every ``STREAM_SWEEP_S``) closes silent recordings and queues
   every recording whose cursor lags its stored samples and has no live claim (a claim older
   than ``STREAM_STALE_S`` belongs to a dead worker), so the analysis catches up by itself
   after a worker crash or a broker outage.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import BooleanField, Exists, ExpressionWrapper, F, OuterRef, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from inference.aami import AAMI_CLASSES
from inference.rhythm import RhythmConfig, episodes_from_beats, vt_run_may_go_on
from inference.streaming import StreamingAnalyzer, StreamUpdate
from monitoring import live
from monitoring.backfill import backfill_given_up_gaps, filled_gaps
from monitoring.models import (
    AnalysisStatus,
    Beat,
    Episode,
    GivenUpGap,
    Prediction,
    Recording,
    SampleChunk,
)
from monitoring.recordings import stream_heart_rate_bpm

logger = logging.getLogger(__name__)

VF_MODEL_NAME = "rhythm-vf"
VF_SEGMENT_S = 2.0
# Episodes are recomputed over the last EPISODE_HORIZON_S of analysed signal (extended back
# to the start of any episode still running there); older episodes are final. It must exceed
# how far back new beats can still change an episode: AF looks at 96 beats and merges
# episodes 30 s apart, about 3 minutes at 60 bpm (tests/test_streaming_analysis.py).
EPISODE_HORIZON_S = 600.0
# Episodes are recomputed when a round crosses a multiple of this much signal (and when a
# stretch ends), not after every chunk: it is the costliest part of a round.
EPISODE_EVERY_S = 5.0
# Beats before the horizon that the AF statistic needs as history (its window is 96 beats).
EPISODE_CONTEXT_S = 120.0


def group_name(recording_id: int) -> str:
    """The channel-layer group that receives a recording's live analysis."""
    return f"recording-{recording_id}"


# --- Scheduling (coalesced) -------------------------------------------------------------


# After the broker refused a task, this process does not try again for this long: while
# Redis is down every chunk would otherwise pay for a failed connection.
BROKER_RETRY_AFTER_S = 5.0
BROKER_ERRORS = (OSError, KombuOperationalError, RedisConnectionError)
_broker_down_until = 0.0


def request_analysis(recording_id: int) -> bool:
    """Queue the recording's analysis unless a task already holds it. True if queued.

    Never raises: a broker that is down leaves the chunk stored and the claim released, and
    the next chunk or the sweep queues the analysis once the broker is back.
    """
    global _broker_down_until
    if time.monotonic() < _broker_down_until:
        return False
    now = timezone.now()
    stale = now - timedelta(seconds=settings.STREAM_STALE_S)
    claimed = (
        Recording.objects.filter(pk=recording_id)
        .filter(Q(stream_queued_at__isnull=True) | Q(stream_queued_at__lt=stale))
        .update(stream_queued_at=now)
    )
    if not claimed:
        return False
    from monitoring.tasks import analyze_stream_task

    try:
        analyze_stream_task.apply_async(args=[recording_id], retry=False)
    except BROKER_ERRORS:
        logger.exception("the broker refused the analysis of recording %s", recording_id)
        _broker_down_until = time.monotonic() + BROKER_RETRY_AFTER_S
        _release_claim(recording_id, now)
        return False
    except Exception:  # eager mode (no broker): the analysis itself failed; the chunk stays
        logger.exception("the analysis of recording %s failed", recording_id)
        _release_claim(recording_id, now)
        return False
    return True


def _release_claim(recording_id: int, claimed_at) -> None:
    Recording.objects.filter(pk=recording_id, stream_queued_at=claimed_at).update(
        stream_queued_at=None
    )


def run_stream_analysis(recording_id: int) -> dict:
    """Analyse everything that can be analysed now; what ``analyze_stream_task`` runs."""
    totals = {"recording": recording_id, "rounds": 0, "beats": 0, "samples": 0}
    while True:
        Recording.objects.filter(pk=recording_id).update(
            stream_pending=False, stream_queued_at=timezone.now()
        )
        result = analyze_next(recording_id)
        if result.n_samples or result.n_beats or result.finished_stretch is not None:
            # after the round's commit: alarms read what it stored (never raises)
            from monitoring.alarms import on_analysis_round

            # where the round began: the alarm rules judge a long one (a backlog) in steps;
            # and the stretch it finished, whose last seconds only this round made final
            on_analysis_round(
                recording_id,
                since_sample=result.first_sample,
                finished_stretch=result.finished_stretch,
            )
        totals["rounds"] += 1
        totals["beats"] += result.n_beats
        totals["samples"] += result.n_samples
        if result.more:
            continue
        # once the live analysis has caught up: the chunks that arrived after the analysis
        # had given up their gap (never raises; no-op when there are none)
        backfill_given_up_gaps(recording_id)
        released = Recording.objects.filter(pk=recording_id, stream_pending=False).update(
            stream_queued_at=None
        )
        if released:
            return totals


# --- One round ---------------------------------------------------------------------------


@dataclass
class RoundResult:
    n_samples: int = 0
    n_beats: int = 0
    more: bool = False  # a backlog remains: run another round at once
    first_sample: int | None = None  # the cursor a round that stored something began at
    # (first sample, analysed end) of the stretch a round finished at a final gap or at the
    # recording's close: the cursor and stream_start_sample have moved past it by then
    finished_stretch: tuple[int, int] | None = None
    published: dict = field(default_factory=dict)


@dataclass
class _Stretch:
    """Contiguous samples from the cursor, and what follows them."""

    adc: np.ndarray  # (n, channels)
    next_first_sample: int | None  # first sample of the next stored chunk after a gap
    gap_is_final: bool
    more: bool  # more contiguous samples than one round takes
    # the end of a leads-off span that follows the samples (None: none does): the stretch
    # ends before it, and the analysis goes on after it
    lead_off_end: int | None = None


def _read_stretch(recording: Recording, cursor: int, max_samples: int) -> _Stretch:
    """The ECG samples from the cursor up to a gap, a leads-off span or the round's limit."""
    parts, position = [], cursor
    fields = ("first_sample", "n_samples", "data", "received_at", "recording_id", "lead_off")
    chunks = (
        SampleChunk.objects.filter(recording=recording, first_sample__gte=cursor)
        .order_by("first_sample")
        .only(*fields)
    )
    # a chunk may start before the cursor and reach past it (a stretch restarted mid-chunk)
    straddling = (
        SampleChunk.objects.filter(recording=recording, first_sample__lt=cursor)
        .order_by("-first_sample")
        .only(*fields)
        .first()
    )
    candidates = ([straddling] if straddling is not None else []) + list(
        chunks.filter(first_sample__lt=cursor + max_samples + 1)
    )
    next_first, final, more, lead_off_end = None, False, False, None
    for chunk in candidates:
        if lead_off_end is not None:
            # after the samples: the leads-off span runs on through adjacent leads-off chunks
            # (those read in this round; the next round skips any further ones), up to a gap
            # or the leads back on, where the next round begins
            if chunk.first_sample != lead_off_end or not chunk.lead_off:
                break
            lead_off_end = chunk.end_sample
            continue
        if chunk.end_sample <= position:
            continue
        if chunk.first_sample > position:  # a gap
            next_first, final = chunk.first_sample, _gap_is_final(recording, chunk)
            break
        if chunk.lead_off:
            # no ECG in it: the stretch ends here. Unlike a gap nothing can fill it, so it
            # is final at once
            lead_off_end = chunk.end_sample
            continue
        chunk.recording = recording
        samples = chunk.samples()[position - chunk.first_sample :]
        room = cursor + max_samples - position
        if len(samples) > room:
            samples, more = samples[:room], True
        parts.append(samples)
        position += len(samples)
        if more:
            break
    if next_first is None and lead_off_end is None and not more and position < recording.end_sample:
        if position - cursor >= max_samples:
            more = True  # the round stopped at its sample limit exactly on a chunk boundary
        else:
            # A gap wider than the rest of the round (a device offline for minutes): the chunk
            # after it lies beyond the candidates read above. Without it the gap was never
            # seen, never given up, and the analysis stalled there for good.
            following = (
                chunks.filter(first_sample__gte=position)
                .only("first_sample", "received_at")
                .first()
            )
            if following is not None:
                next_first = following.first_sample
                final = _gap_is_final(recording, following)
    adc = np.concatenate(parts) if parts else np.zeros((0, recording.n_channels), np.int16)
    return _Stretch(adc, next_first, final, more, lead_off_end)


def _gap_is_final(recording: Recording, chunk_after: SampleChunk) -> bool:
    """Whether the gap before ``chunk_after`` is given up: the recording is closed, or that
    chunk arrived ``DEVICE_GAP_WAIT_S`` ago (a device that still resends it does so sooner;
    one that comes later is backfilled, ``monitoring.backfill``)."""
    gap_wait = timedelta(seconds=settings.DEVICE_GAP_WAIT_S)
    return (
        recording.status == Recording.Status.CLOSED
        or timezone.now() - chunk_after.received_at >= gap_wait
    )


def analyze_next(recording_id: int) -> RoundResult:
    """One round: push what is contiguous after the cursor and store what became final."""
    recording = Recording.objects.select_related("patient").get(pk=recording_id)
    fs_hz = recording.sampling_rate_hz
    cursor = recording.analysis_cursor
    closed = recording.status == Recording.Status.CLOSED
    has_state = recording.stream_state is not None
    if cursor >= recording.end_sample and not (closed and has_state):
        return RoundResult()

    stretch = _read_stretch(recording, cursor, max(1, round(settings.STREAM_MAX_ROUND_S * fs_hz)))
    segment_start = recording.stream_start_sample if has_state else cursor
    analyzer = _saved_analyzer(recording) if has_state else None
    restarted = has_state and analyzer is None
    if analyzer is None:
        analyzer, segment_start = StreamingAnalyzer(fs_hz), cursor
    updates = []
    position = cursor
    pushed_before = analyzer.n_samples_pushed
    pause_s = _rhythm_config(recording).pause_s
    # a pause known before this round's samples: the round that ends it recomputes the
    # episodes too, so that the pause stops being ongoing at once
    paused_before = analyzer.beatless_s() >= pause_s
    if len(stretch.adc):
        lead = recording.to_mv(stretch.adc[:, recording.analysis_lead])
        updates.append(analyzer.push(lead))
        position += len(stretch.adc)
    finished = False
    given_up = None  # the gap the analysis goes past, [start, end)
    lead_off = stretch.lead_off_end is not None
    at_end = not stretch.more and stretch.next_first_sample is None and not lead_off
    if (
        lead_off
        or (stretch.next_first_sample is not None and stretch.gap_is_final)
        or (closed and at_end and position >= recording.end_sample)
    ):
        updates.append(analyzer.finish())
        finished = True
        if stretch.next_first_sample is not None:
            given_up = (position, stretch.next_first_sample)
            position = stretch.next_first_sample  # the gap stays a gap
        elif lead_off:
            position = stretch.lead_off_end  # skipped like a gap: no ECG to analyse
    if position == cursor and not finished:
        return RoundResult()  # waiting for a gap to fill

    with transaction.atomic():
        # Lock the row and check that no other run moved the cursor or finished the stretch
        # since it was read (a finishing round clears the state without moving the cursor, and
        # its beats must not be stored twice); the state (120 kB) is not read again. Only the
        # analysis' own fields are written below, so the rest of the row read before the lock
        # (a status or end_sample that ingest has moved on since) is not written back.
        now_at = (
            Recording.objects.select_for_update()
            .filter(pk=recording_id)
            .annotate(
                has_state=ExpressionWrapper(
                    Q(stream_state__isnull=False), output_field=BooleanField()
                )
            )
            .values_list("analysis_cursor", "has_state")
            .first()
        )
        if now_at != (cursor, has_state):
            # another run (a redelivered task next to its sweep) got here first
            return RoundResult(more=True)
        if restarted:
            # the lost stretch's provisional beats (its newest, highest indices) can never be
            # confirmed now: gone, rather than left provisional for good
            recording.beats.filter(provisional=True).delete()
        if given_up is not None:
            # a chunk that fills it later is analysed by the backfill (monitoring/backfill.py),
            # not left unread behind the cursor
            GivenUpGap.objects.create(
                recording=recording, start_sample=given_up[0], end_sample=given_up[1]
            )
        beats = _store_beats(recording, segment_start, updates)
        verdicts = _store_verdicts(recording, segment_start, updates)
        analysed_end = segment_start + analyzer.n_samples_pushed
        step = max(1, round(EPISODE_EVERY_S * fs_hz))
        episodes = []
        crossed = (segment_start + pushed_before) // step != analysed_end // step
        # every round while no beat has come for the pause limit (an asystole): its alarm and
        # the live status must not wait for the next multiple of EPISODE_EVERY_S
        paused = paused_before or analyzer.beatless_s() >= pause_s
        if finished or crossed or paused:
            # only up to where the beats are known: the last seconds pushed hold beats not
            # yet emitted, and an episode rule would read their absence as a pause. Classes
            # and rates up to where every beat is emitted; pauses (and VF, which clips them)
            # up to where every beat's position is known, the emitted beats and the pending
            # ones: the last beat before an asystole is emitted only when the next one comes
            episodes = _update_episodes(
                recording,
                segment_start,
                segment_start + analyzer.beats_final_through,
                finished,
                positions_end=segment_start + analyzer.beat_positions_final_through,
                pending_samples=segment_start + analyzer.pending_beat_samples,
            )
        recording.analysis_cursor = position
        recording.stream_state = None if finished else analyzer.to_bytes()
        recording.stream_start_sample = position if finished else segment_start
        recording.analysis_status = AnalysisStatus.DONE
        recording.analyzed_at = timezone.now()
        recording.save(
            update_fields=[
                "analysis_cursor",
                "stream_state",
                "stream_start_sample",
                "analysis_status",
                "analyzed_at",
            ]
        )
        message = _message(recording, beats, episodes, verdicts)
        # to the recording's group, and beats and status to the patient's live group, in one
        # hop (monitoring/live.py; never raises)
        also = ((group_name(recording_id), message),)
        transaction.on_commit(lambda: live.publish_analysis(recording, beats, episodes, also))
    return RoundResult(
        n_samples=position - cursor,
        n_beats=len(beats),
        more=stretch.more or (finished and (stretch.next_first_sample is not None or lead_off)),
        published=message,
        first_sample=cursor,
        finished_stretch=(segment_start, analysed_end) if finished else None,
    )


def _saved_analyzer(recording: Recording) -> StreamingAnalyzer | None:
    """The analyzer of the current stretch from its saved state, or None when that state
    cannot be read (damaged, or written by a version or a model this one cannot load).

    Then a new stretch starts at the cursor, as after a gap: the beats of the last seconds
    before it are lost, not the recording's analysis. Raising instead failed every round for
    good: no beat and no alarm for the rest of the recording, the sweep queueing it again
    every few seconds.
    """
    try:
        return StreamingAnalyzer.from_bytes(bytes(recording.stream_state))
    except ValueError:
        logger.exception(
            "recording %s: the saved analysis state cannot be read; a new stretch starts at "
            "sample %s",
            recording.pk,
            recording.analysis_cursor,
        )
        return None


def _store_beats(recording: Recording, segment_start: int, updates: list[StreamUpdate]):
    """Store the round's beats: final ones (confirming the provisional row of the same R peak
    when there is one: same index, the label may change) and new provisional ones.

    Returns the beats created or changed, in index order (what the live pages are sent).
    """
    provisional = {beat.sample: beat for beat in recording.beats.filter(provisional=True)}
    last = recording.beats.order_by("-index").values_list("index", flat=True).first()
    next_index = 0 if last is None else last + 1
    created, confirmed = [], []

    def fill(beat: Beat, label: str, row: np.ndarray, p_wave: float, is_provisional: bool):
        probabilities = {
            name: round(float(p), 6) for name, p in zip(AAMI_CLASSES, row, strict=True)
        }
        beat.label = label
        beat.confidence = min(1.0, max(0.0, float(probabilities[label])))
        beat.probabilities = probabilities
        beat.p_wave = Beat.stored_p_wave(p_wave)
        beat.provisional = is_provisional
        return beat

    for update in updates:
        # final beats first: within one update they all precede its provisional ones
        for sample, label, row, p_wave in zip(
            update.beat_samples,
            update.beat_labels,
            update.beat_probabilities,
            update.beat_p_wave,
            strict=True,
        ):
            sample = segment_start + int(sample)
            beat = provisional.pop(sample, None)
            if beat is None:
                beat = Beat(recording=recording, index=next_index, sample=sample)
                next_index += 1
                created.append(beat)
            elif beat.pk is not None:
                confirmed.append(beat)
            fill(beat, label, row, p_wave, is_provisional=False)
        for sample, label, row in zip(
            update.provisional_samples,
            update.provisional_labels,
            update.provisional_probabilities,
            strict=True,
        ):
            sample = segment_start + int(sample)
            beat = Beat(recording=recording, index=next_index, sample=sample)
            next_index += 1
            # a provisional beat's P wave is not stored: only final beats feed the episodes
            created.append(fill(beat, label, row, np.nan, is_provisional=True))
            provisional[sample] = beat
    # A confirmed beat replaces its provisional row (same index and sample; nothing refers to
    # a beat's primary key): one DELETE and the same INSERT as the new beats. bulk_update
    # builds a CASE per column and row, and cost more CPU than the whole insert (profiled
    # 2026-12-06, one device-second of MIT-BIH 208 per round).
    if confirmed:
        Beat.objects.filter(pk__in=[beat.pk for beat in confirmed]).delete()
        for beat in confirmed:
            beat.pk = None
    Beat.objects.bulk_create(created + confirmed)
    return sorted(created + confirmed, key=lambda beat: beat.index)


def _store_verdicts(recording: Recording, segment_start: int, updates: list[StreamUpdate]):
    fs_hz = recording.sampling_rate_hz
    segment_samples = round(VF_SEGMENT_S * fs_hz)
    rows = []
    from inference.vf import shipped_model

    threshold = shipped_model().threshold
    for update in updates:
        for segment, probability in zip(update.vf_segments, update.vf_probabilities, strict=True):
            rows.append(
                Prediction(
                    recording=recording,
                    model_name=VF_MODEL_NAME,
                    model_version="1",
                    window_start=segment_start + int(segment) * segment_samples,
                    window_length=segment_samples,
                    label="VF" if probability >= threshold else "other",
                    probabilities={"VF": round(float(probability), 6)},
                )
            )
        for window in update.windows:
            rows.append(
                Prediction(
                    recording=recording,
                    model_name=window.model_name,
                    model_version=window.model_version,
                    window_start=segment_start + int(window.start_sample),
                    window_length=int(window.n_samples),
                    label=window.label,
                    probabilities=window.probabilities,
                )
            )
    Prediction.objects.bulk_create(rows)
    return rows


def _rhythm_config(recording: Recording) -> RhythmConfig:
    patient = recording.patient
    return RhythmConfig(
        brady_bpm=float(patient.hr_low_limit_bpm),
        tachy_bpm=float(patient.hr_high_limit_bpm),
        pause_s=float(patient.pause_limit_s),
    )


def _update_episodes(
    recording: Recording,
    segment_start: int,
    beats_end: int,
    finished: bool,
    positions_end: int | None = None,
    pending_samples: np.ndarray | None = None,
) -> list[Episode]:
    """Recompute the episodes of the recent past of the current stretch (see module doc).

    ``beats_end``: the sample before which every beat is stored final
    (``StreamingAnalyzer.beats_final_through``). ``positions_end``: the sample before which
    every beat's position is known (``beat_positions_final_through``; ``beats_end`` when
    None), and ``pending_samples`` the R peaks of the beats detected but not stored final
    yet: pauses, and the VF that clips them, reach ``positions_end``; the episodes that read
    beat classes or rates end at the final beats (``inference.rhythm.episodes_from_beats``,
    ``unlabelled_s``).
    """
    fs_hz = recording.sampling_rate_hz
    if positions_end is None:
        positions_end = beats_end
    end_s = positions_end / fs_hz
    segment_s = segment_start / fs_hz
    horizon_s = max(segment_s, end_s - EPISODE_HORIZON_S)
    running = recording.episodes.filter(start_s__lt=horizon_s, end_s__gt=horizon_s)
    earliest = min((episode.start_s for episode in running), default=horizon_s)
    horizon_s = max(segment_s, earliest)
    context_s = max(segment_s, horizon_s - EPISODE_CONTEXT_S)

    # final beats only: a provisional label may still change
    beats = recording.beats.filter(
        sample__gte=round(context_s * fs_hz), provisional=False
    ).order_by("index")
    samples, labels, p_waves = [], [], []
    for sample, label, p_wave in beats.values_list("sample", "label", "p_wave"):
        samples.append(sample)
        labels.append(label)
        p_waves.append(p_wave)
    # VF probabilities of the 2-s segments since context_s, on the stretch's own grid
    segment_samples = round(VF_SEGMENT_S * fs_hz)
    first_segment = int(np.ceil((context_s * fs_hz - segment_start) / segment_samples))
    grid_start = segment_start + first_segment * segment_samples
    vf_rows = recording.predictions.filter(
        model_name=VF_MODEL_NAME, window_start__gte=grid_start
    ).values_list("window_start", "probabilities")
    vf_rows = list(vf_rows)
    n_segments = max(0, (positions_end - grid_start) // segment_samples)
    # ... and no further than the newest stored: at a rate where the VF detector holds its
    # last segment back (inference/streaming.py, "VF segments") it may end near
    # positions_end and not be stored yet
    newest = max((start for start, _ in vf_rows), default=grid_start - segment_samples)
    n_stored = (newest - grid_start) // segment_samples + 1
    n_segments = min(n_segments, n_stored)
    vf = np.zeros(n_segments)
    for start, probabilities in vf_rows:
        position = (start - grid_start) // segment_samples
        if 0 <= position < n_segments:
            vf[position] = probabilities["VF"]
    origin_s = grid_start / fs_hz
    times_s = np.asarray(samples, dtype=np.float64) / fs_hz - origin_s
    keep = times_s >= 0
    beats_s = times_s[keep]
    beat_labels = [label for label, kept in zip(labels, keep, strict=True) if kept]
    if pending_samples is None:
        pending_samples = np.empty(0, dtype=np.int64)
    pending_s = np.asarray(pending_samples, dtype=np.float64) / fs_hz - origin_s
    config = _rhythm_config(recording)
    found = episodes_from_beats(
        beats_s,
        beat_labels,
        vf,
        end_s - origin_s,
        config,
        p_wave=[p_wave for p_wave, kept in zip(p_waves, keep, strict=True) if kept],
        unlabelled_s=pending_s[pending_s >= 0],
    )
    recording.episodes.filter(end_s__gt=horizon_s).delete()
    known = _KnownBeats(beats_s, beat_labels, beats_end / fs_hz - origin_s, n_segments, config)
    stored = []
    for episode in found:
        start_s, stop_s = episode.start_s + origin_s, episode.end_s + origin_s
        if stop_s <= horizon_s:
            continue
        details = dict(episode.details)
        if not finished and _reaches_the_end(episode, found, known):
            details["ongoing"] = True
        stored.append(
            Episode(
                recording=recording,
                kind=episode.kind,
                start_s=round(max(start_s, 0.0), 3),
                end_s=round(stop_s, 3),
                details=details,
            )
        )
    Episode.objects.bulk_create(stored)
    return stored


@dataclass
class _KnownBeats:
    """What :func:`_update_episodes` computed its episodes from, on their time axis."""

    times_s: np.ndarray  # the final beats
    labels: list[str]
    end_s: float  # every beat before this is known (StreamingAnalyzer.beats_final_through)
    n_vf_segments: int
    config: RhythmConfig


def _reaches_the_end(episode, found: list, known: _KnownBeats) -> bool:
    """Whether an episode of :func:`_update_episodes` lasts up to the newest known beat (or VF
    segment), so that the live status names it as the current rhythm.

    A pause is ongoing while no beat has come since it began (its ``open`` end). VF is
    ongoing when its last segment is the newest one. The beat-based episodes (AF, VT, BRADY,
    TACHY) end at a beat; they are ongoing when that beat is the newest final one and no pause
    has begun since (a VT run followed by silence is a pause now, not VT). A VT is ongoing
    too while the only beat after its last V beat is an F or Q beat that may still bridge it
    to the next V beat (``inference.rhythm.vt_run_may_go_on``, docs/rhythm.md): otherwise
    the live status said "VT ended" at every fusion beat inside a run, until the V beat after
    it was final, about 5 s later.
    """
    if episode.kind == "PAUSE":
        return episode.details.get("open") in ("end", "both")
    if episode.kind == "VF":
        return episode.end_s >= known.n_vf_segments * VF_SEGMENT_S - 1e-6
    pause_now = any(
        other.kind == "PAUSE" and other.details.get("open") in ("end", "both") for other in found
    )
    if pause_now or len(known.times_s) == 0:
        return False
    if episode.end_s >= known.times_s[-1] - 1e-6:
        return True
    return episode.kind == "VT" and vt_run_may_go_on(
        known.times_s, known.labels, episode.end_s, known.end_s, known.config
    )


def stream_summary(recording: Recording) -> dict:
    """A device recording's summary, as an upload's (``inference.analysis.summarize``), from
    its stored beats and episodes: the recording page asks for it, so a live recording's is
    current and none is stored to fall behind.

    The duration is the signal stored (gaps left out), and the heart rate leaves out the
    intervals longer than ``live.MAX_RR_S`` (the pauses among them are reported as episodes)
    and every interval across a gap or a leads-off span, however short
    (``recordings.stream_heart_rate_bpm``): that is no heart rate.
    """
    from inference.analysis import summarize
    from inference.rhythm import Episode as RhythmEpisode

    rows = list(recording.beats.order_by("index").values_list("sample", "label"))
    episodes = [
        RhythmEpisode(episode.kind, episode.start_s, episode.end_s, episode.details)
        for episode in recording.episodes.all()
    ]
    samples = np.array([sample for sample, _ in rows], dtype=np.int64)
    summary = summarize(
        samples,
        [label for _, label in rows],
        episodes,
        recording.sampling_rate_hz,
        recording.stored_samples,
        max_rr_s=live.MAX_RR_S,
    )
    # beats are numbered in sample order, so the rows read above serve
    summary["heart_rate_bpm"] = stream_heart_rate_bpm(recording, samples)
    summary["lead"] = recording.analysis_lead_name
    summary["live"] = recording.status == Recording.Status.LIVE
    return summary


def _message(
    recording: Recording, beats: list[Beat], episodes: list[Episode], verdicts: list[Prediction]
) -> dict:
    fs_hz = recording.sampling_rate_hz
    return {
        "type": "recording.analysis",
        "recording": recording.pk,
        "cursor": recording.analysis_cursor,
        "beats": live.beat_payloads(beats, fs_hz),
        "episodes": [
            {
                "kind": episode.kind,
                "start_s": episode.start_s,
                "end_s": episode.end_s,
                "details": episode.details,
            }
            for episode in episodes
        ],
        "verdicts": [
            {
                "model": verdict.model_name,
                "start_sample": verdict.window_start,
                "n_samples": verdict.window_length,
                "label": verdict.label,
                "probabilities": verdict.probabilities,
            }
            for verdict in verdicts
        ],
    }


def publish_samples(
    recording: Recording, first_sample: int, adc: np.ndarray, lead_off: bool = False
) -> None:
    """Send a stored chunk's samples (mV, one list per channel) to the recording's group, and
    its analysed lead to the patient's live group; ``lead_off``: the chunk's flag (its
    samples are no ECG).

    Called after the chunk commits, so a browser never sees samples the database lost. Skipped
    while this process knows the broker (the same Redis) to be down.
    """
    if time.monotonic() < _broker_down_until:
        return
    millivolts = np.round(recording.to_mv(adc), 4)
    message = {
        "type": "recording.samples",
        "recording": recording.pk,
        "first_sample": int(first_sample),
        "fs_hz": recording.sampling_rate_hz,
        "samples_mv": millivolts.T.tolist(),
        "lead_off": bool(lead_off),
    }
    # the patient's live group too, in one hop (monitoring/live.py; never raises)
    live.publish_samples(
        recording, first_sample, adc, lead_off, also=((group_name(recording.pk), message),)
    )


# --- The sweep ---------------------------------------------------------------------------


def lagging_recordings(now=None) -> list[int]:
    """Recordings with samples past the cursor (or a stretch to finish) and no live claim."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.STREAM_STALE_S)
    unclaimed = Q(stream_queued_at__isnull=True) | Q(stream_queued_at__lt=stale)
    behind = (
        Q(analysis_cursor__lt=F("end_sample"))
        | Q(status=Recording.Status.CLOSED, stream_state__isnull=False)
        # a chunk stored in a gap the analysis gave up, not backfilled yet (a worker died)
        | Q(Exists(filled_gaps().filter(recording=OuterRef("pk"))))
    )
    return list(
        Recording.objects.filter(source=Recording.Source.DEVICE)
        .filter(unclaimed)
        .filter(behind)
        .values_list("pk", flat=True)
    )


_last_inline_sweep = 0.0


def sweep_if_no_beat() -> None:
    """Without a broker (the embedded defaults) no celery beat runs the sweep and the alarms'
    periodic check, so the ingest path runs them, at most once per ``STREAM_SWEEP_S`` per
    process."""
    global _last_inline_sweep
    from monitoring.tasks import sweep_streams_task

    if not sweep_streams_task.app.conf.task_always_eager:
        return
    if time.monotonic() - _last_inline_sweep < settings.STREAM_SWEEP_S:
        return
    _last_inline_sweep = time.monotonic()
    from monitoring.alarms import periodic_check

    for task in (sweep, periodic_check):
        try:
            task()
        except Exception:
            logger.exception("the inline %s failed", task.__name__)


def sweep() -> dict:
    """Close silent recordings, queue the analysis of every lagging one, and fail the upload
    analyses that a lost worker left pending (``analysis.fail_stale_analyses``)."""
    from monitoring.analysis import fail_stale_analyses
    from monitoring.ingest import close_silent_recordings

    closed = close_silent_recordings()
    queued = [pk for pk in lagging_recordings() if request_analysis(pk)]
    return {"closed": closed, "queued": queued, "stale_uploads": fail_stale_analyses()}
