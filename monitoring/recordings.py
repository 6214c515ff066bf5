"""Questions about a recording's stored samples, shared by the API, tasks and views."""

import numpy as np
from django.db.models import Count, Max, Min, Sum

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
    if start < 0 or end < start:
        raise ValueError(f"a sample range needs 0 <= start <= end, got [{start}, {end})")
    channel = recording.analysis_lead if channel is None else channel
    out = np.full(end - start, np.nan)
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
        adc = chunk.samples()[lo - chunk.first_sample : hi - chunk.first_sample, channel]
        out[lo - start : hi - start] = recording.to_mv(adc)
    return out
