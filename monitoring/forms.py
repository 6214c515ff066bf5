"""Forms of the staff's patient and device management pages (monitoring/dashboard_views.py).

Plain Django model forms: the model's validators and ``clean`` (HR low below high) are the
rules, so a form cannot accept what the database or the admin would refuse.
"""

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from monitoring.login_throttle import is_locked_out, locked_out_message
from monitoring.models import AlarmRecipient, AuditEntry, Device, Patient

# The limits (and alarm switches) whose every change is written to the audit trail (AuditEntry).
LIMIT_FIELDS = (
    "hr_low_limit_bpm",
    "hr_high_limit_bpm",
    "pause_limit_s",
    "pvc_limit_per_min",
    "sustained_arrhythmia_alarm",
)


class AdmitPatientForm(forms.ModelForm):
    """Admit a new patient: identity, place on the ward, clinicians and starting limits."""

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


class AlarmLimitsForm(forms.ModelForm):
    """Change a patient's alarm limits; the view audits every field that changed."""

    class Meta:
        model = Patient
        fields = list(LIMIT_FIELDS)


class AssignDeviceForm(forms.Form):
    """Give a device to the patient; a device another patient holds is moved (and says so)."""

    device = forms.ModelChoiceField(
        queryset=Device.objects.filter(is_active=True).select_related("patient"),
        help_text=(
            "Active devices; one assigned elsewhere moves to this patient, and the device "
            "this patient had is unassigned (one device per patient)."
        ),
    )


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


# The recipients of one patient, on the admit and limits pages (two empty rows to fill in).
RecipientFormSet = forms.inlineformset_factory(
    Patient, AlarmRecipient, form=RecipientForm, extra=2, can_delete=True
)

# AuditEntry.field of a recipient added ("" -> it), changed (old -> new) or removed (it -> "").
RECIPIENT_AUDIT_FIELD = "alarm_recipient"


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
