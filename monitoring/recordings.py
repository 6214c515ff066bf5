"""Questions about a recording's stored samples, shared by the API, tasks and views."""

import math

import numpy as np
from django.db.models import Count, F, Max, Min, Sum

from monitoring.models import Recording

MAX_GAPS_LISTED = 1000


def gaps(recording: Recording) -> list[list[int]]:
    """The missing ranges ``[start, end)`` between stored chunks, in sample indices, oldest
    first (at most ``MAX_GAPS_LISTED``). A gap is shown as a gap: nothing fills it in."""
    found, position = [], 0
    ranges = recording.chunks.order_by("first_sample").values_list("first_sample", "n_samples")
    for start, n_samples in ranges.iterator():
        if start > position:
            found.append([position, start])
            if len(found) == MAX_GAPS_LISTED:
                break
        position = max(position, start + n_samples)
    return found


def lead_off_spans(
    recording: Recording, start: int = 0, end: int | None = None, limit: int | None = None
) -> list[list[int]]:
    """The leads-off spans ``[start, end)`` in sample indices, oldest first: runs of stored
    chunks that the device sent with ``lead_off`` (``SampleChunk.lead_off``: samples kept as
    sent, but no ECG). Touching chunks make one span; a gap between two ends it (no sample is
    stored there: a gap is shown as a gap). Clipped to ``[start, end)`` when ``end`` is given
    (a window of the review), at most ``limit`` spans when given.

    A window reads only the chunks that reach into it (two queries on the chunks' index, as
    ``channels_mv``), the whole recording only the positions of its leads-off chunks.
    """
    chunks = recording.chunks.filter(lead_off=True)
    if end is None:
        ranges = chunks.order_by("first_sample").values_list("first_sample", "n_samples")
    else:
        # chunks never overlap: at most one starts before the window and reaches into it
        before = recording.chunks.filter(first_sample__lt=start).order_by("-first_sample")
        before = before.values_list("first_sample", "n_samples", "lead_off")[:1]
        inside = chunks.filter(first_sample__gte=start, first_sample__lt=end)
        inside = inside.order_by("first_sample").values_list("first_sample", "n_samples")
        ranges = [(first, n) for first, n, lead_off in before if lead_off] + list(inside)
    spans: list[list[int]] = []
    for first, n_samples in ranges:
        lo, hi = max(start, first), first + n_samples
        if end is not None:
            hi = min(end, hi)
        if hi <= lo:
            continue
        if spans and spans[-1][1] == lo:
            spans[-1][1] = hi  # the next chunk of the same span
        elif limit is not None and len(spans) == limit:
            break
        else:
            spans.append([lo, hi])
    return spans


def analysed_stretches(recording: Recording) -> list[tuple[int, int]]:
    """The stretches ``[start, end)`` that the streaming analysis analyses each as one, oldest
    first: the stored samples, cut at every gap and at every leads-off span (whose samples
    belong to no stretch: they are no ECG). No beat, RR interval or episode spans two of them
    (``monitoring.streaming``). Reads the chunks' positions and flags, not their samples."""
    stretches: list[tuple[int, int]] = []
    start = end = None
    ranges = recording.chunks.order_by("first_sample").values_list(
        "first_sample", "n_samples", "lead_off"
    )
    for first, n_samples, lead_off in ranges.iterator():
        if lead_off or first != end:  # a leads-off chunk, or one after a gap, ends a stretch
            if start is not None:
                stretches.append((start, end))
            start = None if lead_off else first
        elif start is None:
            start = first  # the first chunk after a leads-off span
        end = first + n_samples
    if start is not None:
        stretches.append((start, end))
    return stretches


def stream_heart_rate_bpm(recording: Recording, samples: np.ndarray | None = None) -> dict:
    """A device recording's heart rate as its summary gives it (mean over the recording, the
    extremes of an 8-beat running mean: ``inference.analysis.heart_rate_bpm``), from the
    stored beats, with no interval between beats of two different stretches
    (:func:`analysed_stretches`): across a leads-off span or a gap, the time from one beat
    to the next is no RR interval, however short. Intervals longer than ``live.MAX_RR_S``
    are left out as before (a pause is reported as an episode).

    Until 2026-12-07 the summary counted the interval across a one-chunk leads-off span (1 s
    of signal between beats 0.8 s apart makes an interval of about 2 s, under MAX_RR_S): a
    72-bpm recording read 69.9 bpm mean, its running-mean minimum 57.6.

    ``samples``: the stored beats' R peaks in order, when the caller has read them already.
    """
    from inference.analysis import heart_rate_bpm
    from monitoring.live import MAX_RR_S

    fs_hz = recording.sampling_rate_hz
    if samples is None:
        samples = recording.beats.order_by("sample").values_list("sample", flat=True)
    moved = samples_apart_by_stretch(samples, analysed_stretches(recording), fs_hz)
    return heart_rate_bpm(moved, fs_hz, max_rr_s=MAX_RR_S)


def samples_apart_by_stretch(samples, stretches: list[tuple[int, int]], fs_hz: float) -> np.ndarray:
    """The beats' R peaks (ascending) with the beats of each analysed stretch after the first
    moved on by more than ``live.MAX_RR_S`` per stretch, so that ``heart_rate_bpm`` with
    ``max_rr_s=MAX_RR_S`` cuts the beat series at every stretch's start as it cuts at an
    interval longer than MAX_RR_S; the intervals inside a stretch are unchanged. For reading
    a heart rate only: the moved samples are no positions in the recording."""
    from monitoring.live import MAX_RR_S

    samples = np.asarray(samples, dtype=np.int64)
    starts = np.array([start for start, _ in stretches], dtype=np.int64)
    stretch = np.maximum(np.searchsorted(starts, samples, side="right") - 1, 0)
    apart = int(math.ceil(MAX_RR_S * fs_hz)) + 1
    return samples + stretch * apart


def end_sample(recording: Recording) -> int:
    """One past the last stored sample (0 when nothing is stored). Gaps inside count: the
    recording's time axis runs from sample 0 to here."""
    end = recording.chunks.aggregate(end=Max(F("first_sample") + F("n_samples")))["end"]
    return int(end or 0)


def contiguous_stretch(recording: Recording, sample: int) -> tuple[int, int] | None:
    """The stretch ``[start, end)`` of samples stored without a gap that holds ``sample``, or
    None when no chunk holds it.

    The streaming analysis analyses such a stretch as one (a gap ends it and the analyzer
    starts afresh after it, ``monitoring.streaming``); an upload is one stretch. A recording
    without gaps (stored samples = its end) costs one query; one with gaps reads the chunks'
    positions, not their samples.
    """
    totals = recording.chunks.aggregate(
        stored=Sum("n_samples"), end=Max(F("first_sample") + F("n_samples"))
    )
    if totals["stored"] is not None and totals["stored"] == totals["end"]:
        return (0, totals["end"]) if 0 <= sample < totals["end"] else None
    start = end = None
    ranges = recording.chunks.order_by("first_sample").values_list("first_sample", "n_samples")
    for first, n_samples in ranges.iterator():
        if first != end:  # the first chunk, or one after a gap: a new stretch
            if start is not None and start <= sample < end:
                break
            start = first
        end = first + n_samples
    if start is not None and start <= sample < end:
        return start, end
    return None


def summarize(recording: Recording) -> dict:
    """How much of a recording is stored: chunks, samples, span and the samples missing.

    ``missing_samples`` counts sample indices from 0 to the last stored sample that no chunk
    covers (a gap a device never filled); chunks never overlap, because the
    ingest path refuses a chunk that overlaps a stored one.
    """
    totals = recording.chunks.aggregate(
        n_chunks=Count("id"),
        n_samples=Sum("n_samples"),
        lowest_first_sample=Min("first_sample"),
        highest_first_sample=Max("first_sample"),
    )
    n_samples = totals["n_samples"] or 0
    first_sample = totals["lowest_first_sample"] or 0
    end_sample = 0
    if totals["n_chunks"]:
        last = recording.chunks.get(first_sample=totals["highest_first_sample"])
        end_sample = last.end_sample
    return {
        "recording": recording.pk,
        "gaps": gaps(recording) if totals["n_chunks"] else [],
        "n_chunks": totals["n_chunks"],
        "n_samples": n_samples,
        "first_sample": first_sample,
        "end_sample": end_sample,
        # samples count from the recording's start (a device session's sample 0), so a
        # missing first chunk is missing too, as the device acknowledgment counts it
        "missing_samples": end_sample - n_samples,
        "duration_s": round(n_samples / recording.sampling_rate_hz, 3),
        "analysis_cursor": recording.analysis_cursor,
    }


def samples_mv(
    recording: Recording, start: int, end: int, channel: int | None = None
) -> np.ndarray:
    """Samples ``[start, end)`` of one channel (the analysed one unless told) in millivolts.

    Reads only the chunks that overlap the range, so it is cheap for a few seconds of a long
    recording. Indices no chunk covers (gaps, or past the stored end) are NaN: a caller that
    plots the result draws a gap as a gap.
    """
    channel = recording.analysis_lead if channel is None else channel
    return channels_mv(recording, start, end, [channel])[:, 0]


def channels_mv(recording: Recording, start: int, end: int, channels: list[int]) -> np.ndarray:
    """Samples ``[start, end)`` of several channels, (end - start, len(channels)) in mV, NaN
    where no chunk covers them, as ``samples_mv``. Each chunk is read and decoded once for all
    the channels: 10 s of a 12-lead upload read lead by lead fetched its 1.5 MB chunk 12 times.
    """
    if start < 0 or end < start:
        raise ValueError(f"a sample range needs 0 <= start <= end, got [{start}, {end})")
    out = np.full((end - start, len(channels)), np.nan)
    if end == start:
        return out
    # chunks never overlap, so at most one chunk starts before the range and reaches into it
    before = recording.chunks.filter(first_sample__lt=start).order_by("-first_sample")[:1]
    inside = recording.chunks.filter(first_sample__gte=start, first_sample__lt=end)
    for chunk in [*before, *inside]:
        chunk.recording = recording
        lo, hi = max(start, chunk.first_sample), min(end, chunk.end_sample)
        if hi <= lo:
            continue
        adc = chunk.samples()[lo - chunk.first_sample : hi - chunk.first_sample][:, channels]
        out[lo - start : hi - start] = recording.to_mv(adc)
    return out
