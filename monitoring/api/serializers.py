from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from monitoring.models import Device, Patient, Recording


class PatientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = [
            "id",
            "mrn",
            "name",
            "birth_date",
            "sex",
            "ward",
            "bed",
            "is_active",
            "hr_low_limit_bpm",
            "hr_high_limit_bpm",
            "pause_limit_s",
            "pvc_limit_per_min",
            "sustained_arrhythmia_alarm",
            "created_at",
        ]
        read_only_fields = fields


class DeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = [
            "id",
            "serial",
            "label",
            "patient",
            "firmware_version",
            "sampling_rate_hz",
            "gain_adc_per_mv",
            "is_active",
            "last_seen_at",
        ]
        read_only_fields = fields


class RecordingSerializer(serializers.ModelSerializer):
    class Meta:
        model = Recording
        fields = [
            "id",
            "patient",
            "device",
            "source",
            "source_name",
            "sampling_rate_hz",
            "gain_adc_per_mv",
            "baseline_adc",
            "n_channels",
            "lead_names",
            "status",
            "started_at",
            "ended_at",
            "analysis_cursor",
        ]
        read_only_fields = fields


class RecordingSummarySerializer(serializers.Serializer):
    recording = serializers.IntegerField()
    n_chunks = serializers.IntegerField()
    n_samples = serializers.IntegerField()
    first_sample = serializers.IntegerField()
    end_sample = serializers.IntegerField()
    missing_samples = serializers.IntegerField()
    gaps = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField(), min_length=2, max_length=2),
        help_text="Missing ranges [start, end) in sample indices, oldest first (at most 1000).",
    )
    duration_s = serializers.FloatField()
    analysis_cursor = serializers.IntegerField()


class MeSerializer(serializers.ModelSerializer):
    class Meta:
        model = get_user_model()
        fields = ["id", "username", "first_name", "last_name", "email", "is_staff"]
        read_only_fields = fields


class DeviceSelfSerializer(serializers.ModelSerializer):
    """What a device learns about itself: its identity and declared signal format."""

    patient_assigned = serializers.SerializerMethodField()

    class Meta:
        model = Device
        fields = [
            "serial",
            "label",
            "firmware_version",
            "sampling_rate_hz",
            "gain_adc_per_mv",
            "patient_assigned",
            "last_seen_at",
        ]
        read_only_fields = fields

    def get_patient_assigned(self, device: Device) -> bool:
        # A device is told whether it may stream, not who the patient is.
        return device.patient_id is not None


# --- Refusals -----------------------------------------------------------------------------

ID_MAX = 2**63 - 1  # the largest primary key (BigAutoField) the database can hold


def bad_parameter(message: str) -> ValidationError:
    """A 400 with the API's one error shape, ``{"detail": message}``: the message names the
    parameter (DRF's ``ValidationError({"name": ...})`` would make the name the key)."""
    return ValidationError({"detail": message})


def whole_number(raw: str, low: int, high: int, message: str) -> int:
    """A query parameter as an int from ``low`` to ``high``, else ``bad_parameter(message)``.

    ASCII digits only: ``str.isdigit()`` also accepts digits such as "²" that ``int()``
    refuses (a 500), and a number longer than ``high`` is refused before ``int()`` reads it
    (past 4,300 digits ``int()`` raises too).
    """
    digits = raw.lstrip("0") or "0"
    if raw.isascii() and raw.isdigit() and len(digits) <= len(str(high)):
        number = int(digits)
        if low <= number <= high:
            return number
    raise bad_parameter(message)


def filter_by_patient(queryset, params):
    """``queryset`` limited to ``?patient=<id>`` when the query gives one (a 400 naming the
    parameter when it is not a whole number); the same filter for every list that takes it."""
    patient = params.get("patient")
    if not patient:
        return queryset
    patient_id = whole_number(patient, 0, ID_MAX, "patient must be a patient id (a whole number)")
    return queryset.filter(patient_id=patient_id)


class ErrorSerializer(serializers.Serializer):
    """Every refusal of the API, whatever its status."""

    detail = serializers.CharField(help_text="What was refused and why, naming the parameter.")


# What each error status means where the schema lists it. 403, 409 and 429 have one cause
# among the endpoints that list them here (device/v1 lists its own).
ERROR_MEANINGS = {
    400: "A parameter or the body is wrong; `detail` names it.",
    401: "No valid credentials: log in, or send `Authorization: Token <key>`.",
    403: "A session login without its CSRF token (`X-CSRFToken`): unsafe methods only.",
    404: "No such object, or not one you may see (a patient not assigned to you).",
    409: "The recording has no analysis results: its analysis is pending, running or failed.",
    413: "The body is larger than the endpoint's limit (`detail` gives it).",
    415: "The body is not of a content type the endpoint reads.",
    429: "Too many requests from this address (callers without an account only).",
}


def error_responses(*codes: int, meanings: dict[int, str] | None = None) -> dict:
    """Schema responses ``{code: {"detail": str}}`` for an ``extend_schema(responses=...)``,
    next to the success response: ``{200: Serializer, **error_responses(400, 401)}``.
    ``meanings`` replaces the usual description of a code where it has another cause."""
    meanings = ERROR_MEANINGS | (meanings or {})
    return {code: OpenApiResponse(ErrorSerializer, description=meanings[code]) for code in codes}


def read_only_schema(serializer):
    """The schema of a ``ReadOnlyModelViewSet`` of ``serializer``: its list and its items,
    with the errors each answers (a list's 400: a ``limit`` or ``offset`` that is not a
    whole number, ``monitoring.api.pagination``)."""
    return extend_schema_view(
        list=extend_schema(responses={200: serializer, **error_responses(400, 401)}),
        retrieve=extend_schema(responses={200: serializer, **error_responses(401, 404)}),
    )
