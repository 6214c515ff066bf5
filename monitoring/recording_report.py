"""A recording's Holter-style report: the figures by monitored time, and one row per hour.

The summary (``inference.analysis.summarize``) counts beats: its burden is each class's share
of the beats. A cardiologist reviewing a night also reads the figures by *time*:

- the analysed signal: the samples the analysis read, gaps and leads-off spans excluded
  (``recordings.analysed_stretches``; for a device recording only up to its analysis cursor:
  the newest samples of a live recording have no beats yet, and counting them would dilute
  every rate);
- AF burden by time: the seconds of AF episodes within the analysed signal over the analysed
  seconds ("AF 12 % of monitored time"), which is not the share of the beats in AF;
- ectopy rates: each class's beats per hour of analysed signal ("V 35 /h");
- one row per clock hour in the server's zone (per hour from sample 0 when the file gave no
  start, ``Recording.start_is_upload_time``): analysed minutes, beats, heart rate, V and S
  beats, pauses, AF minutes and VT episodes.

The results page and ``GET /api/recordings/<id>/analysis/`` show it. Three queries whatever
the recording's length (the chunks' positions, the beats' samples and labels, the episodes),
and none per hour.
"""

import math
from dataclasses import dataclass
from datetime import UTC, timedelta

import numpy as np
from django.utils import timezone

from inference.aami import AAMI_CLASSES
from inference.analysis import heart_rate_bpm
from monitoring.models import BEAT_ROW_FORMATS, AnalysisStatus, Recording
from monitoring.recordings import analysed_stretches, samples_apart_by_stretch

HOUR_S = 3600.0


def _overlap_s(starts_s: np.ndarray, ends_s: np.ndarray, lo_s: float, hi_s: float) -> float:
    """Seconds of the intervals ``[starts_s, ends_s)`` inside ``[lo_s, hi_s)``."""
    if not len(starts_s):
        return 0.0
    inside = np.minimum(ends_s, hi_s) - np.maximum(starts_s, lo_s)
    return float(np.clip(inside, 0.0, None).sum())


def intersection(
    first: list[tuple[float, float]], second: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The parts common to two sorted lists of disjoint intervals."""
    common, i, j = [], 0, 0
    while i < len(first) and j < len(second):
        lo, hi = max(first[i][0], second[j][0]), min(first[i][1], second[j][1])
        if lo < hi:
            common.append((lo, hi))
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return common


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, overlapping ones merged: time in two AF episodes counts once."""
    merged: list[tuple[float, float]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        elif lo < hi:
            merged.append((lo, hi))
    return merged


def _first_hour_s(recording: Recording) -> float:
    """Where the first row starts, in seconds from sample 0 (0 or less): the clock hour in
    the current zone that holds the start, or sample 0 itself when the start is only the
    upload's time (its clock hours are not the recording's)."""
    if recording.start_is_upload_time:
        return 0.0
    local = timezone.localtime(recording.started_at)
    hour = local.replace(minute=0, second=0, microsecond=0)
    # in UTC: a difference of two times of one zone ignores a change of its offset
    return (hour.astimezone(UTC) - recording.started_at).total_seconds()


def rate_per_hour(count: int, analysed_s: float) -> float | None:
    """Beats per hour of analysed signal (None without any)."""
    return round(count / (analysed_s / HOUR_S), 1) if analysed_s > 0 else None


@dataclass
class RecordingFigures:
    """What a report reads of one analysed recording (3 queries), times in seconds from its
    sample 0: the beats (R-peak samples and labels, ascending), the analysed signal and the AF
    time within it (sorted, disjoint intervals), the onsets of pauses and VT episodes, and
    the beats' samples as a heart rate reads them (``rate_samples``, with ``max_rr_s``)."""

    fs_hz: float
    span_s: float
    samples: np.ndarray
    labels: np.ndarray
    rate_samples: np.ndarray
    max_rr_s: float | None
    analysed_s: list[tuple[float, float]]
    af_s: list[tuple[float, float]]
    onsets_s: dict[str, np.ndarray]


def read_figures(
    recording: Recording, from_sample: int | None = None, to_sample: int | None = None
) -> RecordingFigures:
    """The figures of an analysed recording; with ``from_sample``/``to_sample``, only the
    beats from there (keep the beat before a range's first interval: start ``live.MAX_RR_S``
    earlier) and before there, so that a night's report does not read a week's beats."""
    fs_hz = recording.sampling_rate_hz
    device = recording.source == Recording.Source.DEVICE
    stretches = analysed_stretches(recording)
    beats = recording.beats.order_by("sample")
    if from_sample is not None:
        beats = beats.filter(sample__gte=from_sample)
    if to_sample is not None:
        beats = beats.filter(sample__lt=to_sample)
    beats = list(beats.values_list("sample", "label"))
    episodes = list(recording.episodes.values_list("kind", "start_s", "end_s"))

    samples = np.array([sample for sample, _ in beats], dtype=np.int64)
    labels = np.array([label for _, label in beats], dtype="<U1")
    last_beat = int(samples[-1]) + 1 if len(samples) else 0
    span_s = max(recording.end_sample, last_beat, *(end for _, end in stretches)) / fs_hz
    analysed = stretches
    if device:
        cursor = recording.analysis_cursor
        analysed = [(lo, min(hi, cursor)) for lo, hi in stretches if lo < cursor]
    analysed_s = [(lo / fs_hz, hi / fs_hz) for lo, hi in analysed]
    # AF time only where the signal was analysed: never more than the analysed time
    af_s = intersection(
        _union([(start, end) for kind, start, end in episodes if kind == "AF"]), analysed_s
    )
    # A heart rate as the summary reads it: a device recording's with no interval across a
    # gap or a leads-off span and none longer than live.MAX_RR_S (a gap is no slow heart,
    # streaming.stream_summary); an upload's (one stretch) from every interval.
    if device:
        from monitoring.live import MAX_RR_S

        rate_samples, max_rr_s = samples_apart_by_stretch(samples, stretches, fs_hz), MAX_RR_S
    else:
        rate_samples, max_rr_s = samples, None
    return RecordingFigures(
        fs_hz=fs_hz,
        span_s=span_s,
        samples=samples,
        labels=labels,
        rate_samples=rate_samples,
        max_rr_s=max_rr_s,
        analysed_s=analysed_s,
        af_s=af_s,
        onsets_s={
            kind: np.array(sorted(start for k, start, _ in episodes if k == kind))
            for kind in ("PAUSE", "VT")
        },
    )


def binned_figures(figures: RecordingFigures, edges_s: list[float]) -> list[dict]:
    """One dict per interval ``[edges_s[k], edges_s[k + 1])`` (seconds from sample 0,
    ascending): analysed seconds, beats, V and S beats, pauses and VT episodes by onset, AF
    seconds, and ``rate_samples``, the beats' ``rate_samples`` to read its heart rate from,
    with the beat before it: each RR interval counts in the interval where it ends."""
    times_s = figures.samples / figures.fs_hz
    bounds = np.searchsorted(times_s, edges_s, side="left")
    onset_bounds = {
        kind: np.searchsorted(onsets, edges_s, side="left")
        for kind, onsets in figures.onsets_s.items()
    }
    is_v = np.concatenate([[0], np.cumsum(figures.labels == "V")])
    is_s = np.concatenate([[0], np.cumsum(figures.labels == "S")])
    analysed_lo = np.array([lo for lo, _ in figures.analysed_s])
    analysed_hi = np.array([hi for _, hi in figures.analysed_s])
    af_lo = np.array([lo for lo, _ in figures.af_s])
    af_hi = np.array([hi for _, hi in figures.af_s])
    rows = []
    for row in range(len(edges_s) - 1):
        lo_s, hi_s = edges_s[row], edges_s[row + 1]
        first, end = int(bounds[row]), int(bounds[row + 1])
        rows.append(
            {
                "analysed_s": _overlap_s(analysed_lo, analysed_hi, lo_s, hi_s),
                "n_beats": end - first,
                "rate_samples": figures.rate_samples[max(first - 1, 0) : end],
                "n_v_beats": int(is_v[end] - is_v[first]),
                "n_s_beats": int(is_s[end] - is_s[first]),
                "n_pauses": int(onset_bounds["PAUSE"][row + 1] - onset_bounds["PAUSE"][row]),
                "af_s": _overlap_s(af_lo, af_hi, lo_s, hi_s),
                "n_vt": int(onset_bounds["VT"][row + 1] - onset_bounds["VT"][row]),
            }
        )
    return rows


def recording_report(recording: Recording) -> dict | None:
    """The report of a recording whose analysis is done (None otherwise, and for beat rows:
    they have no time axis). Times in seconds from sample 0; ``start``/``end`` of each hour
    as ISO times, null when the file gave no start."""
    if (
        recording.analysis_status != AnalysisStatus.DONE
        or recording.upload_format in BEAT_ROW_FORMATS
    ):
        return None
    figures = read_figures(recording)
    span_s = figures.span_s
    total_analysed_s = sum(hi - lo for lo, hi in figures.analysed_s)
    total_af_s = sum(hi - lo for lo, hi in figures.af_s)
    counts = {name: int((figures.labels == name).sum()) for name in AAMI_CLASSES}

    first_s = _first_hour_s(recording)
    n_hours = math.ceil((span_s - first_s) / HOUR_S) if span_s > 0 else 0
    # The first and the last row open-ended: every beat and episode onset has a row. Edges
    # to the microsecond, as a time on the hour is written: the float sum can land a hair
    # below it, and a beat on the hour in the row before (about 1 start time in 100,000).
    edges_s = [
        -math.inf,
        *(round(first_s + row * HOUR_S, 6) for row in range(1, n_hours)),
        math.inf,
    ]
    clock = not recording.start_is_upload_time
    hours = []
    for row, figures_of_hour in enumerate(binned_figures(figures, edges_s) if n_hours else []):
        lo_s = max(0.0, first_s + row * HOUR_S)
        hi_s = min(span_s, first_s + (row + 1) * HOUR_S)
        rate_samples = figures_of_hour.pop("rate_samples")
        hours.append(
            {
                "start_s": round(lo_s, 3),
                "end_s": round(hi_s, 3),
                "start": (recording.started_at + timedelta(seconds=lo_s)).isoformat()
                if clock
                else None,
                "end": (recording.started_at + timedelta(seconds=hi_s)).isoformat()
                if clock
                else None,
                **figures_of_hour,
                "analysed_s": round(figures_of_hour["analysed_s"], 1),
                "heart_rate_bpm": heart_rate_bpm(rate_samples, figures.fs_hz, figures.max_rr_s),
                "af_s": round(figures_of_hour["af_s"], 1),
            }
        )
    return {
        "analysed_s": round(total_analysed_s, 1),
        "af_s": round(total_af_s, 1),
        # a fraction (0-1) of the analysed time, not of the beats (the summary's "burden")
        "af_time_fraction": round(total_af_s / total_analysed_s, 4) if total_analysed_s else None,
        "per_hour": {
            name: rate_per_hour(count, total_analysed_s) for name, count in counts.items()
        },
        "hours_by": "clock" if clock else "elapsed",
        "time_zone": timezone.get_current_timezone_name() if clock else None,
        "hours": hours,
    }


def duration_text(seconds: float) -> str:
    """A length of signal as the page says it: "2 h 30 min", "12.5 min", "40 s"."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < HOUR_S:
        return f"{seconds / 60:.1f} min"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min"


def clock_hour_label(start, end, first) -> str:
    """An hourly row's clock times as the pages name it ("22:00–23:00"), with the date when
    it is not the day of ``first`` (the first row's start) and the zone's abbreviations when
    they are not that of ``first`` (a night across a daylight-saving change: "02:00 CEST–02:00
    CET"). Aware datetimes, shown in the current zone."""
    start, end, first = (timezone.localtime(moment) for moment in (start, end, first))
    if start.tzname() == end.tzname() == first.tzname():
        label = f"{start:%H:%M}–{end:%H:%M}"
    else:
        label = f"{start:%H:%M %Z}–{end:%H:%M %Z}"
    return label if start.date() == first.date() else f"{start:%Y-%m-%d} {label}"
