"""Management pages and admin: what a review found (2026-12-06).

A form saved after the patient changed under it must not undo that change; the admin must not
rewrite or delete what only the system writes; the device picker says who wears a device; an
MRN is one patient's whatever its letter case; the lists' queries do not grow with their rows.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from monitoring.forms import STALE_PATIENT_MESSAGE, patient_version
from monitoring.models import AuditEntry, Beat, Device, Patient, Recording
from tests.test_admin_site import admin_url, patient_form
from tests.test_dashboard import DEFAULT_LIMITS, NO_RECIPIENTS, opened

pytestmark = pytest.mark.django_db


def test_a_stale_admin_form_does_not_readmit_a_patient_discharged_meanwhile(
    client, staff_user, patient
):
    client.force_login(staff_user)
    # the admin opens the patient's page (the form as it stands, Admitted ticked) ...
    stale = patient_form(patient, ward="C")
    # ... someone discharges the patient on /manage/ ...
    assert client.post(f"/manage/patients/{patient.pk}/discharge/").status_code == 302
    # ... and the admin saves the ward change: refused, the discharge stands
    response = client.post(admin_url(Patient, "change", patient.pk), stale)
    assert response.status_code == 200
    assert STALE_PATIENT_MESSAGE in response.content.decode()
    patient.refresh_from_db()
    assert (patient.is_active, patient.ward) == (False, "A")
    # reopened, the same change saves
    fresh = patient_form(patient, ward="C", is_active=None)
    assert client.post(admin_url(Patient, "change", patient.pk), fresh).status_code == 302
    patient.refresh_from_db()
    assert (patient.is_active, patient.ward) == (False, "C")


def test_a_stale_limits_page_does_not_put_back_a_limit_changed_meanwhile(
    client, staff_user, patient
):
    client.force_login(staff_user)
    url = f"/manage/patients/{patient.pk}/limits/"
    page = client.get(url).content.decode()
    assert f'value="{patient_version(patient)}"' in page  # the hidden field
    a_opened = opened(patient)  # A opens the page at 50/120
    # B sets the low limit to 40
    b = {**opened(patient), **DEFAULT_LIMITS, **NO_RECIPIENTS, "hr_low_limit_bpm": 40}
    assert client.post(url, b).status_code == 302
    # A changes only the PVC limit; the page sends back the low limit as A saw it (50)
    a = {**a_opened, **DEFAULT_LIMITS, **NO_RECIPIENTS, "pvc_limit_per_min": 20}
    response = client.post(url, a, follow=True)
    assert STALE_PATIENT_MESSAGE in response.content.decode()
    assert response.redirect_chain[-1][0] == url  # shown again as the patient is now
    patient.refresh_from_db()
    assert (patient.hr_low_limit_bpm, patient.pvc_limit_per_min) == (40, 10)
    trail = AuditEntry.objects.filter(patient=patient).order_by("id")
    assert [(e.field, e.old_value, e.new_value) for e in trail] == [
        ("hr_low_limit_bpm", "50", "40")
    ]


def test_the_admin_neither_edits_a_recording_nor_lets_staff_delete_one(
    client, django_user_model, staff_user, patient, other_patient
):
    from django.contrib.auth.models import Permission

    recording = Recording.objects.create(
        patient=patient, sampling_rate_hz=250, gain_adc_per_mv=200, lead_names=["II"]
    )
    Beat.objects.create(
        recording=recording, index=0, sample=100, label="N", confidence=0.9, probabilities={}
    )
    client.force_login(staff_user)
    change = admin_url(Recording, "change", recording.pk)
    form = {"patient": other_patient.pk, "sampling_rate_hz": "500", "gain_adc_per_mv": "1000"}
    assert client.post(change, form).status_code == 403
    recording.refresh_from_db()
    assert (recording.patient, recording.sampling_rate_hz) == (patient, 250)
    # staff with every permission but not superuser: no delete; a superuser deletes it whole
    manager = django_user_model.objects.create_user(username="manager", is_staff=True)
    manager.user_permissions.set(Permission.objects.filter(content_type__app_label="monitoring"))
    client.force_login(manager)
    delete = admin_url(Recording, "delete", recording.pk)
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Recording.objects.filter(pk=recording.pk).exists()
    client.force_login(staff_user)
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not Recording.objects.exists() and not Beat.objects.exists()


def test_nobody_deletes_audit_entries_or_beats_in_the_admin(client, staff_user, patient):
    entry = AuditEntry.record(staff_user, patient, "hr_low_limit_bpm", 50, 40)
    recording = Recording.objects.create(
        patient=patient, sampling_rate_hz=250, gain_adc_per_mv=200, lead_names=["II"]
    )
    beat = Beat.objects.create(
        recording=recording, index=0, sample=100, label="N", confidence=0.9, probabilities={}
    )
    client.force_login(staff_user)  # a superuser
    for model, row in ((AuditEntry, entry), (Beat, beat)):
        assert client.post(admin_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
        assert model.objects.filter(pk=row.pk).exists()


def test_the_patient_list_counts_each_clinician_once_while_searching(
    client, staff_user, patient, other_clinician, django_user_model
):
    third = django_user_model.objects.create_user(username="alice")
    patient.clinicians.add(other_clinician, third)  # three in all
    client.force_login(staff_user)
    url = reverse("admin:monitoring_patient_changelist")
    for query in ("", "?q=al", "?q=Assigned"):
        page = client.get(url + query)
        assert page.context["cl"].result_list.get(pk=patient.pk).n_clinicians == 3, query


def test_the_device_picker_says_who_wears_a_device_and_moving_it_must_be_confirmed(
    client, staff_user, patient, other_patient, device
):
    spare = Device.objects.create(serial="DEV-002")
    client.force_login(staff_user)
    url = f"/manage/patients/{other_patient.pk}/device/"
    page = client.get(url).content.decode()
    assert "DEV-001 (bed 1) · worn by Assigned Patient (A 1)" in page
    assert "DEV-002 · free" in page
    refused = client.post(url, {"device": device.pk})
    assert refused.status_code == 200
    assert "is worn by Assigned Patient" in refused.content.decode()
    device.refresh_from_db()
    assert device.patient == patient
    # a free device needs no confirmation; a worn one moves once confirmed
    assert client.post(url, {"device": spare.pk}).status_code == 302
    moved = client.post(url, {"device": device.pk, "take_from_patient": "on"})
    assert moved.status_code == 302
    device.refresh_from_db()
    assert device.patient == other_patient


def test_an_mrn_in_other_letter_case_is_refused(client, staff_user, patient):
    client.force_login(staff_user)
    response = client.post(
        "/manage/patients/admit/",
        {"mrn": "mrn-001", "name": "Typed Twice", "sex": "U", **DEFAULT_LIMITS, **NO_RECIPIENTS},
    )
    assert response.status_code == 200
    assert "Assigned Patient already has MRN MRN-001" in response.content.decode()
    assert Patient.objects.count() == 1
    # the admin refuses it too
    form = {**patient_form(patient), "mrn": "mrn-001", "name": "Typed Twice"}
    form.pop("opened_version")
    assert client.post(admin_url(Patient, "add"), form).status_code == 200
    assert Patient.objects.count() == 1


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_device_and_beat_lists_and_the_audit_trail_do_not_query_per_row(
    client, staff_user, patient
):
    recording = Recording.objects.create(
        patient=patient, sampling_rate_hz=250, gain_adc_per_mv=200, lead_names=["II"]
    )
    client.force_login(staff_user)
    pages = [
        reverse("admin:monitoring_device_changelist"),
        reverse("admin:monitoring_beat_changelist"),
        f"/patients/{patient.pk}/",
    ]

    def add_rows(start: int, n: int) -> None:
        for i in range(start, start + n):
            holder = Patient.objects.create(mrn=f"P-{i}", name=f"P {i}")
            Device.objects.create(serial=f"D-{i}", patient=holder)
            Beat.objects.create(
                recording=recording,
                index=i,
                sample=100 * i,
                label="N",
                confidence=0.9,
                probabilities={},
            )
            AuditEntry.record(staff_user, patient, "hr_low_limit_bpm", 50, 40 + i % 5)

    add_rows(0, 2)
    few = [count_queries(client, url) for url in pages]
    add_rows(2, 20)
    many = [count_queries(client, url) for url in pages]
    assert many == few


def test_home_and_manage_list_the_admitted_and_page_through_the_discharged(
    client, staff_user, clinician, patient
):
    from monitoring.views import DISCHARGED_PER_PAGE

    n_discharged = DISCHARGED_PER_PAGE + 5
    Patient.objects.bulk_create(
        Patient(mrn=f"OLD-{i:03d}", name=f"Former {i:03d}", is_active=False)
        for i in range(n_discharged)
    )
    for user, url in ((staff_user, "/manage/"), (staff_user, "/")):
        client.force_login(user)
        first = client.get(url).content.decode()
        assert "MRN-001" in first  # the admitted patient, always listed
        assert first.count("OLD-") == DISCHARGED_PER_PAGE, url
        assert f"Page 1 of 2 ({n_discharged} patients)" in first
        second = client.get(url, {"page": 2}).content.decode()
        assert second.count("OLD-") == 5 and "MRN-001" in second
        found = client.get(url, {"q": "former 007"}).content.decode()
        assert found.count("OLD-") == 1 and "OLD-007" in found
        assert "No discharged patient matches" in client.get(url, {"q": "nobody"}).content.decode()
    # a clinician sees only the discharged patients assigned to them
    Patient.objects.get(mrn="OLD-001").clinicians.add(clinician)
    client.force_login(clinician)
    page = client.get("/").content.decode()
    assert page.count("OLD-") == 1 and "OLD-001" in page


def test_a_bed_an_admitted_patient_occupies_is_refused(client, staff_user, patient):
    client.force_login(staff_user)
    admit = {"mrn": "MRN-777", "name": "New Arrival", "sex": "U", **DEFAULT_LIMITS}
    refused = client.post(
        "/manage/patients/admit/", {**admit, **NO_RECIPIENTS, "ward": "a", "bed": "1"}
    )
    assert refused.status_code == 200
    assert "Bed 1 of ward a is Assigned Patient&#x27;s (MRN MRN-001)" in refused.content.decode()
    assert not Patient.objects.filter(mrn="MRN-777").exists()
    # in the admin too, moving another patient into it
    other = Patient.objects.create(mrn="MRN-778", name="Next Door", ward="A", bed="2")
    moved = client.post(admin_url(Patient, "change", other.pk), patient_form(other, bed="1"))
    assert moved.status_code == 200 and "discharge them first" in moved.content.decode()
    # once the occupant is discharged, the bed is free
    assert client.post(f"/manage/patients/{patient.pk}/discharge/").status_code == 302
    admitted = client.post(
        "/manage/patients/admit/", {**admit, **NO_RECIPIENTS, "ward": "A", "bed": "1"}
    )
    assert admitted.status_code == 302
