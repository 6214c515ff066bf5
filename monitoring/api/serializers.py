from django.contrib.auth import get_user_model
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
