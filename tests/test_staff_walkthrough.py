"""The management pages and the admin as a ward's staff use them (walkthrough of 2026-12-07).

A staff member set up a ward from nothing, moved a device, discharged and readmitted, revoked
a token and deactivated a clinician. What it found: discharge and unassign stopped a patient's
monitoring on one click; a device deactivated, or deleted, in the admin while a patient wore
it left the patient shown with a device nobody watched (or lost it with no audit entry); and
who is on a patient's care team, which decides who sees their data, was changed with no trail.
"""

import re

import pytest
from django.test import Client

from monitoring.models import Alarm, AuditEntry, Device, Patient
from tests.test_admin_site import admin_url, device_form, patient_form
from tests.test_dashboard import DEFAULT_LIMITS, NO_RECIPIENTS

pytestmark = pytest.mark.django_db


def posting_forms(page: str, url: str) -> list[str]:
    """The forms of ``page`` that POST to ``url`` (a one-click action)."""
    return re.findall(rf'<form method="post" action="{re.escape(url)}"', page)


def test_discharge_asks_first_and_names_what_it_ends(client, staff_user, patient, device):
    Alarm.objects.create(patient=patient, kind="HR_HIGH", priority="warning", message="HR 134")
    client.force_login(staff_user)
    url = f"/manage/patients/{patient.pk}/discharge/"
    # the patient page links the confirmation; no button there discharges at once
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    assert not posting_forms(page, url) and f'href="{url}"' in page

    confirm = client.get(url)
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "Discharge Assigned Patient (MRN MRN-001)?" in text
    assert "Device DEV-001 is unassigned" in text and "Their open alarms (1) are resolved" in text
    assert 'id="confirm-form"' in text and "csrfmiddlewaretoken" in text
    patient.refresh_from_db()
    assert patient.is_active  # asking changed nothing
    assert not AuditEntry.objects.exists()

    assert client.post(url).status_code == 302
    patient.refresh_from_db()
    assert not patient.is_active
    # asked again once discharged: back to the patient's page, saying so
    again = client.get(url, follow=True)
    assert again.redirect_chain[-1][0] == f"/patients/{patient.pk}/"
    assert "already discharged" in again.content.decode()


def test_unassign_asks_first_and_names_the_patient_whose_monitoring_stops(
    client, staff_user, patient, device
):
    client.force_login(staff_user)
    url = f"/manage/devices/{device.pk}/unassign/"
    for page_url in ("/manage/", f"/patients/{patient.pk}/"):
        page = client.get(page_url).content.decode()
        assert not posting_forms(page, url) and f'href="{url}"' in page, page_url

    confirm = client.get(url).content.decode()
    assert "Unassign DEV-001 from Assigned Patient (MRN MRN-001)?" in confirm
    assert "monitoring stops" in confirm
    device.refresh_from_db()
    assert device.patient == patient

    assert client.post(url).status_code == 302
    device.refresh_from_db()
    assert device.patient is None
    # a free device has nothing to confirm
    assert client.get(url)["Location"] == "/manage/"


@pytest.mark.parametrize(
    "url", ["/manage/patients/{pk}/discharge/", "/manage/devices/{d}/unassign/"]
)
def test_the_confirmation_pages_are_staff_only_and_their_post_needs_csrf(
    client, clinician, staff_user, patient, device, url
):
    url = url.format(pk=patient.pk, d=device.pk)
    client.force_login(clinician)
    assert client.get(url).status_code == 403
    guarded = Client(enforce_csrf_checks=True)
    guarded.force_login(staff_user)
    assert guarded.post(url).status_code == 403  # no CSRF token
    patient.refresh_from_db()
    device.refresh_from_db()
    assert patient.is_active and device.patient == patient


def test_a_worn_device_is_deactivated_in_the_admin_only_by_taking_it_off_its_patient(
    client, staff_user, patient, device
):
    """Deactivating a device refuses its token, and an inactive device's silence raises no
    device-offline alarm: left on the patient, they were shown with a device nobody watched."""
    client.force_login(staff_user)
    url = admin_url(Device, "change", device.pk)
    deactivate = device_form(serial=device.serial, patient=patient.pk, is_active="")
    response = client.post(url, deactivate)
    assert response.status_code == 200  # the form again, with the reason
    assert "An inactive device cannot be assigned to a patient (Assigned Patient)" in (
        response.content.decode()
    )
    device.refresh_from_db()
    assert device.is_active and device.patient == patient

    # with its patient cleared it is deactivated, and the patient's trail says so
    assert client.post(url, device_form(serial=device.serial, is_active="")).status_code == 302
    device.refresh_from_db()
    assert not device.is_active and device.patient is None
    entry = AuditEntry.objects.get(patient=patient, field="device")
    assert (entry.old_value, entry.new_value, entry.user) == ("DEV-001", "", staff_user)

    # nor can an inactive device be given to a patient there
    response = client.post(url, deactivate)
    assert response.status_code == 200
    device.refresh_from_db()
    assert device.patient is None


def test_deleting_a_worn_device_in_the_admin_is_audited_on_its_patient(
    client, staff_user, patient, other_patient, device
):
    client.force_login(staff_user)
    url = admin_url(Device, "delete", device.pk)
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not Device.objects.exists()
    entry = AuditEntry.objects.get(patient=patient)
    assert (entry.field, entry.old_value, entry.new_value) == ("device", "DEV-001", "")

    # the list's bulk delete too, one entry per worn device, none for a free one
    worn = Device.objects.create(serial="DEV-002", patient=other_patient)
    free = Device.objects.create(serial="DEV-003")
    response = client.post(
        admin_url(Device, "changelist"),
        {"action": "delete_selected", "_selected_action": [worn.pk, free.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Device.objects.exists()
    entry = AuditEntry.objects.get(patient=other_patient)
    assert (entry.field, entry.old_value, entry.new_value) == ("device", "DEV-002", "")


def test_the_care_team_is_audited_on_admission_and_in_the_admin(
    client, staff_user, clinician, other_clinician, django_user_model
):
    left = django_user_model.objects.create_user(username="left", password="pw-left-1")
    left.is_active = False
    left.save()
    client.force_login(staff_user)
    admit = client.get("/manage/patients/admit/").content.decode()
    choices = re.search(r'<select name="clinicians".*?</select>', admit, re.S)[0]
    # a deactivated account is nobody's clinician
    assert ">clinician<" in choices and ">left<" not in choices

    response = client.post(
        "/manage/patients/admit/",
        {
            "mrn": "MRN-300",
            "name": "New Admission",
            "sex": "U",
            "clinicians": [clinician.pk],
            **DEFAULT_LIMITS,
            **NO_RECIPIENTS,
        },
    )
    assert response.status_code == 302
    patient = Patient.objects.get(mrn="MRN-300")
    trail = AuditEntry.objects.filter(patient=patient, field="clinician")
    assert [(e.old_value, e.new_value, e.user) for e in trail] == [("", "clinician", staff_user)]

    # the admin's "Care team": one clinician swapped for another
    form = patient_form(patient, clinicians=[other_clinician.pk])
    response = client.post(admin_url(Patient, "change", patient.pk), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    trail = AuditEntry.objects.filter(patient=patient, field="clinician").order_by("id")
    assert [(e.old_value, e.new_value) for e in trail] == [
        ("", "clinician"),
        ("", "other"),
        ("clinician", ""),
    ]
    # a save that leaves the team as it is writes nothing more
    form = patient_form(patient, ward="D")
    assert client.post(admin_url(Patient, "change", patient.pk), form).status_code == 302
    assert AuditEntry.objects.filter(patient=patient, field="clinician").count() == 3
    # the patient's page shows it
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    assert "<td>clinician</td><td>clinician</td>" in page
