"""The clinical domain: patients, devices, recordings, stored samples, model predictions.

Units are in field names (``_hz``, ``_bpm``, ``_s``, ``adc_per_mv``). Sample positions are
counted in frames from the start of a recording: sample index ``i`` of a recording holds one
value per channel and lies ``i / sampling_rate_hz`` seconds after ``started_at``.
"""

import hashlib
import math
import secrets
from datetime import date, timedelta

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import (
    EmailValidator,
    MaxValueValidator,
    MinValueValidator,
    URLValidator,
)
from django.db import models
from django.db.models import Q
from django.utils import timezone

from monitoring.samples import (
    MAX_GAIN_ADC_PER_MV,
    MIN_GAIN_ADC_PER_MV,
    decode_int16,
    encode_int16,
)

MAX_CHANNELS = 16
MIN_SAMPLING_RATE_HZ = 50.0
MAX_SAMPLING_RATE_HZ = 10_000.0

sampling_rate_validators = [
    MinValueValidator(MIN_SAMPLING_RATE_HZ),
    MaxValueValidator(MAX_SAMPLING_RATE_HZ),
]
gain_validators = [
    MinValueValidator(MIN_GAIN_ADC_PER_MV),
    MaxValueValidator(MAX_GAIN_ADC_PER_MV),
]


# A device's lead names (``Device.lead_names``): staff type them, comma-separated. Short, so
# that they fit a WFDB header, a CSV column name and a strip title.
MAX_LEAD_NAME_CHARS = 16


def parse_lead_names(text: str) -> list[str]:
    """The comma-separated lead names of ``Device.lead_names`` as a list (``"I, II, V1"`` ->
    ``["I", "II", "V1"]``); a ValidationError saying what is wrong and how to write it.

    Each name is printable text (no tab, line break or other control character, which would
    break a WFDB header line), 1 to ``MAX_LEAD_NAME_CHARS`` characters, different from the
    others; at most ``MAX_CHANNELS`` names, as a chunk has at most that many channels.
    """
    names = [name.strip() for name in str(text).split(",")]
    if names == [""]:
        raise ValidationError(
            "Give the lead of each channel, in channel order, separated by commas (e.g. II, "
            "or I, II, V1).",
            code="no_lead_names",
        )
    if len(names) > MAX_CHANNELS:
        raise ValidationError(
            f"{len(names)} lead names: a device sends at most {MAX_CHANNELS} channels.",
            code="too_many_lead_names",
        )
    for number, name in enumerate(names, start=1):
        if not name:
            raise ValidationError(
                f"Lead {number} has no name: give one name per channel, separated by commas "
                "(e.g. I, II, V1).",
                code="empty_lead_name",
            )
        if len(name) > MAX_LEAD_NAME_CHARS:
            raise ValidationError(
                f"Lead name {name!r} has {len(name)} characters; at most {MAX_LEAD_NAME_CHARS}.",
                code="long_lead_name",
            )
        if not name.isprintable():
            raise ValidationError(
                f"Lead name {name!r} holds a character that is not printable text (a tab, "
                "line break or control character).",
                code="unprintable_lead_name",
            )
        if name in names[: number - 1]:
            raise ValidationError(
                f"Lead name {name!r} is given twice: each channel needs its own name.",
                code="duplicate_lead_name",
            )
    return names


def validate_lead_names(text: str) -> None:
    """``parse_lead_names`` as a field validator, so that the admin refuses what it refuses."""
    parse_lead_names(text)


# The earliest birth date accepted: before it is a typo (a patient would be over 120).
EARLIEST_BIRTH_DATE = date(1900, 1, 1)


def validate_birth_date(value: date) -> None:
    """Refuse a birth date in the future (a typo such as 2099 would show "Born Jan. 1, 2099")
    or before ``EARLIEST_BIRTH_DATE``. A field validator, so that the admit and edit forms and
    the admin refuse it alike."""
    today = timezone.localdate()
    if value > today:
        raise ValidationError(
            "The birth date %(value)s is in the future (today is %(today)s).",
            code="future_birth_date",
            params={"value": value.isoformat(), "today": today.isoformat()},
        )
    if value < EARLIEST_BIRTH_DATE:
        raise ValidationError(
            "The birth date %(value)s is before %(earliest)s; check the year.",
            code="birth_date_too_early",
            params={"value": value.isoformat(), "earliest": EARLIEST_BIRTH_DATE.isoformat()},
        )


class PatientQuerySet(models.QuerySet):
    def visible_to(self, user) -> "PatientQuerySet":
        """Patients a user may see: staff see all, a clinician only those assigned to them."""
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(clinicians=user)


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        OTHER = "O", "Other"
        UNKNOWN = "U", "Unknown"

    mrn = models.CharField(
        "MRN", max_length=64, unique=True, help_text="Medical record number, unique per site."
    )
    name = models.CharField(max_length=200)
    birth_date = models.DateField(null=True, blank=True, validators=[validate_birth_date])
    sex = models.CharField(max_length=1, choices=Sex.choices, default=Sex.UNKNOWN)
    ward = models.CharField(max_length=100, blank=True, help_text="Groups tiles on the station.")
    bed = models.CharField(max_length=50, blank=True)
    notes = models.TextField(blank=True)
    is_active = models.BooleanField(
        "admitted", default=True, help_text="Discharged patients stay for review."
    )
    clinicians = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="assigned_patients", blank=True
    )

    # Alarm limits, per patient. Defaults follow common adult bedside-monitor presets.
    hr_low_limit_bpm = models.PositiveSmallIntegerField(
        "HR low limit (bpm)", default=50, validators=[MinValueValidator(20)]
    )
    hr_high_limit_bpm = models.PositiveSmallIntegerField(
        "HR high limit (bpm)", default=120, validators=[MaxValueValidator(300)]
    )
    pause_limit_s = models.FloatField(
        "pause limit (s)",
        default=3.0,
        validators=[MinValueValidator(1.0), MaxValueValidator(15.0)],
        help_text="No beat for this long raises a pause/asystole alarm.",
    )
    pvc_limit_per_min = models.PositiveSmallIntegerField(
        "PVC limit (per min)", default=10, validators=[MaxValueValidator(60)]
    )
    # Off by default: the 2-s window model (window-cnn-mitdb) calls about half of the normal
    # windows of unseen patients "arrhythmia" (DS2 specificity 0.53), so on normal rhythms
    # (MIT-BIH 113, 117, 123) this alarm was open most of the time (docs/alarms.md).
    sustained_arrhythmia_alarm = models.BooleanField(
        "sustained-arrhythmia alarm (2-s window model)",
        default=False,
        help_text="Off by default: the window model's specificity on unseen patients is 0.53, "
        "so it raises this warning on normal rhythms too. The beat-based alarms (VT, VF, AF, "
        "PVC, pause, heart rate) do not depend on it.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PatientQuerySet.as_manager()

    class Meta:
        ordering = ["ward", "bed", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(hr_low_limit_bpm__lt=models.F("hr_high_limit_bpm")),
                name="patient_hr_low_below_high",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.mrn})"

    @property
    def has_first_call_recipient(self) -> bool:
        """Whether anyone is told of an alarm when it is raised (the escalation list hears
        only of alarms nobody acknowledged in time)."""
        return self.alarm_recipients.filter(escalation=False).exists()

    def clean(self) -> None:
        if (
            self.hr_low_limit_bpm is not None
            and self.hr_high_limit_bpm is not None
            and self.hr_low_limit_bpm >= self.hr_high_limit_bpm
        ):
            raise ValidationError(
                {"hr_low_limit_bpm": "The low heart-rate limit must be below the high limit."}
            )


TOKEN_PREFIX = "csd_"  # noqa: S105 (a prefix, not a secret) makes a leaked device token recognisable in logs and secret scanners


def hash_token(token: str) -> str:
    # Tokens are 256-bit random values, so a plain SHA-256 is enough: there is nothing
    # to brute-force, and a single indexed lookup per request stays cheap.
    return hashlib.sha256(token.encode()).hexdigest()


class DeviceQuerySet(models.QuerySet):
    def visible_to(self, user) -> "DeviceQuerySet":
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(patient__clinicians=user)

    def authenticate(self, token: str) -> "Device | None":
        """The active device holding this token, or None."""
        if not token or not token.startswith(TOKEN_PREFIX):
            return None
        return self.filter(token_hash=hash_token(token), is_active=True).first()


class Device(models.Model):
    serial = models.CharField(max_length=64, unique=True)
    label = models.CharField(max_length=200, blank=True)
    patient = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices"
    )
    firmware_version = models.CharField(max_length=64, blank=True)
    sampling_rate_hz = models.FloatField(
        "declared sampling rate (Hz)", default=250.0, validators=sampling_rate_validators
    )
    gain_adc_per_mv = models.FloatField(
        "declared gain (ADC units per mV)", default=200.0, validators=gain_validators
    )
    # The device protocol has no lead field: the lead is how the device is placed on the
    # patient, which staff know. A recording copies them when it opens (ingest.lead_names_for);
    # a change applies to the next recording, not to the ones already stored.
    lead_names = models.CharField(
        "lead names",
        max_length=300,
        default="II",
        validators=[validate_lead_names],
        help_text="How the device is placed: the lead of each channel, in channel order, "
        "separated by commas (e.g. II, or I, II, V1). Its next recording takes them; one "
        "whose channel count differs is named ch1, ch2, ... instead.",
    )
    is_active = models.BooleanField(
        default=True, help_text="Inactive devices are refused, whatever token they present."
    )
    # Only a hash is stored; the token itself is shown once, when issued.
    token_hash = models.CharField(max_length=64, unique=True, null=True, editable=False)
    token_hint = models.CharField(
        max_length=16, blank=True, editable=False, help_text="First characters of the token."
    )
    token_issued_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When it was given its present patient (None: it has none). A device that has sent that
    # patient nothing since raises the technical device-offline alarm for them after
    # DEVICE_NO_DATA_AFTER_ASSIGN_S (alarms.assigned_silence_condition): set by save(), so
    # that every page that assigns or moves a device dates it.
    assigned_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When it was given its present patient: sending them nothing since raises "
        "device offline.",
    )
    # What the device said in its last chunk (device protocol v1): the technical alarms
    # (issue 6) read these.
    battery_pct = models.PositiveSmallIntegerField(
        "battery (%)", null=True, blank=True, editable=False
    )
    lead_off = models.BooleanField(
        "lead off",
        default=False,
        editable=False,
        help_text="An electrode was off in the last chunk.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["serial"]
        constraints = [
            # The live pages, the alarms and the review follow one ECG stream per patient:
            # two devices streaming for one patient would interleave their samples on the
            # trace. Assigning a second device replaces the first (dashboard_views).
            models.UniqueConstraint(
                fields=["patient"],
                condition=models.Q(patient__isnull=False),
                name="one_device_per_patient",
                violation_error_message=(
                    "This patient already has a device: unassign it first, or assign from "
                    "the patient's page, which replaces it."
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.serial} ({self.label})" if self.label else self.serial

    def save(self, *args, **kwargs) -> None:
        """Save; an assignment to another patient (or a first one) dates ``assigned_at``.

        The patient it had is read from its row, not from this object: a page may hold an
        object read before another page moved the device."""
        update_fields = kwargs.get("update_fields")
        if update_fields is None or {"patient", "patient_id"} & set(update_fields):
            before = None
            if self.pk is not None:
                before = Device.objects.filter(pk=self.pk).values_list("patient_id", flat=True)
                before = before.first()
            if self.patient_id is None:
                self.assigned_at = None
            elif self.patient_id != before:
                self.assigned_at = timezone.now()
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "assigned_at"}
        super().save(*args, **kwargs)

    def clean(self) -> None:
        super().clean()
        if self.patient is not None and not self.patient.is_active:
            # it would record and alarm for a patient no station shows
            raise ValidationError(
                {"patient": f"{self.patient.name} is discharged: readmit them first."}
            )
        if self.patient is not None and not self.is_active:
            # An inactive device's token is refused and its silence raises no device-offline
            # alarm (alarms.technical_conditions), so a patient wearing one would be shown
            # with a device and watched by nobody. Deactivating it means taking it off them.
            raise ValidationError(
                {
                    "is_active": f"An inactive device cannot be assigned to a patient "
                    f"({self.patient.name}): to deactivate {self.serial}, also clear its "
                    "patient (their monitoring then stops); to assign it, make it active."
                }
            )

    def issue_token(self) -> str:
        """Create a new secret token, replacing any earlier one, and return it.

        The caller shows it once; afterwards only its hash is known. Saves the device.
        """
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.token_hash = hash_token(token)
        self.token_hint = token[: len(TOKEN_PREFIX) + 4]
        self.token_issued_at = timezone.now()
        if self.pk is None:
            self.save()
        else:
            # only the token: the rest of this object may be older than its row (a discharge
            # that unassigned the device since it was read must not be undone)
            self.save(update_fields=["token_hash", "token_hint", "token_issued_at"])
        return token

    def touch(self) -> None:
        """Record that the device was heard from now."""
        self.last_seen_at = timezone.now()
        Device.objects.filter(pk=self.pk).update(last_seen_at=self.last_seen_at)


USER_TOKEN_PREFIX = "csu_"  # noqa: S105 (a prefix, not a secret), as TOKEN_PREFIX for devices


class ApiTokenQuerySet(models.QuerySet):
    def authenticate(self, key: str) -> "ApiToken | None":
        """The token with this key, its user loaded, or None (any key: the ones issued before
        CardioSpike's own tokens were DRF's 40 hex digits without a prefix)."""
        if not key:
            return None
        return self.filter(key_hash=hash_token(key)).select_related("user").first()


class ApiToken(models.Model):
    """A user's key for the REST API (``Authorization: Token <key>``).

    As with device tokens only a hash is kept: a copy of the database gives no one a way in.
    The key is shown once, when issued (the admin's "API tokens"); a user may hold several
    (one per script or notebook) and each is revoked by deleting it.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, help_text="What it is for.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=16, editable=False, help_text="First characters of the key.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["user", "-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.hint}… ({self.user}{', ' + self.name if self.name else ''})"

    def new_key(self) -> str:
        """Give this (unsaved) token a new random key and return it: the caller shows it once."""
        key = USER_TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.key_hash = hash_token(key)
        self.hint = key[: len(USER_TOKEN_PREFIX) + 4]
        return key

    @classmethod
    def issue(cls, user, name: str = "") -> tuple["ApiToken", str]:
        """A new, saved token of ``user`` and its key."""
        token = cls(user=user, name=name)
        key = token.new_key()
        token.save()
        return token, key


class RecordingQuerySet(models.QuerySet):
    def visible_to(self, user) -> "RecordingQuerySet":
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(patient__clinicians=user)


class UploadFormat(models.TextChoices):
    WFDB = "wfdb", "WFDB record"
    CSV_SIGNAL = "csv-signal", "CSV signal"
    KAGGLE187 = "kaggle187", "CSV beat rows, 187 values (Kaggle, 125 Hz)"
    WINDOW216 = "window216", "CSV beat rows, 216 values (360 Hz)"


BEAT_ROW_FORMATS = (UploadFormat.KAGGLE187, UploadFormat.WINDOW216)


class AnalysisStatus(models.TextChoices):
    NONE = "none", "Not requested"
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


# An upload whose file gave no start starts at the moment it is stored, and its row's
# created_at is taken microseconds later. A start from a header lies at least the record's
# duration (2 s or more) before the upload: one that would end after it is refused. So a
# start within this of created_at is the upload time, for the uploads stored before the
# header's start was read too (docs/upload.md, "When the recording started").
UPLOAD_TIME_TOLERANCE = timedelta(seconds=1)


class Recording(models.Model):
    class Source(models.TextChoices):
        DEVICE = "device", "Device stream"
        UPLOAD = "upload", "Uploaded file"

    class Status(models.TextChoices):
        LIVE = "live", "Live"
        CLOSED = "closed", "Closed"

    class ClosedBy(models.TextChoices):
        OPEN = "", "Not closed"
        DEVICE = "device", "The device"
        SILENCE = "silence", "Silence timeout"
        SERVER = "server", "The server (a new session)"
        DISCHARGE = "discharge", "The patient's discharge"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="recordings")
    device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="recordings"
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.DEVICE)
    source_name = models.CharField(
        max_length=255, blank=True, help_text="Uploaded file or WFDB record name."
    )
    # who put an uploaded recording into the patient's record (kept if the account goes)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
        help_text="Who uploaded it (uploads only).",
    )
    sampling_rate_hz = models.FloatField("sampling rate (Hz)", validators=sampling_rate_validators)
    gain_adc_per_mv = models.FloatField("gain (ADC units per mV)", validators=gain_validators)
    baseline_adc = models.IntegerField(
        "baseline (ADC units)", default=0, help_text="ADC value that corresponds to 0 mV."
    )
    n_channels = models.PositiveSmallIntegerField(
        "channels", default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_CHANNELS)]
    )
    lead_names = models.JSONField(default=list, help_text='One name per channel, e.g. ["II"].')
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.LIVE)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Index of the first sample the analysis has not consumed yet; it moves forward in
    # the same transaction as the analysis results it covers.
    analysis_cursor = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    # Device streams (docs/device-protocol.md). A recording is one session of one device.
    session = models.CharField(
        max_length=64, blank=True, editable=False, help_text="The device's session id."
    )
    closed_by = models.CharField(
        max_length=10, choices=ClosedBy.choices, blank=True, default="", editable=False
    )
    last_chunk_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Running totals kept by the ingest path so an acknowledgment costs no scan of the chunks:
    # the lowest sequence number not received, one past the highest sample stored, and the
    # samples stored (end - stored = samples missing below the end).
    next_seq = models.BigIntegerField(default=0, editable=False)
    end_sample = models.BigIntegerField(default=0, editable=False)
    stored_samples = models.BigIntegerField(default=0, editable=False)
    # Streaming analysis (monitoring/streaming.py): the analyzer's saved state, the first
    # sample of the stretch it analyses (a final gap starts a new stretch), and the
    # coalescing flags: at most one analysis task queued or running per recording.
    stream_state = models.BinaryField(null=True, blank=True, editable=False)
    stream_start_sample = models.BigIntegerField(default=0, editable=False)
    stream_pending = models.BooleanField(
        default=False, editable=False, help_text="New samples arrived since the last run began."
    )
    stream_queued_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When a task was queued or last ran."
    )

    # Batch analysis of uploaded files (monitoring/analysis.py). The status, summary and
    # agreement are written in the same transaction as the recording's beats and episodes.
    upload_format = models.CharField(
        max_length=20, choices=UploadFormat.choices, blank=True, editable=False
    )
    analysis_lead = models.PositiveSmallIntegerField(
        "analysed channel", default=0, help_text="Index of the channel the analysis reads."
    )
    analysis_status = models.CharField(
        max_length=10, choices=AnalysisStatus.choices, default=AnalysisStatus.NONE
    )
    analysis_error = models.TextField(blank=True)
    analysis_summary = models.JSONField(
        default=dict, blank=True, help_text="Heart rate, counts per class, burden, episodes."
    )
    analysis_agreement = models.JSONField(
        null=True, blank=True, help_text="Agreement with the file's own labels, when it had some."
    )
    analyzed_at = models.DateTimeField(null=True, blank=True)
    # When the analysis was last queued. A worker killed mid-task (out of memory, kill -9) takes
    # the task with it and nothing else would ever change a pending status: the periodic sweep
    # fails one pending far longer than any analysis takes (monitoring.analysis).
    analysis_queued_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the analysis was last queued."
    )
    # The file's own beat labels, kept until (and after) the analysis compares with them:
    # {"samples": [...], "labels": [...]} for signals, {"labels": [...]} per row for rows.
    reference_annotations = models.JSONField(null=True, blank=True, editable=False)

    objects = RecordingQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["status", "started_at"]),
            models.Index(fields=["device", "session"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["device", "session"],
                condition=~Q(session=""),
                name="recording_unique_device_session",
            ),
            models.CheckConstraint(
                condition=Q(n_channels__gte=1) & Q(n_channels__lte=MAX_CHANNELS),
                name="recording_n_channels_range",
            ),
            models.CheckConstraint(
                condition=Q(sampling_rate_hz__gt=0), name="recording_sampling_rate_positive"
            ),
            models.CheckConstraint(
                condition=Q(gain_adc_per_mv__gt=0), name="recording_gain_positive"
            ),
            models.CheckConstraint(
                condition=Q(analysis_cursor__gte=0), name="recording_cursor_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"Recording {self.pk} of {self.patient.mrn} ({self.get_status_display()})"

    def save(self, *args, **kwargs):
        # Lead names and channel count must agree on every path that writes a recording
        # (admin, API, upload, ingest), not only in forms.
        self.clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if not isinstance(self.lead_names, list) or not all(
            isinstance(name, str) and name for name in self.lead_names
        ):
            raise ValidationError({"lead_names": "Give a list of non-empty lead names."})
        if len(self.lead_names) != self.n_channels:
            raise ValidationError(
                {
                    "lead_names": f"{len(self.lead_names)} lead names for "
                    f"{self.n_channels} channels; give one name per channel."
                }
            )

    @property
    def start_is_upload_time(self) -> bool:
        """Whether an uploaded recording starts at its upload (its file gave no start: a CSV,
        a WFDB header without a base date), so that its clock times are not the recording's.

        Told from the stored times (``UPLOAD_TIME_TOLERANCE``): the upload's moment is the
        row's creation. False for a device recording, whose start is when its sample 0 was
        taken.
        """
        return (
            self.source == Recording.Source.UPLOAD
            and abs(self.started_at - self.created_at) < UPLOAD_TIME_TOLERANCE
        )

    @property
    def analysis_lead_name(self) -> str:
        """The name of the channel the analysis reads (``analysis_lead``), as pages show it."""
        return self.lead_names[self.analysis_lead]

    def to_mv(self, adc: np.ndarray) -> np.ndarray:
        """Convert ADC units to millivolts with this recording's baseline and gain."""
        return (np.asarray(adc, dtype=np.float64) - self.baseline_adc) / self.gain_adc_per_mv


class SampleChunk(models.Model):
    """A contiguous run of samples as a device (or an upload) delivered it.

    ``(recording, seq)`` is unique in the database, so a retried chunk is stored once.
    """

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="chunks")
    seq = models.BigIntegerField("sequence number", validators=[MinValueValidator(0)])
    first_sample = models.BigIntegerField("first sample index", validators=[MinValueValidator(0)])
    n_samples = models.PositiveIntegerField("samples per channel")
    data = models.BinaryField(help_text="int16 little-endian, channels interleaved")
    received_at = models.DateTimeField(default=timezone.now)
    # The device's front end reported an electrode off while it sampled this chunk: its samples
    # are kept (what the device sent) but are no ECG, and the streaming analysis treats them
    # as a gap (monitoring/streaming.py). Set once, when the chunk is stored.
    lead_off = models.BooleanField(
        "lead off",
        default=False,
        editable=False,
        help_text="An electrode was off while this chunk was sampled: not analysed as ECG.",
    )

    class Meta:
        ordering = ["recording", "first_sample"]
        constraints = [
            models.UniqueConstraint(fields=["recording", "seq"], name="chunk_unique_seq"),
            models.CheckConstraint(condition=Q(n_samples__gt=0), name="chunk_not_empty"),
            models.CheckConstraint(condition=Q(seq__gte=0), name="chunk_seq_non_negative"),
            models.CheckConstraint(
                condition=Q(first_sample__gte=0), name="chunk_first_sample_non_negative"
            ),
        ]
        indexes = [models.Index(fields=["recording", "first_sample"])]

    def __str__(self) -> str:
        return f"chunk {self.seq} of recording {self.recording_id}"

    @classmethod
    def from_samples(
        cls, recording: Recording, seq: int, first_sample: int, samples: np.ndarray
    ) -> "SampleChunk":
        """An unsaved chunk holding ``samples`` of shape (n_samples, n_channels) in ADC units."""
        array = np.asarray(samples)
        if array.ndim == 1:
            array = array[:, np.newaxis]
        if array.ndim != 2 or array.shape[1] != recording.n_channels:
            raise ValueError(
                f"samples have shape {array.shape}; recording {recording.pk} has "
                f"{recording.n_channels} channel(s), so expected (n, {recording.n_channels})"
            )
        return cls(
            recording=recording,
            seq=seq,
            first_sample=first_sample,
            n_samples=array.shape[0],
            data=encode_int16(array),
        )

    @property
    def end_sample(self) -> int:
        """Index one past the last sample of this chunk."""
        return self.first_sample + self.n_samples

    def samples(self) -> np.ndarray:
        """The stored samples, int16, shape (n_samples, n_channels)."""
        array = decode_int16(self.data, self.recording.n_channels)
        if array.shape[0] != self.n_samples:
            raise ValueError(
                f"chunk {self.pk} holds {array.shape[0]} samples but records {self.n_samples}"
            )
        return array


class GivenUpGap(models.Model):
    """Samples of a device recording that no chunk covered when the streaming analysis gave
    up waiting for them (``DEVICE_GAP_WAIT_S``) and went past. A chunk stored there later is
    never read by the live analysis: the backfill (``monitoring.backfill``) analyses it.
    ``backfilled_chunk_id``: the chunks of the recording up to this primary key were
    backfilled (a recording's chunks are stored one at a time, under its device's lock, so
    their keys grow in the order they commit). ``backfill_failed``: the backfill raised
    (logged) and is not tried again for this gap."""

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="given_up_gaps")
    start_sample = models.BigIntegerField(validators=[MinValueValidator(0)])
    end_sample = models.BigIntegerField()
    given_up_at = models.DateTimeField(default=timezone.now)
    backfilled_chunk_id = models.BigIntegerField(default=0)
    backfill_failed = models.BooleanField(default=False)

    class Meta:
        ordering = ["recording", "start_sample"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_sample__gt=models.F("start_sample")),
                name="given_up_gap_not_empty",
            )
        ]

    def __str__(self) -> str:
        return f"gap {self.start_sample}-{self.end_sample} of recording {self.recording_id}"


class Prediction(models.Model):
    """One model verdict on one window: part of a recording, or an ad-hoc API request."""

    recording = models.ForeignKey(
        Recording, null=True, blank=True, on_delete=models.CASCADE, related_name="predictions"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="Who asked, for ad-hoc requests.",
    )
    model_name = models.CharField(max_length=100)
    model_version = models.CharField(max_length=50)
    window_start = models.BigIntegerField(
        "window start (sample index)", null=True, blank=True, help_text="Empty for ad-hoc input."
    )
    window_length = models.PositiveIntegerField("window length (samples)", null=True, blank=True)
    label = models.CharField(max_length=50)
    probabilities = models.JSONField(help_text="Class name to probability.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["recording", "window_start"]),
            models.Index(fields=["model_name", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} {self.model_version}: {self.label}"


AAMI_CLASS_CHOICES = [
    ("N", "N: normal or bundle branch block"),
    ("S", "S: supraventricular ectopic"),
    ("V", "V: ventricular ectopic"),
    ("F", "F: fusion"),
    ("Q", "Q: paced or unclassifiable"),
]


class Beat(models.Model):
    """One classified heartbeat of a recording, or one row of a beat-per-row upload."""

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="beats")
    index = models.PositiveIntegerField("beat number", help_text="0-based, in time order.")
    sample = models.BigIntegerField("R peak (sample index)", validators=[MinValueValidator(0)])
    label = models.CharField("AAMI class", max_length=1, choices=AAMI_CLASS_CHOICES)
    confidence = models.FloatField(help_text="Probability of the label.")
    probabilities = models.JSONField(help_text="Class to probability, N S V F Q.")
    reference_label = models.CharField(
        max_length=1,
        choices=AAMI_CLASS_CHOICES,
        blank=True,
        help_text="The uploaded file's label for this beat, when it had one.",
    )
    row = models.PositiveIntegerField(
        "CSV row", null=True, blank=True, help_text="1-based data row, for beat-per-row files."
    )
    provisional = models.BooleanField(
        default=False,
        help_text="A live beat whose label may still change: stored about one RR interval "
        "after its R peak, confirmed about 6 s later (inference/streaming.py).",
    )
    p_wave = models.FloatField(
        "P-wave correlation",
        null=True,
        blank=True,
        help_text="Correlation of the ECG before the QRS with the dominant beat's P wave "
        "(inference/atrial.py): near 1 for a consistent P wave, near 0 in atrial "
        "fibrillation; empty where the beat does not look like the dominant one. The AF "
        "detector reads it.",
    )

    class Meta:
        ordering = ["recording", "index"]
        constraints = [
            models.UniqueConstraint(fields=["recording", "index"], name="beat_unique_index"),
            models.CheckConstraint(
                condition=Q(confidence__gte=0) & Q(confidence__lte=1),
                name="beat_confidence_probability",
            ),
        ]
        # every analysis round reads a recording's recent beats by R-peak sample (alarms,
        # episodes, the live backlog): without it a long recording's beats are all scanned
        indexes = [models.Index(fields=["recording", "sample"], name="beat_recording_sample")]

    def __str__(self) -> str:
        return f"beat {self.index} ({self.label}) of recording {self.recording_id}"

    @staticmethod
    def stored_p_wave(value: float) -> float | None:
        """A P-wave correlation as the column keeps it: NaN (no comparable beat) as empty,
        6 decimals (the streamed and the offline analysis store the same numbers)."""
        return None if math.isnan(value) else round(float(value), 6)


class Episode(models.Model):
    """A rhythm episode found by the analysis (AF, VT, VF, bradycardia, tachycardia, pause)."""

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="episodes")
    kind = models.CharField(max_length=10)
    start_s = models.FloatField("start (s)", validators=[MinValueValidator(0.0)])
    end_s = models.FloatField("end (s)")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["recording", "start_s"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_s__gte=models.F("start_s")), name="episode_ends_after_start"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.start_s:.1f}-{self.end_s:.1f} s of recording {self.recording_id}"

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


# --- Alarms and notifications (issue 6; monitoring/alarms.py, monitoring/notifications.py) --


class AlarmKind(models.TextChoices):
    HR_HIGH = "HR_HIGH", "Heart rate high"
    HR_LOW = "HR_LOW", "Heart rate low"
    PAUSE = "PAUSE", "Pause/asystole"
    VT = "VT", "Ventricular tachycardia"
    VF = "VF", "Ventricular fibrillation/flutter"
    AF = "AF", "Atrial fibrillation onset"
    PVC = "PVC", "Frequent PVCs"
    ARRHYTHMIA = "ARRHYTHMIA", "Sustained arrhythmia (2-s window model)"
    DEVICE_OFFLINE = "DEVICE_OFFLINE", "Device offline"
    LEADS_OFF = "LEADS_OFF", "Leads off"
    SIGNAL_QUALITY = "SIGNAL_QUALITY", "Poor signal quality"
    BATTERY_LOW = "BATTERY_LOW", "Device battery low"


# The unit of an alarm's ``value`` and ``limit``, by kind, for clients that read the numbers
# rather than the message (monitoring/alarms.py sets them). A PVC alarm in a stretch's first
# minute counts the PVCs so far against the per-minute limit ("PVC 12 in the first 20 s").
ALARM_VALUE_UNITS = {
    AlarmKind.HR_HIGH: "bpm",
    AlarmKind.HR_LOW: "bpm",
    AlarmKind.PAUSE: "s",
    AlarmKind.VT: "bpm",
    AlarmKind.VF: "s",
    AlarmKind.AF: "s",
    AlarmKind.PVC: "PVCs/min",
    AlarmKind.ARRHYTHMIA: "windows",
    AlarmKind.DEVICE_OFFLINE: "s",
    AlarmKind.LEADS_OFF: None,  # no value: the electrodes are off or not
    AlarmKind.SIGNAL_QUALITY: "s",
    AlarmKind.BATTERY_LOW: "%",
}


class AlarmPriority(models.TextChoices):
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"
    TECHNICAL = "technical", "Technical"


class AlarmState(models.TextChoices):
    RAISED = "raised", "Raised"
    NOTIFIED = "notified", "Notified"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class AlarmQuerySet(models.QuerySet):
    def visible_to(self, user) -> "AlarmQuerySet":
        """Alarms of the patients a user may see (staff: all; a clinician: assigned ones)."""
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(patient__clinicians=user)

    def open(self) -> "AlarmQuerySet":
        return self.exclude(state=AlarmState.RESOLVED)

    def latched(self, now) -> "AlarmQuerySet":
        """Critical alarms that resolved before anyone acknowledged them (:func:`latched_q`)."""
        return self.filter(latched_q(now))

    def waiting(self, now) -> "AlarmQuerySet":
        """Alarms a page must keep in view: the open ones and the latched ones."""
        return self.filter(~Q(state=AlarmState.RESOLVED) | latched_q(now))

    def active_during(self, start=None, end=None) -> "AlarmQuerySet":
        """Alarms active at some moment of ``[start, end)`` (either bound None: open-ended):
        raised before ``end``, and raised at or after ``start``, still open, or resolved after
        ``start``. The alarm history and the API's since and until: an alarm raised at 18:50
        that stayed open through the night (acknowledged or not) belongs to "the last 12 hours"
        at 07:00, and listing only those raised in the range left it out. Plain comparisons
        and NOT, no database's own SQL; "raised in the range" is kept for an alarm resolved
        without a time (``resolved_at`` null), which the other two terms would miss."""
        alarms = self
        if end is not None:
            alarms = alarms.filter(raised_at__lt=end)
        if start is not None:
            alarms = alarms.filter(
                Q(raised_at__gte=start) | ~Q(state=AlarmState.RESOLVED) | Q(resolved_at__gt=start)
            )
        return alarms


def latched_q(now) -> Q:
    """Critical alarms latch (IEC 60601-1-8): one that resolved by itself before anyone
    acknowledged it still wants acknowledging, so it is escalated and the station shows it
    until someone does; not once it is older than ``NOTIFY_GIVE_UP_S`` (its messages are given
    up too). ``Alarm.latches`` is set when a critical alarm is raised and cleared by a discharge
    (which resolves every alarm on purpose); alarms from before latching began have it off,
    so an upgrade does not light the stations with old ones. No join: a locking claim on it
    is re-checked as it stands (notifications.escalate_unacknowledged)."""
    return Q(
        latches=True,
        state=AlarmState.RESOLVED,
        acknowledged_at__isnull=True,
        raised_at__gte=now - timedelta(seconds=settings.NOTIFY_GIVE_UP_S),
    )


class Alarm(models.Model):
    """One occurrence of an alarm condition, from raised to resolved.

    The database keeps at most one open (not resolved) alarm per patient and kind, so a
    condition that lasts is one alarm however often it is evaluated; it is raised again as a
    new row only after it was resolved.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="alarms")
    recording = models.ForeignKey(
        Recording, null=True, blank=True, on_delete=models.SET_NULL, related_name="alarms"
    )
    kind = models.CharField(max_length=20, choices=AlarmKind.choices)
    priority = models.CharField(max_length=10, choices=AlarmPriority.choices)
    message = models.CharField(max_length=200, help_text='The value and the limit: "HR 134 > 120".')
    value = models.FloatField(null=True, blank=True, help_text="In the unit of the message.")
    limit = models.FloatField(null=True, blank=True)
    state = models.CharField(max_length=15, choices=AlarmState.choices, default=AlarmState.RAISED)
    raised_at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="acknowledged_alarms",
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(
        null=True, blank=True, help_text="When the escalation list was notified (once)."
    )
    latches = models.BooleanField(
        default=False,
        help_text="Still to be acknowledged after it resolves (escalation, station): critical "
        "alarms raised since latching began; a discharge ends it.",
    )
    details = models.JSONField(
        default=dict, blank=True, help_text="Rule inputs; 'sample' is the event's sample index."
    )

    objects = AlarmQuerySet.as_manager()

    class Meta:
        ordering = ["-raised_at", "-id"]
        indexes = [models.Index(fields=["patient", "state"]), models.Index(fields=["raised_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "kind"],
                condition=~Q(state="resolved"),
                name="alarm_one_open_per_patient_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_priority_display()} {self.kind}: {self.message} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state != AlarmState.RESOLVED

    @property
    def unit(self) -> str | None:
        """The unit of ``value`` and ``limit`` (None when the kind has no value)."""
        return ALARM_VALUE_UNITS[self.kind]


class Transport(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook (HTTP POST, JSON)"


class AlarmRecipient(models.Model):
    """Who is told about a patient's alarms: at once, or (escalation) when nobody acknowledges."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="alarm_recipients")
    address = models.CharField(max_length=500, help_text="An email address or a webhook URL.")
    transport = models.CharField(max_length=10, choices=Transport.choices, default=Transport.EMAIL)
    escalation = models.BooleanField(
        default=False, help_text="Only notified when an alarm stays unacknowledged."
    )

    class Meta:
        ordering = ["patient", "escalation", "address"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "address", "transport", "escalation"],
                name="alarm_recipient_unique",
            )
        ]

    def __str__(self) -> str:
        role = "escalation" if self.escalation else "first call"
        return f"{self.address} ({self.transport}, {role})"

    def clean(self) -> None:
        # refused here, where the dashboard and the admin both pass, rather than found out
        # when the first alarm's notification fails
        if self.transport == Transport.EMAIL:
            validator = EmailValidator(f"Enter an email address, got {self.address!r}.")
        else:
            validator = URLValidator(
                schemes=["http", "https"],
                message=f"A webhook address is an http(s) URL, got {self.address!r}.",
            )
        try:
            validator(self.address)
        except ValidationError as exc:
            raise ValidationError({"address": exc.messages}) from None
        if self.transport == Transport.WEBHOOK:
            # not the server itself nor the hospital's internal services (SSRF); checked again
            # at every send, since DNS may change (monitoring/webhooks.py)
            from monitoring.webhooks import WebhookError, WebhookRefused, check_url

            try:
                check_url(self.address)
            except WebhookRefused as exc:
                raise ValidationError(
                    {
                        "address": f"Refused: {exc}. A webhook may only go to a public address, "
                        "or to a network an administrator allowed (WEBHOOK_ALLOWED_NETWORKS)."
                    }
                ) from None
            except WebhookError as exc:
                raise ValidationError({"address": f"{exc}, got {self.address!r}."}) from None


class NotificationState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (gave up)"
    CANCELLED = "cancelled", "Cancelled (acknowledged before it went out)"


class Notification(models.Model):
    """One alarm to one recipient over one transport; sent at most once by one worker."""

    alarm = models.ForeignKey(Alarm, on_delete=models.CASCADE, related_name="notifications")
    recipient = models.CharField(max_length=500)
    transport = models.CharField(max_length=10, choices=Transport.choices)
    escalation = models.BooleanField(default=False)
    state = models.CharField(
        max_length=10, choices=NotificationState.choices, default=NotificationState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="When a worker took it (state sending)."
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["alarm", "recipient", "transport", "escalation"],
                name="notification_once_per_recipient",
            )
        ]

    def __str__(self) -> str:
        return f"{self.transport} to {self.recipient} for alarm {self.alarm_id} ({self.state})"


class NotificationAttempt(models.Model):
    """One try at sending a notification, successful or not."""

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="attempt_log"
    )
    started_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["notification", "started_at", "id"]

    def __str__(self) -> str:
        outcome = "ok" if self.ok else f"error: {self.error[:60]}"
        return f"attempt on {self.notification_id} at {self.started_at:%H:%M:%S} ({outcome})"


class Heartbeat(models.Model):
    """When a periodic task (the alarm check) last completed: one row per task, overwritten
    each time (``periodic.heartbeat``), so that ``/health`` can tell a check that stopped."""

    name = models.CharField(max_length=200, unique=True, help_text="The task's celery name.")
    completed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} completed at {self.completed_at:%Y-%m-%d %H:%M:%S}"


# --- Audit trail (issue 6, the dashboard's patient management) ------------------------------


AUDIT_VALUE_LENGTH = 600


class AuditEntry(models.Model):
    """One change of one patient setting (an alarm limit) by one user: who, when, old, new.

    Written in the same transaction as the change itself, so the trail can never miss a change
    that was saved: by the management views (monitoring/dashboard_views.py) and the admin
    site (monitoring/admin.py).
    """

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="audit_entries")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="audit_entries",
        help_text="Who made the change (kept empty if the account is deleted later).",
    )
    changed_at = models.DateTimeField(default=timezone.now)
    field = models.CharField(max_length=64, help_text="The model field that changed.")
    # room for the longest value written: a recipient's label, its address (up to 500) and
    # " (webhook, escalation)"; cut, a long address lost the part that says what changed
    old_value = models.CharField(max_length=AUDIT_VALUE_LENGTH, blank=True)
    new_value = models.CharField(max_length=AUDIT_VALUE_LENGTH, blank=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["patient", "changed_at"])]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.field}: {self.old_value} -> {self.new_value} ({self.patient_id})"

    @classmethod
    def record(cls, user, patient: Patient, field: str, old, new) -> "AuditEntry":
        """One change, written by whoever made it (the management views and the admin site)."""
        # every value written fits the columns; the cut only keeps a longer one from failing
        # the transaction of the change it records
        return cls.objects.create(
            patient=patient,
            user=user,
            field=field,
            old_value="" if old is None else str(old)[:AUDIT_VALUE_LENGTH],
            new_value="" if new is None else str(new)[:AUDIT_VALUE_LENGTH],
        )
