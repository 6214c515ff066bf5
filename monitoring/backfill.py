"""The beats of chunks that arrived after the streaming analysis had given up their gap.

The live analysis (``monitoring.streaming``) waits ``DEVICE_GAP_WAIT_S`` for a missing range
to be filled, then finishes the stretch before it, starts a new one after it and records the
range as a :class:`~monitoring.models.GivenUpGap`. Its analyzer only runs forwards, so a chunk
stored in that range afterwards (a device that resends very late, a client that sends in any
order) was never read: stored and drawn, but without beats for good, and nothing said so.

Once the live analysis has caught up (``streaming.run_stream_analysis``, and the sweep after
a lost worker), :func:`backfill_given_up_gaps` analyses the chunks stored in a given-up gap
since its last backfill with the offline pipeline an upload goes through
(``inference.analysis.detect_and_classify_beats``: the QRS detector and the beat
classifier), on the stored ECG from ``BACKFILL_CONTEXT_S`` before them to as much after them,
cut at any gap or leads-off span. It stores the beats found in the gap (and in the last
``BACKFILL_EDGE_S`` before it, where the stretch that ended there loses a beat whose R peak
lies in its last ~0.1 s), final, with labels, probabilities and P waves, numbered in time
order among the live beats, and skips a detection within ``DUPLICATE_S`` of a beat already
stored (the live beats at the edges, and those of an earlier backfill of the same gap). The
gap row stays: it records what the live analysis gave up; ``backfilled_chunk_id`` says how
far its chunks were backfilled.

Not redone: the episodes and alarms. The live rules judged the stretches on either side as
they came; a late chunk is history by the time it arrives (at least ``DEVICE_GAP_WAIT_S``
after the chunk after it), and an alarm for it would be raised late and out of order.
docs/architecture.md, "Gaps", gives the numbers behind these choices.
"""

import logging
import math
from dataclasses import dataclass

import numpy as np
from django.db import DatabaseError, transaction
from django.db.models import Exists, F, OuterRef, Q

from inference.aami import AAMI_CLASSES
from monitoring.models import Beat, GivenUpGap, Recording, SampleChunk
from monitoring.recordings import lead_off_spans, samples_mv

logger = logging.getLogger(__name__)

# Stored ECG analysed on each side of the new chunks: the beat classifier's RR features and
# dominant beat read the beats around each one (its first blocks look 32 beats ahead), so
# the late beats get about as much context as a beat in the middle of a recording. On 22 DS1
# records x 5 gaps of 1-9 s, 30 and 60 s found every beat of one pass over 5 minutes, 99.6
# and 99.4 % with its label, 10 s 99.0 % of them (bench/backfill_context.py,
# docs/architecture.md); 60 s keeps 32 beats before the gap down to 32 bpm.
BACKFILL_CONTEXT_S = 60.0
# Beats stored before the gap too: a stretch that ends at a gap loses a beat whose R peak
# lies in its last ~0.1 s (on DS1 records, 2-70 ms before its end). A stretch that starts at
# a gap finds its beats from its first sample on (one whose R peak lies a few samples before
# it, at that first sample), so nothing is taken after the gap.
BACKFILL_EDGE_S = 0.5
# A detection this close to a stored beat is that beat (EC57's beat-matching window).
DUPLICATE_S = 0.15
# The QRS detector needs this much signal (inference.qrs); a shorter run has no beats, as
# a stretch that short has none in the live analysis.
MIN_SIGNAL_S = 2.0


def filled_gaps():
    """The given-up gaps (not failed) into which a chunk was stored since their last backfill,
    and whose backfill need not wait for the live analysis.

    Such a chunk starts inside the gap: the samples just before a gap's start were stored
    when it was given up, and chunks never overlap, so the lookup is a range of the chunks'
    (recording, first_sample) index.

    A gap whose stored chunks reach its end waits until the live stretch after it is past
    its first ``DUPLICATE_S`` (:func:`backfill_gap`). That wait is part of this query: when
    it was only checked in :func:`backfill_gap`, a filled gap followed by a stretch without
    beats (a flat line the device does not flag as leads off) was selected again after every
    chunk and by every sweep, and each time the recording and its ~120 kB analyzer state were
    loaded for nothing, until a beat came.
    """
    new_inside = SampleChunk.objects.filter(
        recording=OuterRef("recording"),
        first_sample__gte=OuterRef("start_sample"),
        first_sample__lt=OuterRef("end_sample"),
        pk__gt=OuterRef("backfilled_chunk_id"),
    )
    reaches_end = SampleChunk.objects.alias(chunk_end=F("first_sample") + F("n_samples")).filter(
        recording=OuterRef("recording"),
        first_sample__gte=OuterRef("start_sample"),
        first_sample__lt=OuterRef("end_sample"),
        chunk_end__gte=OuterRef("end_sample"),
    )
    return (
        GivenUpGap.objects.filter(backfill_failed=False)
        .filter(Exists(new_inside))
        .alias(live_from=F("end_sample") + DUPLICATE_S * F("recording__sampling_rate_hz"))
        .exclude(Exists(reaches_end) & ~_live_past_q())
    )


def backfill_given_up_gaps(recording_id: int) -> int:
    """Analyse what was stored in the recording's given-up gaps; the number of beats added.

    Never raises: the live analysis calls it and must go on. A database error leaves the gap
    for the next run; any other error marks it ``backfill_failed`` (logged) so that a chunk
    the pipeline cannot read is not analysed again at every chunk.
    """
    added = 0
    try:
        # Called after every chunk's analysis, and most recordings never give a gap up: one
        # indexed lookup spares them filled_gaps(), whose query took 6.7 ms a call against
        # 0.6 ms for this one (SQLite, a recording without gaps), mostly in its compilation.
        if not GivenUpGap.objects.filter(recording_id=recording_id, backfill_failed=False).exists():
            return 0
        gaps = list(filled_gaps().filter(recording_id=recording_id).order_by("start_sample"))
    except DatabaseError:
        logger.exception("recording %s: the given-up gaps could not be read", recording_id)
        return 0
    for gap in gaps:
        try:
            added += backfill_gap(gap)
        except DatabaseError:
            logger.exception(
                "recording %s: the backfill of %s failed; tried again later", recording_id, gap
            )
        except Exception:
            logger.exception("recording %s: the backfill of %s failed", recording_id, gap)
            GivenUpGap.objects.filter(pk=gap.pk).update(backfill_failed=True)
    return added


def backfill_gap(gap: GivenUpGap) -> int:
    """Analyse the chunks stored in a given-up gap since its last backfill, store the beats
    that are new, and move its ``backfilled_chunk_id`` on. The number of beats stored."""
    # not the analyzer's state (~120 kB): the backfill runs the offline pipeline
    recording = Recording.objects.defer("stream_state").get(pk=gap.recording_id)
    fs_hz = recording.sampling_rate_hz
    context = round(BACKFILL_CONTEXT_S * fs_hz)
    edge = round(BACKFILL_EDGE_S * fs_hz)
    duplicate = round(DUPLICATE_S * fs_hz)
    # read first: a chunk that commits after it is above it, and brings the gap back
    watermark = recording.chunks.order_by("-pk").values_list("pk", flat=True).first() or 0
    pieces = _stored_pieces(recording, gap)
    live_from = gap.end_sample + DUPLICATE_S * fs_hz  # as filled_gaps computes it
    if any(piece.hi == gap.end_sample for piece in pieces if piece.new) and not _live_past(
        recording, live_from
    ):
        # The live stretch that began at the gap's end may still emit its first beat, and
        # one whose R peak lies in the gap's last samples it places at its own first sample:
        # wait until it has, so that the duplicate check below sees it (the next chunk, or
        # the sweep, tries again).
        return 0
    found: list[tuple[int, str, np.ndarray, float]] = []
    for piece in pieces:
        if piece.new:
            found.extend(_piece_beats(recording, piece, context, edge))
    with transaction.atomic():
        # the same lock as the live rounds' commits: the beats' numbers are rewritten below
        Recording.objects.select_for_update().filter(pk=recording.pk).values_list("pk").first()
        claimed = GivenUpGap.objects.filter(
            pk=gap.pk, backfilled_chunk_id=gap.backfilled_chunk_id
        ).update(backfilled_chunk_id=max(watermark, gap.backfilled_chunk_id))
        if not claimed:
            return 0  # another run backfilled it meanwhile
        beats = _new_beats(recording, found, duplicate)
        _insert_in_time_order(recording, beats)
    logger.info(
        "recording %s: %d beat(s) backfilled in samples %d-%d, stored after the analysis had "
        "given them up",
        recording.pk,
        len(beats),
        gap.start_sample,
        gap.end_sample,
    )
    return len(beats)


@dataclass
class _Piece:
    """Consecutive chunks stored inside a given-up gap, ``[lo, hi)``; ``new_lo``/``new_hi``:
    the extent of those stored since the gap's last backfill (None: none)."""

    lo: int
    hi: int
    new_lo: int | None = None
    new_hi: int | None = None

    @property
    def new(self) -> bool:
        return self.new_lo is not None


def _stored_pieces(recording: Recording, gap: GivenUpGap) -> list[_Piece]:
    """The runs of consecutive chunks stored inside the gap, oldest first."""
    chunks = (
        recording.chunks.filter(first_sample__gte=gap.start_sample, first_sample__lt=gap.end_sample)
        .order_by("first_sample")
        .values_list("pk", "first_sample", "n_samples")
    )
    pieces: list[_Piece] = []
    for pk, first, n_samples in chunks:
        end = min(first + n_samples, gap.end_sample)
        if not pieces or pieces[-1].hi != first:
            pieces.append(_Piece(first, end))
        piece = pieces[-1]
        piece.hi = end
        if pk > gap.backfilled_chunk_id:
            piece.new_lo = first if piece.new_lo is None else piece.new_lo
            piece.new_hi = end
    return pieces


def _piece_beats(
    recording: Recording, piece: _Piece, context: int, edge: int
) -> list[tuple[int, str, np.ndarray, float]]:
    """The beats of a piece near its new chunks, from the offline pipeline run on the stored
    ECG from ``context`` before them to ``context`` after them."""
    fs_hz = recording.sampling_rate_hz
    start = max(0, piece.new_lo - context)
    end = min(recording.end_sample, piece.new_hi + context)
    ecg_mv = samples_mv(recording, start, end)
    for off_lo, off_hi in lead_off_spans(recording, start, end):
        ecg_mv[off_lo - start : off_hi - start] = np.nan  # stored, but no ECG
    # The whole piece within reach, not only its new chunks: a chunk stored alone before
    # (too short to hold a beat then) or whose last beat was cut off by the missing samples
    # that the new chunks fill has its beats now (those stored already are skipped). From
    # ``edge`` before the piece: the stretch that ended at the gap is finished, every beat
    # of it stored but the one its last ~0.1 s cut off. Nothing after the piece: past the
    # gap the live analysis' new stretch finds its beats from its first sample on.
    # Where the window cuts the piece itself (a long piece), its beats within half the
    # context of the cut are left alone: they were analysed with their own chunks.
    keep = (
        piece.lo - edge if piece.lo >= start else start + context // 2,
        piece.hi if piece.hi <= end else end - context // 2,
    )
    found = []
    for run_lo, run_hi in _finite_runs(ecg_mv):
        run_lo, run_hi = start + run_lo, start + run_hi
        if run_hi <= piece.new_lo or run_lo >= piece.new_hi:
            continue  # not the new samples
        if run_hi - run_lo < MIN_SIGNAL_S * fs_hz:
            continue  # too short to hold a beat: analysed again with the chunks around it
        found.extend(_beats(ecg_mv[run_lo - start : run_hi - start], fs_hz, run_lo, keep))
    return found


def _live_past(recording: Recording, sample: float) -> bool:
    """Whether the live analysis has stored every beat before ``sample``: it stored one
    after it (beats are stored in time order), or its stretch there is finished.
    :func:`_live_past_q` is the same test in SQL (a fractional ``sample`` as there)."""
    return recording.stream_start_sample > sample or (
        recording.beats.filter(sample__gte=math.ceil(sample)).exists()
    )


def _live_past_q() -> Q:
    """:func:`_live_past` for a gap of :func:`filled_gaps`, at its ``live_from`` alias."""
    beat_after = Beat.objects.filter(
        recording=OuterRef("recording"), sample__gte=OuterRef("live_from")
    )
    return Q(recording__stream_start_sample__gt=F("live_from")) | Q(Exists(beat_after))


def _finite_runs(values: np.ndarray) -> list[tuple[int, int]]:
    """The runs ``[lo, hi)`` of finite values (NaN: a gap or a leads-off span)."""
    finite = np.concatenate([[False], np.isfinite(values), [False]])
    edges = np.flatnonzero(np.diff(finite.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _beats(
    ecg_mv: np.ndarray, fs_hz: float, first_sample: int, keep: tuple[int, int]
) -> list[tuple[int, str, np.ndarray, float]]:
    """The beats of one run of ECG whose R peak lies in ``keep`` ``[lo, hi)``, as
    (sample, label, probabilities, P-wave correlation)."""
    from inference.analysis import detect_and_classify_beats

    r_peaks, labels, probabilities, p_wave = detect_and_classify_beats(ecg_mv, fs_hz)
    samples = np.asarray(r_peaks, dtype=np.int64) + first_sample
    return [
        (int(sample), label, probabilities[i], float(p_wave[i]))
        for i, (sample, label) in enumerate(zip(samples, labels, strict=True))
        if keep[0] <= sample < keep[1]
    ]


def _new_beats(
    recording: Recording, found: list[tuple[int, str, np.ndarray, float]], duplicate: int
) -> list[Beat]:
    """Beat rows for the detections that are not a stored beat (within ``duplicate``)."""
    if not found:
        return []
    samples = [sample for sample, _, _, _ in found]
    taken = list(
        recording.beats.filter(
            sample__gte=min(samples) - duplicate, sample__lte=max(samples) + duplicate
        ).values_list("sample", flat=True)
    )
    beats = []
    for sample, label, row, p_wave in sorted(found, key=lambda beat: beat[0]):
        if any(abs(sample - other) <= duplicate for other in taken):
            continue
        taken.append(sample)
        probabilities = {
            name: round(float(p), 6) for name, p in zip(AAMI_CLASSES, row, strict=True)
        }
        beats.append(
            Beat(
                recording=recording,
                index=0,  # numbered by _insert_in_time_order
                sample=sample,
                label=label,
                confidence=min(1.0, max(0.0, probabilities[label])),
                probabilities=probabilities,
                p_wave=Beat.stored_p_wave(p_wave),
                provisional=False,
            )
        )
    return beats


def _insert_in_time_order(recording: Recording, beats: list[Beat]) -> None:
    """Store beats among the recording's, keeping ``Beat.index`` the order of the R peaks:
    the beats after the first new one are numbered on (deleted and stored again: nothing
    refers to a beat's primary key, and the pages match beats by sample)."""
    if not beats:
        return
    first = min(beat.sample for beat in beats)
    later = list(recording.beats.filter(sample__gte=first).order_by("index"))
    if later:
        base = later[0].index
    else:
        last = recording.beats.order_by("-index").values_list("index", flat=True).first()
        base = 0 if last is None else last + 1
    merged = sorted(later + beats, key=lambda beat: beat.sample)
    recording.beats.filter(sample__gte=first).delete()
    for offset, beat in enumerate(merged):
        beat.pk = None
        beat.index = base + offset
    Beat.objects.bulk_create(merged, batch_size=1000)
