"""Forms of the staff's patient and device management pages (monitoring/dashboard_views.py).

Plain Django model forms: the model's validators and ``clean`` (HR low below high) are the
rules, so a form cannot accept what the database or the admin would refuse.
"""

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import connection
from django.db.models import Q

from monitoring.login_throttle import is_locked_out, locked_out_message
from monitoring.models import AlarmRecipient, AuditEntry, Device, Patient, Transport

# The limits (and alarm switches) whose every change is written to the audit trail (AuditEntry).
LIMIT_FIELDS = (
    "hr_low_limit_bpm",
    "hr_high_limit_bpm",
    "pause_limit_s",
    "pvc_limit_per_min",
    "sustained_arrhythmia_alarm",
)


def clean_unique_mrn(form) -> str:
    """The MRN, refused when another patient has it in other letter case: ``mrn-001`` and
    ``MRN-001`` are one patient's record number typed twice, not two patients (the database's
    unique constraint compares case-sensitively)."""
    mrn = form.cleaned_data["mrn"]
    taken = Patient.objects.filter(mrn__iexact=mrn).exclude(pk=form.instance.pk).first()
    if taken is not None and taken.mrn != mrn:
        raise forms.ValidationError(f"Patient {taken.name} already has MRN {taken.mrn}.")
    return mrn


def lock_bed(ward: str, bed: str) -> None:
    """Hold, until the current transaction ends, a lock that serialises the admissions (and
    moves, readmissions) to this ward and bed, letter case aside, as ``check_bed_free``
    compares them.

    A row lock cannot do it: the race is over a bed nobody occupies yet, so there is no row to
    lock. On PostgreSQL a transaction-level advisory lock keyed by the bed (``upper`` as
    Django's ``iexact`` compares; two beds whose keys collide merely wait for each other). On
    SQLite every write transaction is already serialised: ``transaction_mode`` IMMEDIATE
    (cardiospike/settings.py) takes the database's write lock when the transaction begins.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("lock_bed outside a transaction would hold nothing")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(upper(%s)), hashtext(upper(%s)))",
                [ward, bed],
            )
    elif connection.vendor != "sqlite":
        raise ImproperlyConfigured(f"No bed lock for a {connection.vendor} database.")


def check_bed_free(form, cleaned: dict, *, lock: bool = False) -> bool:
    """Refuse a ward and bed another admitted patient occupies: the station would show two
    tiles for one bed, and a nurse could go to the wrong patient. Discharge the one leaving
    first (a bed left blank is not checked). The error goes on the form's ``bed``; whether the
    bed is free.

    Form validation checks it first (the page shows every error at once), but outside the
    transaction that saves: another admission to the same bed could commit in between. So the
    saving code checks again inside its transaction with ``lock`` (``lock_bed`` taken first),
    and the answer then holds until it commits."""
    ward, bed = cleaned.get("ward", ""), cleaned.get("bed", "")
    if not (ward and bed) or not cleaned.get("is_active", True):
        return True
    if lock:
        lock_bed(ward, bed)
    taken = (
        Patient.objects.filter(is_active=True, ward__iexact=ward, bed__iexact=bed)
        .exclude(pk=form.instance.pk)
        .first()
    )
    if taken is not None:
        form.add_error(
            "bed",
            f"Bed {bed} of ward {ward} is {taken.name}'s (MRN {taken.mrn}): discharge "
            "them first, or choose another bed.",
        )
        return False
    return True


def patient_version(patient: Patient) -> str:
    """When the patient's row last changed, as a form remembers it (``updated_at``; every save
    of a patient sets it)."""
    return patient.updated_at.isoformat()


# Said when a patient form is saved after the patient changed under it (PatientVersionForm).
STALE_PATIENT_MESSAGE = (
    "Not saved: this patient was changed (by someone else, or in another tab) after this page "
    "was opened. Saving would undo that change."
)


class PatientVersionForm(forms.ModelForm):
    """A form on an existing patient remembers, in a hidden field, when the patient last
    changed as the page was opened. Saving it after another change (a discharge, someone
    else's limits) is refused instead of silently undoing that change: a model form sends every
    field back, those the user left alone with the values the page was opened with.

    No Meta: the forms built on it (and the admin's) name the model and fields."""

    opened_version = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["opened_version"].initial = patient_version(self.instance)
            self.fields["opened_version"].required = True

    def opened_on(self, locked: Patient) -> bool:
        """Whether the page was opened on the patient's current row (``locked``: read with
        ``select_for_update`` in the transaction that saves)."""
        return self.cleaned_data.get("opened_version") == patient_version(locked)


def care_team_candidates(patient: Patient | None = None):
    """The accounts the care-team fields offer: those that can log in (``is_active``). A
    deactivated account listed looked like a clinician who would see the patient. Staff
    accounts are offered too: they see every patient anyway, so listing one changes no access.
    (A device is no account: devices authenticate with their own tokens.)

    With ``patient``, their current clinicians are offered too, deactivated or not: a member
    left out of the choices would be dropped, unseen, by the next save of the page; listed
    (and marked, ``CareTeamField``), staff untick them."""
    users = get_user_model().objects.all()
    offered = Q(is_active=True)
    if patient is not None and patient.pk is not None:
        offered |= Q(pk__in=patient.clinicians.values("pk"))
    return users.filter(offered).order_by("username")


class CareTeamField(forms.ModelMultipleChoiceField):
    """The care team as ticks, each account named with what staff need to know of it."""

    widget = forms.CheckboxSelectMultiple

    def label_from_instance(self, user) -> str:
        label = user.username
        if user.get_full_name():
            label += f" ({user.get_full_name()})"
        if user.is_staff:
            label += " · staff: sees every patient anyway"
        if not user.is_active:
            label += " · deactivated: cannot log in"
        return label


def discharged_mrn_message(patient: Patient) -> str:
    """What the admit page says when the MRN typed is a discharged patient's."""
    return (
        f"MRN {patient.mrn} is {patient.name}'s, who was discharged: readmit them instead "
        "(their recordings, alarms and audit trail stay on one record)."
    )


class AdmitPatientForm(forms.ModelForm):
    """Admit a new patient: identity, place on the ward, clinicians and starting limits.

    A patient who comes back keeps their MRN; the MRN is unique, so admitting them again is
    refused. When the MRN is a discharged patient's, the form says so and remembers the
    patient (``discharged_match``), so that the page can offer to readmit them: a second
    patient row under another MRN would split their history in two."""

    discharged_match: Patient | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["clinicians"].queryset = care_team_candidates()
        self.fields["clinicians"].label = "Care team (clinicians)"
        self.fields[
            "clinicians"
        ].help_text = "They see this patient; staff see every patient. Changes are audited."

    def clean_mrn(self) -> str:
        mrn = self.cleaned_data["mrn"]
        # whatever its letter case, as clean_unique_mrn compares; the exact MRN first
        matches = Patient.objects.filter(mrn__iexact=mrn)
        same = matches.filter(mrn=mrn).first() or matches.first()
        if same is not None and not same.is_active:
            self.discharged_match = same
            raise forms.ValidationError(discharged_mrn_message(same), code="discharged")
        return clean_unique_mrn(self)

    def clean(self):
        cleaned = super().clean()
        check_bed_free(self, cleaned)
        return cleaned

    class Meta:
        model = Patient
        fields = [
            "mrn",
            "name",
            "birth_date",
            "sex",
            "ward",
            "bed",
            "clinicians",
            *LIMIT_FIELDS,
            "notes",
        ]
        widgets = {"birth_date": forms.DateInput(attrs={"type": "date"})}


class ReadmitForm(forms.ModelForm):
    """Readmit a discharged patient: where they go now. Their last ward and bed are offered;
    the bed is refused when another admitted patient occupies it (``check_bed_free``). The
    rest of the patient (limits, recipients, care team) is kept as it is."""

    def clean(self):
        cleaned = super().clean()
        check_bed_free(self, cleaned)
        return cleaned

    class Meta:
        model = Patient
        fields = ["ward", "bed"]


class AlarmLimitsForm(PatientVersionForm):
    """Change a patient's alarm limits; the view audits every field that changed."""

    class Meta:
        model = Patient
        fields = list(LIMIT_FIELDS)


# Said on the care-team page when the team is left empty (and asked for in its form).
EMPTY_CARE_TEAM_MESSAGE = (
    "Nobody is on the care team: no clinician sees this patient, their data or their alarms "
    "on their dashboards and central station; only staff do."
)


class CareTeamForm(PatientVersionForm):
    """Change a patient's care team (``Patient.clinicians``: who may see their data); the view
    audits every clinician added or removed (``audit_clinicians``).

    Emptying a team that has clinicians needs ``confirm_empty`` ticked: allowed (a patient
    between teams), but then no clinician sees the patient's alarms on their station."""

    confirm_empty = forms.BooleanField(
        required=False,
        label="Leave the care team empty",
        help_text="Needed only to remove everyone: no clinician then sees this patient or "
        "their alarms; only staff do.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["clinicians"].queryset = care_team_candidates(self.instance)

    def clean(self):
        cleaned = super().clean()
        emptied = not cleaned.get("clinicians") and self.instance.clinicians.exists()
        if emptied and "clinicians" not in self.errors and not cleaned.get("confirm_empty"):
            self.add_error(
                "confirm_empty",
                "Tick this to remove everyone from the care team: no clinician would then see "
                "this patient, their data or their alarms; only staff would.",
            )
        return cleaned

    class Meta:
        model = Patient
        fields = ["clinicians"]
        field_classes = {"clinicians": CareTeamField}
        labels = {"clinicians": "Care team (clinicians)"}
        help_texts = {
            "clinicians": "They see this patient's data and alarms; staff see every patient. "
            "Active accounts, and the team's current members. Changes are audited."
        }


class DeviceChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, device: Device) -> str:
        # who wears it now: picking a device another patient wears stops their monitoring
        if device.patient is None:
            return f"{device} · free"
        holder = device.patient
        where = " ".join(part for part in (holder.ward, holder.bed) if part)
        return f"{device} · worn by {holder.name}" + (f" ({where})" if where else "")


class AssignDeviceForm(forms.Form):
    """Give a device to the patient. A device another admitted patient wears is moved only
    when the form says so (``take_from_patient``): that patient's monitoring stops."""

    device = DeviceChoiceField(
        queryset=Device.objects.filter(is_active=True).select_related("patient"),
        help_text=(
            "Active devices; the device this patient had is unassigned (one device per patient)."
        ),
    )
    take_from_patient = forms.BooleanField(
        required=False,
        label="Take it from the patient wearing it",
        help_text="Their monitoring stops until they get another device.",
    )

    def __init__(self, *args, patient: Patient, **kwargs):
        super().__init__(*args, **kwargs)
        self.patient = patient

    def clean(self):
        cleaned = super().clean()
        device = cleaned.get("device")
        holder = device.patient if device is not None else None
        if (
            holder is not None
            and holder != self.patient
            and holder.is_active
            and not cleaned.get("take_from_patient")
        ):
            raise forms.ValidationError(
                f'{device} is worn by {holder.name}: tick "Take it from the patient wearing '
                f"it\" to move it; {holder.name}'s monitoring then stops."
            )
        return cleaned


class RecipientForm(forms.ModelForm):
    """One alarm recipient; the model's ``clean`` checks the address against the transport."""

    class Meta:
        model = AlarmRecipient
        fields = ["address", "transport", "escalation"]
        labels = {"escalation": "escalation only"}
        widgets = {
            "address": forms.TextInput(
                attrs={"size": 40, "placeholder": "ward@hospital.example or https://..."}
            )
        }


def recipient_identity(transport: str, escalation: bool, address: str) -> tuple:
    """What makes two recipient rows the same recipient. An email address compared letter case
    aside: ``STEP-DOWN@x`` and ``step-down@x`` reach one mailbox, and listed both, that person
    got every alarm twice. (RFC 5321 lets a mail server treat the local part, before the @,
    case-sensitively, but in practice every mail system treats it case-insensitively; the
    domain is case-insensitive anyway.) A webhook URL is compared as typed: its path may be
    case-sensitive."""
    address = address.strip()
    if transport == Transport.EMAIL:
        address = address.casefold()
    return (transport, escalation, address)


class BaseRecipientFormSet(forms.BaseInlineFormSet):
    """The recipient rows, refusing one that repeats another (``recipient_identity``).

    The database's unique constraint (and the formset's own check of it) compare addresses
    case-sensitively, so ``STEP-DOWN@x`` beside ``step-down@x`` got through."""

    def clean(self):
        super().clean()
        seen: dict[tuple, str] = {}
        for form in self.forms:
            cleaned = getattr(form, "cleaned_data", None)
            if not cleaned or cleaned.get("DELETE") or not cleaned.get("address"):
                continue  # an empty extra row, a row removed, or one already in error
            key = recipient_identity(
                cleaned.get("transport", ""), bool(cleaned.get("escalation")), cleaned["address"]
            )
            if key in seen:
                form.add_error(
                    "address",
                    f"{cleaned['address']} is already listed as {seen[key]} (email addresses "
                    "are compared letter case aside): it would get every alarm twice. Remove "
                    "one of the two.",
                )
            else:
                seen[key] = cleaned["address"]


# The recipients of one patient, on the admit and limits pages (two empty rows to fill in).
RecipientFormSet = forms.inlineformset_factory(
    Patient,
    AlarmRecipient,
    form=RecipientForm,
    formset=BaseRecipientFormSet,
    extra=2,
    can_delete=True,
)

# AuditEntry.field of a recipient added ("" -> it), changed (old -> new) or removed (it -> "").
RECIPIENT_AUDIT_FIELD = "alarm_recipient"


# AuditEntry.field of a token issued or rotated for the device the patient wears: "<serial>
# <hint>…", the old token's (empty for the first) -> the new one's. A new token is a new way
# to send data as this patient's device, so it belongs in their trail; only the hint (the
# token's first characters, which the admin lists too) is written, never the token.
DEVICE_TOKEN_AUDIT_FIELD = "device_token"  # noqa: S105 (a field name, not a secret)

# What staff read for an AuditEntry.field that is no Patient field (a Patient field is named
# by its verbose name: ``audit_field_label``); "clinician" and "device" read well as stored.
AUDIT_FIELD_LABELS = {"alarm_recipient": "alarm recipient", "device_token": "device token"}


def audit_field_label(field: str) -> str:
    """The name staff read for an AuditEntry.field (messages, the patient page's audit trail):
    the Patient field's verbose name ("HR high limit (bpm)", "admitted"), or the label above.
    The stored field stays the model field's name (the admin and exports read it); an unknown
    one is shown as stored."""
    if field in AUDIT_FIELD_LABELS:
        return AUDIT_FIELD_LABELS[field]
    try:
        verbose = Patient._meta.get_field(field).verbose_name
    except FieldDoesNotExist:
        return field
    return str(verbose)


def audit_changes(user, patient: Patient, before: dict) -> list[str]:
    """One AuditEntry per field of ``before`` (field name -> its old value; None where there
    was none, as on admission) whose value on ``patient`` now differs; the fields that
    changed, in ``before``'s order. The one per-field audit of every page that changes the
    patient's own fields: admission, limits, readmission and the admin."""
    changed = []
    for field, old in before.items():
        new = getattr(patient, field)
        if old != new:
            AuditEntry.record(user, patient, field, old, new)
            changed.append(field)
    return changed


# AuditEntry.field of a clinician added to the care team ("" -> username) or removed from it
# (username -> ""): the care team decides who sees the patient's data.
CLINICIAN_AUDIT_FIELD = "clinician"


def clinician_names(patient: Patient) -> set[str]:
    """The usernames of the patient's care team as stored now."""
    return set(patient.clinicians.values_list("username", flat=True))


def audit_clinicians(user, patient: Patient, before: set[str]) -> list[str]:
    """One AuditEntry per clinician added to or removed from the care team since ``before``
    (:func:`clinician_names` read earlier in the same transaction); what changed."""
    after = clinician_names(patient)
    changed = []
    for name in sorted(after - before):
        AuditEntry.record(user, patient, CLINICIAN_AUDIT_FIELD, None, name)
        changed.append(f"clinician {name}")
    for name in sorted(before - after):
        AuditEntry.record(user, patient, CLINICIAN_AUDIT_FIELD, name, None)
        changed.append(f"removed clinician {name}")
    return changed


def audit_device_token(user, device: Device, old_hint: str) -> bool:
    """One AuditEntry for the patient ``device`` is assigned to, after ``device.issue_token()``
    replaced the token whose hint was ``old_hint`` ("" when it had none); whether one was
    written (an unassigned device has no patient's trail to write to). Call it in the
    transaction that issued the token, with the device's row read under a lock, so that the
    entry goes to whoever wears the device when its token changes."""
    if device.patient_id is None:
        return False
    old = f"{device.serial} {old_hint}…" if old_hint else None
    new = f"{device.serial} {device.token_hint}…"
    AuditEntry.record(user, device.patient, DEVICE_TOKEN_AUDIT_FIELD, old, new)
    return True


def recipient_labels(patient: Patient) -> dict[int, str]:
    """The patient's recipients as the audit trail writes them (``str``), by id."""
    return {recipient.pk: str(recipient) for recipient in patient.alarm_recipients.all()}


def audit_recipients(user, patient: Patient, before: dict[int, str]) -> list[str]:
    """One AuditEntry per recipient added, changed or removed since ``before``
    (:func:`recipient_labels` read earlier in the same transaction); what changed."""
    after = recipient_labels(patient)
    changed = []
    for pk in sorted(before.keys() | after.keys()):
        old, new = before.get(pk), after.get(pk)
        if old != new:
            AuditEntry.record(user, patient, RECIPIENT_AUDIT_FIELD, old, new)
            changed.append(new or f"removed {old}")
    return changed


class LockoutMessageMixin:
    """A login form that says why a locked-out account's right password was refused
    (``monitoring.login_throttle``), instead of calling it wrong."""

    def get_invalid_login_error(self):
        if is_locked_out(self.request, self.cleaned_data.get("username")):
            return forms.ValidationError(locked_out_message(), code="locked_out")
        return super().get_invalid_login_error()


class LoginForm(LockoutMessageMixin, AuthenticationForm):
    pass


class AdminLoginForm(LockoutMessageMixin, AdminAuthenticationForm):
    pass
