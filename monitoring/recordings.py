"""Questions about a recording's stored samples, shared by the API, tasks and views."""

from django.db.models import Count, Max, Min, Sum

from monitoring.models import Recording


def summarize(recording: Recording) -> dict:
    """How much of a recording is stored: chunks, samples, span and the samples missing.

    ``missing_samples`` counts sample indices between the first and the last stored sample
    that no chunk covers (a gap a device never filled); chunks never overlap, because the
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
        "n_chunks": totals["n_chunks"],
        "n_samples": n_samples,
        "first_sample": first_sample,
        "end_sample": end_sample,
        "missing_samples": (end_sample - first_sample) - n_samples,
        "duration_s": round(n_samples / recording.sampling_rate_hz, 3),
        "analysis_cursor": recording.analysis_cursor,
    }
