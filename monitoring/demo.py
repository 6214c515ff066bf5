"""Demo content for a fresh checkout: a clinician, an administrator, patients and devices.

Only for development (the command refuses to run with DEBUG off). Passwords are random and
printed when the command runs, so no credential is written into the repository.
"""

import secrets
from dataclasses import dataclass, field
from datetime import date

from django.contrib.auth import get_user_model
from django.db import transaction

from monitoring.models import AlarmRecipient, Device, Patient

DEMO_CLINICIAN = "demo"
DEMO_ADMIN = "admin"

DEMO_PATIENTS = [
    # mrn, name, birth date, sex, ward, bed, assigned to the demo clinician
    ("DEMO-0001", "Ada Quinn", date(1951, 3, 14), "F", "Cardiology", "1", True),
    ("DEMO-0002", "Boris Lind", date(1964, 8, 2), "M", "Cardiology", "2", True),
    ("DEMO-0003", "Chen Wei", date(1978, 11, 23), "M", "Step-down", "7", True),
    ("DEMO-0004", "Dana Okafor", date(1989, 5, 30), "F", "Step-down", "8", False),
]
DEMO_DEVICES = [
    # serial, label, patient mrn, sampling rate (Hz), gain (ADC units per mV)
    ("ESP32-DEMO-01", "BioAmp Heart Candy, bed 1", "DEMO-0001", 250.0, 200.0),
    ("ESP32-DEMO-02", "BioAmp Heart Candy, bed 2", "DEMO-0002", 250.0, 200.0),
]


@dataclass
class DemoCredentials:
    passwords: dict[str, str] = field(default_factory=dict)
    device_tokens: dict[str, str] = field(default_factory=dict)


def random_password() -> str:
    return secrets.token_urlsafe(12)


def add_demo_recipients(patient: Patient) -> None:
    """Alarm emails go to the ward's (fictional) address and escalate to the charge nurse
    (the quick start writes them to files in sent-emails/). Idempotent."""
    ward_address = f"{patient.ward.lower().replace(' ', '-')}@demo.cardiospike.invalid"
    AlarmRecipient.objects.get_or_create(patient=patient, address=ward_address)
    AlarmRecipient.objects.get_or_create(
        patient=patient,
        address="charge-nurse@demo.cardiospike.invalid",
        defaults={"escalation": True},
    )


@transaction.atomic
def seed_demo() -> DemoCredentials:
    """Create or refresh the demo content; returns the credentials to show the user.

    Running it again resets the two demo passwords and keeps patients and devices; a device
    token is issued only for a device that has none (tokens are shown once).
    """
    users = get_user_model()
    credentials = DemoCredentials()

    clinician, _ = users.objects.get_or_create(
        username=DEMO_CLINICIAN, defaults={"first_name": "Demo", "last_name": "Clinician"}
    )
    admin, _ = users.objects.get_or_create(username=DEMO_ADMIN)
    admin.is_staff = admin.is_superuser = True
    for user in (clinician, admin):
        password = random_password()
        user.set_password(password)
        user.save()
        credentials.passwords[user.username] = password

    patients = {}
    for mrn, name, birth_date, sex, ward, bed, assigned in DEMO_PATIENTS:
        patient, _ = Patient.objects.get_or_create(
            mrn=mrn,
            defaults={
                "name": name,
                "birth_date": birth_date,
                "sex": sex,
                "ward": ward,
                "bed": bed,
                "notes": "Demo patient (fictional).",
            },
        )
        if assigned:
            patient.clinicians.add(clinician)
        add_demo_recipients(patient)
        patients[mrn] = patient

    for serial, label, mrn, fs_hz, gain_adc_per_mv in DEMO_DEVICES:
        patient = patients[mrn]
        device, _ = Device.objects.get_or_create(
            serial=serial,
            defaults={
                "label": label,
                # one device per patient: a demo patient given another device keeps it
                "patient": None if patient.devices.exists() else patient,
                "sampling_rate_hz": fs_hz,
                "gain_adc_per_mv": gain_adc_per_mv,
                "firmware_version": "demo",
            },
        )
        if not device.token_hash:
            credentials.device_tokens[serial] = device.issue_token()
    return credentials
