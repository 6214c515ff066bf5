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


def _intersection(
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


def _rate(count: int, analysed_s: float) -> float | None:
    return round(count / (analysed_s / HOUR_S), 1) if analysed_s > 0 else None


def recording_report(recording: Recording) -> dict | None:
    """The report of a recording whose analysis is done (None otherwise, and for beat rows:
    they have no time axis). Times in seconds from sample 0; ``start``/``end`` of each hour
    as ISO times, null when the file gave no start."""
    if (
        recording.analysis_status != AnalysisStatus.DONE
        or recording.upload_format in BEAT_ROW_FORMATS
    ):
        return None
    fs_hz = recording.sampling_rate_hz
    device = recording.source == Recording.Source.DEVICE
    stretches = analysed_stretches(recording)
    beats = list(recording.beats.order_by("sample").values_list("sample", "label"))
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
    af_s = _intersection(
        _union([(start, end) for kind, start, end in episodes if kind == "AF"]), analysed_s
    )
    analysed_lo = np.array([lo for lo, _ in analysed_s])
    analysed_hi = np.array([hi for _, hi in analysed_s])
    af_lo = np.array([lo for lo, _ in af_s])
    af_hi = np.array([hi for _, hi in af_s])
    total_analysed_s = float((analysed_hi - analysed_lo).sum()) if len(analysed_s) else 0.0
    total_af_s = float((af_hi - af_lo).sum()) if len(af_s) else 0.0
    counts = {name: int((labels == name).sum()) for name in AAMI_CLASSES}

    # A heart rate as the summary reads it: a device recording's with no interval across a
    # gap or a leads-off span and none longer than live.MAX_RR_S (a gap is no slow heart,
    # streaming.stream_summary); an upload's (one stretch) from every interval.
    if device:
        from monitoring.live import MAX_RR_S

        rate_samples, max_rr_s = samples_apart_by_stretch(samples, stretches, fs_hz), MAX_RR_S
    else:
        rate_samples, max_rr_s = samples, None

    first_s = _first_hour_s(recording)
    n_hours = math.ceil((span_s - first_s) / HOUR_S) if span_s > 0 else 0
    # each beat's and each episode's onset's row (the last row takes what ends the span)
    beat_hour = np.clip((samples / fs_hz - first_s) // HOUR_S, 0, max(n_hours - 1, 0))
    bounds = np.searchsorted(beat_hour, np.arange(n_hours + 1), side="left")
    is_v = np.concatenate([[0], np.cumsum(labels == "V")])
    is_s = np.concatenate([[0], np.cumsum(labels == "S")])
    onsets: dict[str, list[int]] = {"PAUSE": [0] * n_hours, "VT": [0] * n_hours}
    for kind, start, _ in episodes:
        if kind in onsets and n_hours:
            row = min(max(int((start - first_s) // HOUR_S), 0), n_hours - 1)
            onsets[kind][row] += 1

    clock = not recording.start_is_upload_time
    hours = []
    for row in range(n_hours):
        lo_s = max(0.0, first_s + row * HOUR_S)
        hi_s = min(span_s, first_s + (row + 1) * HOUR_S)
        first, end = int(bounds[row]), int(bounds[row + 1])
        # with the beat before the hour: each RR interval counts in the hour where it ends
        hr_bpm = heart_rate_bpm(rate_samples[max(first - 1, 0) : end], fs_hz, max_rr_s)
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
                "analysed_s": round(_overlap_s(analysed_lo, analysed_hi, lo_s, hi_s), 1),
                "n_beats": end - first,
                "heart_rate_bpm": hr_bpm,
                "n_v_beats": int(is_v[end] - is_v[first]),
                "n_s_beats": int(is_s[end] - is_s[first]),
                "n_pauses": onsets["PAUSE"][row],
                "af_s": round(_overlap_s(af_lo, af_hi, lo_s, hi_s), 1),
                "n_vt": onsets["VT"][row],
            }
        )
    return {
        "analysed_s": round(total_analysed_s, 1),
        "af_s": round(total_af_s, 1),
        # a fraction (0-1) of the analysed time, not of the beats (the summary's "burden")
        "af_time_fraction": round(total_af_s / total_analysed_s, 4) if total_analysed_s else None,
        "per_hour": {name: _rate(count, total_analysed_s) for name, count in counts.items()},
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
