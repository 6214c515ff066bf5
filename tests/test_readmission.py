"""Readmission on the staff pages: a discharged patient who comes back is readmitted on their
own record (docs/dashboard.md, "Readmission").

Before, readmission existed only in the admin: the admit page refused the patient's MRN
("Patient with this MRN already exists.", the MRN being unique) without saying that the patient
was discharged, and a ward that gave them a new MRN split their history over two patients.
"""

import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from monitoring.models import Alarm, AlarmRecipient, AuditEntry, Device, Patient, Recording
from tests.test_dashboard import DEFAULT_LIMITS, NO_RECIPIENTS

pytestmark = pytest.mark.django_db


def readmit_url(patient: Patient) -> str:
    return f"/manage/patients/{patient.pk}/readmit/"


def shown_messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def discharge(client, patient: Patient) -> None:
    assert client.post(f"/manage/patients/{patient.pk}/discharge/").status_code == 302
    patient.refresh_from_db()
    assert not patient.is_active


@pytest.fixture
def discharged(client, staff_user, patient, device, recording):
    """The patient with a history (a live recording, an open alarm, a recipient, limits of
    their own, a care team), discharged through the page; the client logged in as staff."""
    patient.hr_low_limit_bpm, patient.hr_high_limit_bpm = 45, 110
    patient.save()
    AlarmRecipient.objects.create(patient=patient, address="ward-a@hospital.example")
    Alarm.objects.create(patient=patient, kind="HR_HIGH", priority="warning", message="HR 134")
    client.force_login(staff_user)
    discharge(client, patient)
    return patient


# --- the admit page, on a discharged patient's MRN --------------------------------------------


@pytest.mark.parametrize("mrn", ["MRN-001", "mrn-001"])
def test_admitting_a_discharged_patients_mrn_says_so_and_offers_readmission(
    client, staff_user, discharged, mrn
):
    form = {"mrn": mrn, "name": "Assigned Patient", "sex": "U", "ward": "ICU", "bed": "4"}
    response = client.post("/manage/patients/admit/", {**form, **DEFAULT_LIMITS, **NO_RECIPIENTS})
    assert response.status_code == 200  # the form again, with the reason
    text = response.content.decode()
    assert "MRN MRN-001 is Assigned Patient&#x27;s, who was discharged: readmit them" in text
    # the offer carries the place typed, for the readmission page to start from
    offer = re.search(r'id="readmit-instead" href="([^"]+)"', text).group(1)
    assert offer == f"{readmit_url(discharged)}?ward=ICU&amp;bed=4"
    assert Patient.objects.count() == 1  # no duplicate
    page = client.get(f"{readmit_url(discharged)}?ward=ICU&bed=4").content.decode()
    assert 'name="ward" value="ICU"' in page and 'name="bed" value="4"' in page


def test_an_admitted_patients_mrn_is_refused_without_an_offer(client, staff_user, patient):
    client.force_login(staff_user)
    form = {"mrn": "MRN-001", "name": "Typed Twice", "sex": "U", **DEFAULT_LIMITS}
    response = client.post("/manage/patients/admit/", {**form, **NO_RECIPIENTS})
    text = response.content.decode()
    assert response.status_code == 200 and "Patient with this MRN already exists." in text
    assert "readmit-offer" not in text and Patient.objects.count() == 1


# --- readmission --------------------------------------------------------------------------------


def test_readmit_asks_first_then_keeps_the_history_and_is_audited(
    client, staff_user, clinician, discharged, device, recording
):
    # the ways in: the patient page and /manage/'s discharged list
    for page_url in (f"/patients/{discharged.pk}/", "/manage/"):
        page = client.get(page_url).content.decode()
        assert f'href="{readmit_url(discharged)}"' in page, page_url

    confirm = client.get(readmit_url(discharged))
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "Readmit Assigned Patient (MRN MRN-001)?" in text
    assert "HR 45–110 bpm" in text and "alarm recipients (1)" in text
    assert "care team (clinician)" in text and "No device is assigned" in text
    assert 'id="confirm-form"' in text and "csrfmiddlewaretoken" in text
    assert 'name="ward" value="A"' in text and 'name="bed" value="1"' in text  # their last
    discharged.refresh_from_db()
    assert not discharged.is_active  # asking changed nothing
    assert not AuditEntry.objects.filter(field="is_active", new_value="True").exists()

    response = client.post(readmit_url(discharged), {"ward": "A", "bed": "1"})
    assert response.status_code == 302 and response["Location"] == f"/patients/{discharged.pk}/"
    readmitted = "Readmitted Assigned Patient (A 1): assign a device to monitor them."
    assert shown_messages(response)[-1] == readmitted
    discharged.refresh_from_db()
    assert discharged.is_active
    entry = AuditEntry.objects.get(patient=discharged, field="is_active", new_value="True")
    assert (entry.old_value, entry.user) == ("False", staff_user)
    # the place did not change, so it has no entry
    assert not AuditEntry.objects.filter(field__in=["ward", "bed"]).exists()
    # the history is the same record's, as discharge left it: nothing reopened or reassigned
    assert (discharged.hr_low_limit_bpm, discharged.hr_high_limit_bpm) == (45, 110)
    assert list(discharged.clinicians.all()) == [clinician]
    assert discharged.alarm_recipients.count() == 1
    recording.refresh_from_db()
    assert recording.status == Recording.Status.CLOSED
    assert not discharged.alarms.open().exists() and discharged.alarms.count() == 1
    device.refresh_from_db()
    assert device.patient is None and not Device.objects.filter(patient=discharged).exists()
    # back on the station and among the admitted
    assert f'id="tile-{discharged.pk}"' in client.get("/station/").content.decode()
    manage = client.get("/manage/").content.decode()
    assert f'href="{readmit_url(discharged)}"' not in manage


def test_readmit_to_another_bed_audits_the_place_and_refuses_an_occupied_bed(
    client, staff_user, discharged, other_patient
):
    # other_patient, admitted, lies in ward B bed 2
    taken = client.post(readmit_url(discharged), {"ward": "B", "bed": "2"})
    assert taken.status_code == 200  # the confirmation again, with the reason
    assert "Bed 2 of ward B is Someone Else&#x27;s (MRN MRN-002)" in taken.content.decode()
    discharged.refresh_from_db()
    assert not discharged.is_active

    assert client.post(readmit_url(discharged), {"ward": "ICU", "bed": "4"}).status_code == 302
    entries = {e.field: (e.old_value, e.new_value) for e in discharged.audit_entries.all()}
    assert entries["ward"] == ("A", "ICU") and entries["bed"] == ("1", "4")
    discharged.refresh_from_db()
    assert (discharged.is_active, discharged.ward, discharged.bed) == (True, "ICU", "4")


def test_readmitting_an_admitted_patient_is_refused(client, staff_user, patient):
    client.force_login(staff_user)
    response = client.post(readmit_url(patient), {"ward": "ICU", "bed": "9"})
    assert response.status_code == 302 and response["Location"] == f"/patients/{patient.pk}/"
    refused = "Assigned Patient is already admitted: nothing to readmit."
    assert shown_messages(response)[-1] == refused
    patient.refresh_from_db()
    assert (patient.ward, patient.bed) == ("A", "1") and not AuditEntry.objects.exists()
    # asked on GET: back to the patient's page, saying so
    again = client.get(readmit_url(patient), follow=True)
    assert again.redirect_chain[-1][0] == f"/patients/{patient.pk}/"
    assert "Assigned Patient is already admitted." in again.content.decode()


def test_a_second_readmission_writes_nothing(client, staff_user, discharged):
    # a double click, or two staff: the second POST finds the patient admitted
    assert client.post(readmit_url(discharged), {"ward": "A", "bed": "1"}).status_code == 302
    second = client.post(readmit_url(discharged), {"ward": "A", "bed": "1"})
    assert "already admitted: nothing to readmit" in shown_messages(second)[-1]
    assert AuditEntry.objects.filter(field="is_active", new_value="True").count() == 1


# --- who may ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_readmission_is_403_for_clinicians(client, clinician, patient, method):
    patient.is_active = False
    patient.save()
    client.force_login(clinician)
    response = getattr(client, method)(readmit_url(patient), {"ward": "A", "bed": "1"})
    assert response.status_code == 403
    patient.refresh_from_db()
    assert not patient.is_active and not AuditEntry.objects.exists()
    # their pages offer no readmission either
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    home = client.get("/").content.decode()
    assert readmit_url(patient) not in page and readmit_url(patient) not in home


def test_readmission_sends_anonymous_users_to_the_login_page(client, patient):
    patient.is_active = False
    patient.save()
    response = client.post(readmit_url(patient), {"ward": "A", "bed": "1"})
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    patient.refresh_from_db()
    assert not patient.is_active


def test_readmission_needs_the_csrf_token(staff_user, patient):
    patient.is_active = False
    patient.save()
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    assert client.post(readmit_url(patient), {"ward": "A", "bed": "1"}).status_code == 403
    patient.refresh_from_db()
    assert not patient.is_active
