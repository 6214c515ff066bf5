"""Heart-rate trends from the stored beats.

- ``GET /api/patients/<id>/hr-trend/?minutes=M``: the patient's last M minutes (up to 24 h);
  the live view draws it over the range the clinician picks (1, 4, 12 or 24 h).
- ``GET /api/recordings/<id>/hr-trend/``: one recording from its start to its end (an
  uploaded Holter-style file, or a device session), with times in seconds from its start.

One point per minute: 60 / median RR of the beat intervals that end in that minute. The
patient's trend reads their device (live) recordings only. Uploaded recordings are left out:
the trend is the patient's heart rate now, from the devices on them; an upload's
``started_at`` is when its file says it was recorded, or its upload time when the file gave
none, and either way its beats are no part of the monitoring. The median, not the mean, so
that a few premature beats or a missed beat do not move the trend; intervals longer than
``MAX_RR_S`` are holes in the data (a gap, a new session), not a heart rate, and are left
out. A minute with fewer than ``MIN_INTERVALS`` intervals has no point.

Both answers also list the ``gaps``: the spans of at least ``GAP_MIN_S`` with no RR interval
(the device silent or its leads off, no beats found, or nothing recorded yet), so that a
chart breaks its line there instead of drawing a straight line through missing data.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np
from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring.api.serializers import error_responses, whole_number
from monitoring.api.uploads import not_analysed, visible_recording
from monitoring.models import Patient, Recording

BIN_S = 60
MAX_MINUTES = 24 * 60
DEFAULT_MINUTES = 60
MAX_RR_S = 6.0  # longer than any pause the alarms care about (pause limit <= 15 s is rare)
MIN_INTERVALS = 2
# A stretch this long without an RR interval is a gap: as long as a bin, so that a chart
# breaks its line wherever a minute's worth of data is missing, also between two minutes that
# each still have a point.
GAP_MIN_S = BIN_S


def binned_rate(
    beat_runs_s: Iterable[np.ndarray], window_s: float, bin_s: float = BIN_S
) -> tuple[list[tuple[int, float, int]], list[tuple[float, float]]]:
    """The per-bin heart rate and the gaps of a window from its beats.

    ``beat_runs_s``: one array per recording of its R peaks in seconds from the window's start,
    ascending (a beat may lie before the window, to complete its first interval). Returns
    ``(bins, gaps)``: ``bins`` as ``(bin index, 60 / median RR in bpm, intervals)`` for each
    bin with at least ``MIN_INTERVALS`` intervals ending in it, in order; ``gaps`` as
    ``(start s, end s)`` for each stretch of at least ``GAP_MIN_S`` inside the window that no
    accepted interval covers.
    """
    ends, lengths = [], []
    for times_s in beat_runs_s:
        if times_s.size < 2:
            continue
        rr_s = np.diff(times_s)
        ends_s = times_s[1:]
        keep = (rr_s > 0) & (rr_s <= MAX_RR_S) & (ends_s >= 0) & (ends_s < window_s)
        ends.append(ends_s[keep])
        lengths.append(rr_s[keep])
    ends_s = np.concatenate(ends) if ends else np.zeros(0)
    rr_s = np.concatenate(lengths) if lengths else np.zeros(0)

    # the median of each bin: intervals sorted by bin, then by length, and the middle one (or
    # the mean of the middle two) of each bin's run
    index = np.floor(ends_s / bin_s).astype(np.int64)
    order = np.lexsort((rr_s, index))
    index, sorted_rr = index[order], rr_s[order]
    bins = []
    numbers, firsts, counts = np.unique(index, return_index=True, return_counts=True)
    for number, first, count in zip(numbers, firsts, counts, strict=True):
        if count < MIN_INTERVALS:
            continue
        median_s = (sorted_rr[first + (count - 1) // 2] + sorted_rr[first + count // 2]) / 2
        bins.append((int(number), round(60.0 / float(median_s), 1), int(count)))

    # what the intervals cover (several recordings may overlap), and the holes between
    gaps = []
    covered_until_s = 0.0
    if ends_s.size:
        starts_s = np.maximum(ends_s - rr_s, 0.0)
        order = np.argsort(starts_s, kind="stable")
        starts_s, stops_s = starts_s[order], ends_s[order]
        reach_s = np.maximum.accumulate(stops_s)  # how far the intervals so far reach
        holes = np.flatnonzero(starts_s[1:] - reach_s[:-1] >= GAP_MIN_S)
        if starts_s[0] >= GAP_MIN_S:
            gaps.append((0.0, float(starts_s[0])))
        gaps.extend((float(reach_s[i]), float(starts_s[i + 1])) for i in holes)
        covered_until_s = float(reach_s[-1])
    if window_s - covered_until_s >= GAP_MIN_S:
        gaps.append((covered_until_s, float(window_s)))
    return bins, gaps


def at(start: datetime, offset_s: float) -> str:
    """``start`` plus ``offset_s`` seconds (to the millisecond), ISO 8601."""
    return (start + timedelta(milliseconds=round(offset_s * 1000))).isoformat()


def hr_trend_window(patient: Patient, minutes: int, now=None) -> dict:
    """The heart rate of ``patient`` over the last ``minutes`` minutes from their device
    recordings: ``{"start", "end", "points", "gaps"}``.

    Bins start at ``now - minutes``; each point carries the bin's start time, the rate and the
    number of RR intervals behind it; each gap its start and end time.
    """
    now = now or timezone.now()
    since = now - timedelta(minutes=minutes)
    # device recordings only: an upload's beats (started when its file says, or at its upload
    # when it gave no start) are no part of the patient's monitoring
    recordings = patient.recordings.filter(
        source=Recording.Source.DEVICE, started_at__lt=now
    ).filter(Q(ended_at__isnull=True) | Q(ended_at__gt=since))
    runs = []
    for recording in recordings:
        fs_hz = recording.sampling_rate_hz
        offset_s = (since - recording.started_at).total_seconds()
        # One beat before the window too, so the window's first interval is complete.
        first_sample = max(0, int((offset_s - MAX_RR_S) * fs_hz))
        samples = np.array(
            recording.beats.filter(sample__gte=first_sample)
            .order_by("sample")
            .values_list("sample", flat=True),
            dtype=np.float64,
        )
        runs.append(samples / fs_hz - offset_s)  # seconds since `since`
    bins, gaps = binned_rate(runs, minutes * 60.0)
    return {
        "start": since.isoformat(),
        "end": now.isoformat(),
        "points": [
            {"time": at(since, index * BIN_S), "hr_bpm": hr_bpm, "intervals": intervals}
            for index, hr_bpm, intervals in bins
        ],
        "gaps": [{"start": at(since, start_s), "end": at(since, end_s)} for start_s, end_s in gaps],
    }


def hr_trend(patient: Patient, minutes: int, now=None) -> list[dict]:
    """Per-minute heart rate (bpm) of ``patient`` over the last ``minutes`` minutes: the
    points of :func:`hr_trend_window`."""
    return hr_trend_window(patient, minutes, now)["points"]


def recording_hr_trend(recording: Recording) -> dict:
    """The heart rate of one recording from its sample 0 to its end, per minute, with its
    gaps, in seconds from its start (``start_s``, ``end_s``)."""
    fs_hz = recording.sampling_rate_hz
    samples = np.array(
        recording.beats.order_by("sample").values_list("sample", flat=True), dtype=np.float64
    )
    last_beat = int(samples[-1]) + 1 if samples.size else 0
    duration_s = max(recording.end_sample, last_beat) / fs_hz
    bins, gaps = binned_rate([samples / fs_hz], duration_s)
    return {
        "duration_s": round(duration_s, 3),
        "points": [
            {"start_s": index * BIN_S, "hr_bpm": hr_bpm, "intervals": intervals}
            for index, hr_bpm, intervals in bins
        ],
        "gaps": [
            {"start_s": round(start_s, 3), "end_s": round(end_s, 3)} for start_s, end_s in gaps
        ],
    }


class HrTrendView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "minutes",
                OpenApiTypes.INT,
                description=f"How far back (1-{MAX_MINUTES}, default {DEFAULT_MINUTES}).",
            )
        ],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 404)},
    )
    def get(self, request, patient_id: int):
        """Per-minute heart rate of a patient from the beats of their device recordings
        (60 / median RR), and the gaps with no RR interval; uploaded recordings are left out."""
        patient = get_object_or_404(Patient.objects.visible_to(request.user), pk=patient_id)
        minutes = whole_number(
            request.query_params.get("minutes", str(DEFAULT_MINUTES)),
            1,
            MAX_MINUTES,
            f"minutes must be a whole number from 1 to {MAX_MINUTES}",
        )
        window = hr_trend_window(patient, minutes)
        return Response(
            {
                "patient": patient.pk,
                "minutes": minutes,
                "bin_s": BIN_S,
                "gap_min_s": GAP_MIN_S,
                "start": window["start"],
                "end": window["end"],
                "hr_low_limit_bpm": patient.hr_low_limit_bpm,
                "hr_high_limit_bpm": patient.hr_high_limit_bpm,
                "points": window["points"],
                "gaps": window["gaps"],
            }
        )


class RecordingHrTrendView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, **error_responses(401, 404, 409)})
    def get(self, request, pk: int):
        """Per-minute heart rate of one recording (60 / median RR) from its start to its end,
        and the gaps with no RR interval, in seconds from its start. 409 for an upload whose
        analysis is not done."""
        recording = visible_recording(request, pk)
        if recording.source == Recording.Source.UPLOAD:
            refused = not_analysed(recording)
            if refused is not None:
                return refused
        trend = recording_hr_trend(recording)
        return Response(
            {
                "recording": recording.pk,
                "bin_s": BIN_S,
                "gap_min_s": GAP_MIN_S,
                # null when the file gave no start: its clock times are not the recording's
                "started_at": None
                if recording.start_is_upload_time
                else recording.started_at.isoformat(),
                **trend,
            }
        )
