"""Alarms in the REST API: list, read, acknowledge (docs/alarms.md).

Scoped like everything else with ``visible_to``: a clinician sees and acknowledges only the
alarms of assigned patients; any other alarm answers 404, as if it did not exist.
"""

import re
from datetime import UTC, datetime

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from monitoring.alarms import acknowledge
from monitoring.api.serializers import bad_parameter, error_responses, filter_by_patient
from monitoring.models import Alarm, AlarmPriority, AlarmState
from monitoring.notifications import review_path


class AlarmSerializer(serializers.ModelSerializer):
    acknowledged_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,  # the schema said a string, never null
        help_text="Who acknowledged it (username); null until someone does.",
    )
    patient_mrn = serializers.CharField(source="patient.mrn", read_only=True)
    unit = serializers.CharField(
        read_only=True, allow_null=True, help_text="The unit of value and limit: bpm, s, ..."
    )
    review_path = serializers.SerializerMethodField(
        help_text="The review page of its recording at the event (the window of the alarm "
        "e-mail's strip), as the alarm history and the live view link it; null without a "
        "recording."
    )

    class Meta:
        model = Alarm
        fields = [
            "id",
            "patient",
            "patient_mrn",
            "recording",
            "kind",
            "priority",
            "message",
            "value",
            "limit",
            "unit",
            "state",
            "raised_at",
            "notified_at",
            "acknowledged_by",
            "acknowledged_at",
            "resolved_at",
            "escalated_at",
            "details",
            "review_path",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_review_path(self, alarm) -> str | None:
        # the live view's rows take their ECG link from here too (live.js reads the alarms
        # again every 30 s, and an acknowledgment answers with the alarm)
        return review_path(alarm) if alarm.recording_id is not None else None


# A "+02:00" offset typed into a URL unencoded arrives as " 02:00" (a "+" in a query string
# is a space): read back as the "+" it was, since a space there means nothing else.
DECODED_PLUS = re.compile(r"(.*T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)")


def zoned_time(params, name: str) -> datetime | None:
    """The query parameter ``name`` as an aware datetime (ISO 8601 with its zone), None when
    absent; a 400 naming it when it is not one. A time without a zone is refused rather than
    read in the server's zone: a client in another zone would get another night's alarms."""
    raw = params.get(name, "").strip()
    if not raw:
        return None
    text = DECODED_PLUS.sub(r"\1+\2", raw)
    example = "e.g. 2026-07-01T22:00:00+02:00 or 2026-07-01T20:00:00Z"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise bad_parameter(
            f"{name} must be an ISO 8601 date and time with its zone ({example}), got {raw!r}"
        ) from None
    if moment.tzinfo is None:
        raise bad_parameter(
            f"{name} must give its zone, as an offset or Z ({example}), got {raw!r}"
        )
    try:
        # stored and compared in UTC: year 1 or 9999 with an offset lies outside its range
        return moment.astimezone(UTC)
    except OverflowError:
        raise bad_parameter(f"{name} is out of range, got {raw!r}") from None


# "open": not resolved; "waiting": open, or a critical alarm that resolved before anyone
# acknowledged it (latched: it still wants acknowledging, as the station shows it)
STATE_FILTERS = ["open", "waiting", *AlarmState.values]


@extend_schema_view(
    retrieve=extend_schema(responses={200: AlarmSerializer, **error_responses(401, 404)})
)
class AlarmViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AlarmSerializer

    def get_queryset(self):
        return (
            Alarm.objects.visible_to(self.request.user)
            # the recording for review_path, not its analyzer state (120 kB and more)
            .select_related("patient", "acknowledged_by", "recording")
            .defer("recording__stream_state")
            .order_by("-raised_at", "-id")
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("state", OpenApiTypes.STR, enum=STATE_FILTERS),
            OpenApiParameter("priority", OpenApiTypes.STR, enum=AlarmPriority.values),
            OpenApiParameter("patient", OpenApiTypes.INT, description="A patient id."),
            OpenApiParameter(
                "since",
                OpenApiTypes.DATETIME,
                description="Alarms active at or after this time: raised then or later, or "
                "raised before and not resolved by then (still open, or resolved after it), as "
                "the alarm history page lists them. ISO 8601 with its zone, "
                "2026-07-01T22:00:00+02:00 or 2026-07-01T20:00:00Z.",
            ),
            OpenApiParameter(
                "until",
                OpenApiTypes.DATETIME,
                description="Alarms raised before this time (ISO 8601 with its zone).",
            ),
        ],
        responses={200: AlarmSerializer, **error_responses(400, 401)},
    )
    def list(self, request, *args, **kwargs):
        """Alarms of the patients you may see, newest first; ``state=open`` for all not
        resolved; ``since`` and ``until`` for those active in a time range (raised in it, or
        raised before it and not resolved at its start)."""
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        params = self.request.query_params
        state = params.get("state")
        if state:
            if state not in STATE_FILTERS:
                raise bad_parameter(f"state must be one of {', '.join(STATE_FILTERS)}")
            if state == "open":
                queryset = queryset.open()
            elif state == "waiting":
                queryset = queryset.waiting(timezone.now())
            else:
                queryset = queryset.filter(state=state)
        priority = params.get("priority")
        if priority:
            if priority not in AlarmPriority.values:
                raise bad_parameter(f"priority must be one of {', '.join(AlarmPriority.values)}")
            queryset = queryset.filter(priority=priority)
        since = zoned_time(params, "since")
        until = zoned_time(params, "until")
        if since is not None and until is not None and since >= until:
            raise bad_parameter(
                f"since ({since.isoformat()}) must be before until ({until.isoformat()})"
            )
        # active in the range, as the alarm history page lists them: an alarm raised before
        # since and open through it belongs to it
        queryset = queryset.active_during(since, until)
        return filter_by_patient(queryset, params)

    @extend_schema(request=None, responses={200: AlarmSerializer, **error_responses(401, 403, 404)})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """Acknowledge an alarm: records who and when (the first acknowledgment stands)."""
        alarm = self.get_object()
        acknowledged = acknowledge(alarm, request.user)
        # the recording read with it (get_queryset), for review_path: not read again, with
        # its analyzer state
        acknowledged.recording = alarm.recording
        return Response(AlarmSerializer(acknowledged).data)
