"""Heart-rate trend of a patient from the stored beats: ``GET /api/patients/<id>/hr-trend/``.

The live view draws the last hour from it. One point per minute: 60 / median RR of the beat
intervals that end in that minute, over the patient's device (live) recordings. Uploaded
recordings are left out: the trend is the patient's heart rate now, from the devices on them;
an upload's ``started_at`` is when its file says it was recorded, or its upload time when the
file gave none, and either way its beats are no part of the last hour's monitoring. The
median, not the mean, so that a few premature beats or a missed beat do not move the trend;
intervals longer than ``MAX_RR_S`` are holes in the data (a gap, a new session), not a heart
rate, and are left out. A minute with fewer than ``MIN_INTERVALS`` intervals has no point.
"""

from datetime import timedelta

import numpy as np
from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring.api.serializers import error_responses, whole_number
from monitoring.models import Patient, Recording

BIN_S = 60
MAX_MINUTES = 24 * 60
DEFAULT_MINUTES = 60
MAX_RR_S = 6.0  # longer than any pause the alarms care about (pause limit <= 15 s is rare)
MIN_INTERVALS = 2


def hr_trend(patient: Patient, minutes: int, now=None) -> list[dict]:
    """Per-minute heart rate (bpm) of ``patient`` over the last ``minutes`` minutes.

    Bins start at ``now - minutes``; each point carries the bin's start time, the rate and the
    number of RR intervals behind it.
    """
    now = now or timezone.now()
    since = now - timedelta(minutes=minutes)
    bins: dict[int, list[float]] = {}
    # device recordings only: an upload's beats (started when its file says, or at its upload
    # when it gave no start) are no part of the patient's monitoring
    recordings = patient.recordings.filter(
        source=Recording.Source.DEVICE, started_at__lt=now
    ).filter(Q(ended_at__isnull=True) | Q(ended_at__gt=since))
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
        if samples.size < 2:
            continue
        times_s = samples / fs_hz - offset_s  # seconds since `since`
        rr_s = np.diff(times_s)
        ends_s = times_s[1:]
        keep = (rr_s > 0) & (rr_s <= MAX_RR_S) & (ends_s >= 0) & (ends_s < minutes * 60)
        for end_s, rr in zip(ends_s[keep], rr_s[keep], strict=True):
            bins.setdefault(int(end_s // BIN_S), []).append(float(rr))
    points = []
    for index in sorted(bins):
        intervals = bins[index]
        if len(intervals) < MIN_INTERVALS:
            continue
        points.append(
            {
                "time": (since + timedelta(seconds=index * BIN_S)).isoformat(),
                "hr_bpm": round(60.0 / float(np.median(intervals)), 1),
                "intervals": len(intervals),
            }
        )
    return points


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
        (60 / median RR); uploaded recordings are left out."""
        patient = get_object_or_404(Patient.objects.visible_to(request.user), pk=patient_id)
        minutes = whole_number(
            request.query_params.get("minutes", str(DEFAULT_MINUTES)),
            1,
            MAX_MINUTES,
            f"minutes must be a whole number from 1 to {MAX_MINUTES}",
        )
        return Response(
            {
                "patient": patient.pk,
                "minutes": minutes,
                "bin_s": BIN_S,
                "hr_low_limit_bpm": patient.hr_low_limit_bpm,
                "hr_high_limit_bpm": patient.hr_high_limit_bpm,
                "points": hr_trend(patient, minutes),
            }
        )
