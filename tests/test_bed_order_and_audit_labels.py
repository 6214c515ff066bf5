"""A charge nurse's walk through the station and management pages (2026-12-07): beds in natural
order, one recipient per mailbox, settings named as staff know them, admissions audited."""

import re

import pytest

from monitoring.admissions import by_bed, natural_key
from monitoring.forms import audit_field_label, patient_version
from monitoring.models import AlarmRecipient, AuditEntry, Patient

pytestmark = pytest.mark.django_db

LIMITS = {
    "hr_low_limit_bpm": 50,
    "hr_high_limit_bpm": 120,
    "pause_limit_s": 3.0,
    "pvc_limit_per_min": 10,
}

# (ward, bed) as a station shows them: text order put "101" before "2", "A10" before "A2" and
# ward "ICU" before "cardio" (upper case sorts first)
PLACES_IN_ORDER = [
    ("cardio", "3"),
    ("ICU", "1"),
    ("ICU", "2"),
    ("ICU", "10"),
    ("ICU", "101"),
    ("ICU", "A2"),
    ("ICU", "A10"),
]


def test_natural_key_compares_numbers_as_numbers_and_letters_case_aside():
    beds = ["101", "A10", "10", "a2", "2", "1", "A2", ""]
    assert sorted(beds, key=natural_key) == ["", "1", "2", "10", "101", "A2", "a2", "A10"]


@pytest.fixture
def ward_patients():
    """Admitted patients created in an order that is neither the bed order nor its reverse."""
    created = {}
    for i in (4, 0, 6, 2, 5, 1, 3):
        ward, bed = PLACES_IN_ORDER[i]
        created[(ward, bed)] = Patient.objects.create(
            mrn=f"MRN-B{i}", name=f"Bed {ward} {bed}", ward=ward, bed=bed
        )
    return [created[place] for place in PLACES_IN_ORDER]


def ids_in_page(page: str, pattern: str) -> list[int]:
    return [int(pk) for pk in re.findall(pattern, page)]


def test_the_station_orders_beds_as_numbers(client, staff_user, ward_patients):
    client.force_login(staff_user)
    page = client.get("/station/").content.decode()
    assert ids_in_page(page, r'id="tile-(\d+)"') == [p.pk for p in ward_patients]
    # and the websocket's hello, which adds the tiles a page does not have yet
    from monitoring.consumers import station_patient_ids

    assert station_patient_ids(staff_user) == [p.pk for p in ward_patients]


@pytest.mark.parametrize("url", ["/manage/", "/"])
def test_the_manage_and_home_lists_order_beds_as_numbers(client, staff_user, ward_patients, url):
    client.force_login(staff_user)
    page = client.get(url).content.decode()
    # each admitted patient's name once, in bed order (the discharged list is empty)
    names = [p.name for p in ward_patients]
    positions = [page.index(f">{name}<") for name in names]
    assert positions == sorted(positions)


def test_by_bed_keeps_wards_differing_in_case_together():
    rows = [
        Patient(pk=1, ward="icu", bed="2", name="b"),
        Patient(pk=2, ward="ICU", bed="10", name="c"),
        Patient(pk=3, ward="ICU", bed="1", name="a"),
    ]
    # one section a ward as typed (the station's regroup), numbers as numbers inside it
    assert [p.pk for p in by_bed(rows)] == [3, 2, 1]


# --- Recipients ------------------------------------------------------------------------------


def limits_post(patient: Patient, rows, initial: int = 0) -> dict:
    data = {
        "opened_version": patient_version(Patient.objects.get(pk=patient.pk)),
        **LIMITS,
        "recipients-TOTAL_FORMS": str(len(rows)),
        "recipients-INITIAL_FORMS": str(initial),
    }
    for i, (address, escalation, *pk) in enumerate(rows):
        data[f"recipients-{i}-address"] = address
        data[f"recipients-{i}-transport"] = "email"
        if escalation:
            data[f"recipients-{i}-escalation"] = "on"
        if pk:
            data[f"recipients-{i}-id"] = str(pk[0])
    return data


def test_an_email_recipient_listed_twice_in_other_letter_case_is_refused(
    client, staff_user, patient
):
    client.force_login(staff_user)
    rows = [("step-down@hospital.example", False), ("STEP-DOWN@Hospital.example", False)]
    response = client.post(f"/manage/patients/{patient.pk}/limits/", limits_post(patient, rows))
    assert response.status_code == 200
    assert "STEP-DOWN@Hospital.example is already listed as step-down@hospital.example" in (
        response.content.decode()
    )
    assert not AlarmRecipient.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_new_row_repeating_a_saved_recipient_in_other_case_is_refused(
    client, staff_user, patient
):
    saved = AlarmRecipient.objects.create(patient=patient, address="step-down@hospital.example")
    client.force_login(staff_user)
    rows = [(saved.address, False, saved.pk), ("Step-Down@hospital.example", False)]
    response = client.post(
        f"/manage/patients/{patient.pk}/limits/", limits_post(patient, rows, initial=1)
    )
    assert response.status_code == 200 and "is already listed as" in response.content.decode()
    assert list(patient.alarm_recipients.values_list("address", flat=True)) == [saved.address]


def test_the_same_address_as_first_call_and_as_escalation_is_two_roles(client, staff_user, patient):
    client.force_login(staff_user)
    rows = [("chief@hospital.example", False), ("Chief@hospital.example", True)]
    response = client.post(f"/manage/patients/{patient.pk}/limits/", limits_post(patient, rows))
    assert response.status_code == 302
    assert patient.alarm_recipients.count() == 2


# --- Setting names ---------------------------------------------------------------------------


def test_the_saved_message_and_the_audit_trail_name_settings_as_staff_know_them(
    client, staff_user, patient
):
    client.force_login(staff_user)
    data = limits_post(patient, [("icu@hospital.example", False)])
    data["hr_high_limit_bpm"] = 130
    response = client.post(f"/manage/patients/{patient.pk}/limits/", data, follow=True)
    page = response.content.decode()
    assert "Saved: HR high limit (bpm), icu@hospital.example (email, first call)." in page
    assert "hr_high_limit_bpm" not in page.split('id="audit-trail"')[0]
    # stored as the model's field names; shown by their labels
    assert set(AuditEntry.objects.values_list("field", flat=True)) == {
        "hr_high_limit_bpm",
        "alarm_recipient",
    }
    AuditEntry.record(staff_user, patient, "something_new", "a", "b")
    trail = client.get(f"/patients/{patient.pk}/").content.decode().split('id="audit-trail"')[1]
    settings = re.findall(r"<td>[^<]*</td><td>([^<]*)</td><td>[^<]*</td><td>[^<]*</td></tr>", trail)
    assert sorted(settings) == ["HR high limit (bpm)", "alarm recipient", "something_new"]


def test_audit_field_labels():
    assert audit_field_label("pvc_limit_per_min") == "PVC limit (per min)"
    assert audit_field_label("is_active") == "admitted"
    assert audit_field_label("alarm_recipient") == "alarm recipient"
    assert audit_field_label("clinician") == "clinician"
    assert audit_field_label("no_such_field") == "no_such_field"


# --- Admission -------------------------------------------------------------------------------


def admit(client, mrn: str, **place):
    return client.post(
        "/manage/patients/admit/",
        {
            "mrn": mrn,
            "name": "New Admission",
            "sex": "U",
            **place,
            **LIMITS,
            "recipients-TOTAL_FORMS": "0",
            "recipients-INITIAL_FORMS": "0",
        },
    )


def test_the_admission_itself_is_audited_as_readmission_is(client, staff_user):
    client.force_login(staff_user)
    assert admit(client, "MRN-300", ward="ICU", bed="4").status_code == 302
    patient = Patient.objects.get(mrn="MRN-300")
    entries = {e.field: (e.old_value, e.new_value, e.user) for e in patient.audit_entries.all()}
    assert entries["is_active"] == ("", "True", staff_user)
    assert entries["ward"] == ("", "ICU", staff_user)
    assert entries["bed"] == ("", "4", staff_user)
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    assert "<td>admitted</td>" in page


def test_an_admission_without_a_place_audits_no_empty_ward_or_bed(client, staff_user):
    client.force_login(staff_user)
    assert admit(client, "MRN-301").status_code == 302
    fields = set(Patient.objects.get(mrn="MRN-301").audit_entries.values_list("field", flat=True))
    assert "is_active" in fields and not fields & {"ward", "bed"}
