"""``GET /api/patients/<id>/report/?since=&until=``: the handover report
(``monitoring.patient_report``) of a patient's device recordings over a time range, as the
page ``/patients/<id>/report/`` shows it: totals, one row per clock hour, the recordings, the
ones that overlap, and the alarms active in the range by kind and priority."""

from datetime import timedelta

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring.alarm_history import DEFAULT_RANGE, RANGES, TimeRange
from monitoring.api.alarms import zoned_time
from monitoring.api.serializers import bad_parameter, error_responses
from monitoring.models import Patient
from monitoring.patient_report import MAX_RANGE, patient_report


class PatientReportView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "since",
                OpenApiTypes.DATETIME,
                description="The range's start (ISO 8601 with its zone); default 12 hours "
                "before until.",
            ),
            OpenApiParameter(
                "until",
                OpenApiTypes.DATETIME,
                description="The range's end, excluded (ISO 8601 with its zone); default now. "
                f"At most {MAX_RANGE.days} days after since.",
            ),
        ],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 404)},
    )
    def get(self, request, patient_id: int):
        """A patient's monitoring over a time range, across their device recordings: analysed
        time, heart rate, beats by class and per hour, AF time, pauses and VT episodes, in
        total and per clock hour of the server's zone; the recordings it read and those that
        overlap; the alarms active in the range by kind and priority. Uploads are left out."""
        patient = get_object_or_404(Patient.objects.visible_to(request.user), pk=patient_id)
        params = request.query_params
        until = zoned_time(params, "until") or timezone.now()
        since = zoned_time(params, "since") or until - RANGES[DEFAULT_RANGE][1]
        if since >= until:
            raise bad_parameter(
                f"since ({since.isoformat()}) must be before until ({until.isoformat()})"
            )
        if until - since > MAX_RANGE:
            raise bad_parameter(
                f"a report covers at most {MAX_RANGE.days} days: since and until are "
                f"{(until - since) / timedelta(days=1):.1f} days apart"
            )
        return Response(patient_report(patient, TimeRange(since, until, "api", "since-until")))
