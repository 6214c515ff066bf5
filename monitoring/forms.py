"""Forms of the staff's patient and device management pages (monitoring/dashboard_views.py).

Plain Django model forms: the model's validators and ``clean`` (HR low below high) are the
rules, so a form cannot accept what the database or the admin would refuse.
"""

from django import forms

from monitoring.models import Device, Patient

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
        help_text="Active devices; one assigned elsewhere moves to this patient.",
    )
