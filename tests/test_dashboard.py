"""The dashboard pages (issue 6): station, live view, HR trend, staff management, audit trail."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from monitoring.api.trend import hr_trend
from monitoring.forms import patient_version
from monitoring.models import Alarm, AlarmRecipient, AuditEntry, Beat, Device, Patient, Recording

pytestmark = pytest.mark.django_db

DEFAULT_LIMITS = {
    "hr_low_limit_bpm": 50,
    "hr_high_limit_bpm": 120,
    "pause_limit_s": 3.0,
    "pvc_limit_per_min": 10,
}
# the recipients formset's management form when no recipient row is posted
NO_RECIPIENTS = {"recipients-TOTAL_FORMS": "0", "recipients-INITIAL_FORMS": "0"}


def opened(patient: Patient) -> dict:
    """The limits page's hidden field as a page opened now sends it back."""
    return {"opened_version": patient_version(Patient.objects.get(pk=patient.pk))}


def add_beats(recording: Recording, times_s: list[float], label: str = "N") -> None:
    fs_hz = recording.sampling_rate_hz
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=index,
            sample=round(time_s * fs_hz),
            label=label,
            confidence=0.9,
            probabilities={label: 0.9},
        )
        for index, time_s in enumerate(times_s)
    )


# --- Access -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["/station/", "/patients/{pk}/live/", "/manage/", "/manage/patients/admit/"],
)
def test_pages_require_login(client, patient, url):
    response = client.get(url.format(pk=patient.pk))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_hr_trend_api_answers_anonymous_401(client, patient):
    assert client.get(f"/api/patients/{patient.pk}/hr-trend/").status_code == 401


def test_station_shows_only_assigned_admitted_patients(client, clinician, patient, other_patient):
    discharged = Patient.objects.create(mrn="MRN-009", name="Gone Home", ward="A", is_active=False)
    discharged.clinicians.add(clinician)
    client.force_login(clinician)
    page = client.get("/station/").content.decode()
    assert f'id="tile-{patient.pk}"' in page and "Assigned Patient" in page
    assert "Someone Else" not in page and "Gone Home" not in page
    assert "Research software, not a medical device" in page


def test_station_groups_tiles_by_ward_and_colours_open_alarms(
    client, staff_user, patient, other_patient
):
    Alarm.objects.create(
        patient=patient, kind="VT", priority="critical", message="VT 180 bpm, 6 beats"
    )
    client.force_login(staff_user)
    page = client.get("/station/").content.decode()
    assert 'data-ward="A"' in page and 'data-ward="B"' in page
    assert f'class="tile critical" id="tile-{patient.pk}"' in page
    assert f'class="tile" id="tile-{other_patient.pk}"' in page
    assert "VT 180 bpm" in page
    # acknowledged: the colour stays, the blink stops, who acknowledged it shows
    Alarm.objects.filter(patient=patient).update(
        state="acknowledged", acknowledged_by=staff_user, acknowledged_at=timezone.now()
    )
    page = client.get("/station/").content.decode()
    assert f'class="tile critical acknowledged" id="tile-{patient.pk}"' in page
    assert '<span class="ack-mark">✓ staff</span>' in page
    assert "more to acknowledge" not in page
    # a lower alarm nobody has acknowledged: the tile blinks for it, and says so beside the ✓
    Alarm.objects.create(patient=patient, kind="HR_HIGH", priority="warning", message="HR 130")
    page = client.get("/station/").content.decode()
    assert f'class="tile critical" id="tile-{patient.pk}"' in page
    assert '<span class="ack-mark">✓ staff</span> · 1 more to acknowledge' in page


def test_live_view_is_404_for_an_unassigned_patient(client, clinician, patient, other_patient):
    client.force_login(clinician)
    assert client.get(f"/patients/{patient.pk}/live/").status_code == 200
    assert client.get(f"/patients/{other_patient.pk}/live/").status_code == 404
    assert client.get(f"/api/patients/{other_patient.pk}/hr-trend/").status_code == 404


def test_live_view_lists_alarms_with_acknowledge_and_sets_the_csrf_cookie(
    client, clinician, patient, recording
):
    open_alarm = Alarm.objects.create(
        patient=patient,
        recording=recording,
        kind="HR_HIGH",
        priority="warning",
        message="HR 134 > 120",
    )
    acked = Alarm.objects.create(
        patient=patient,
        kind="PAUSE",
        priority="critical",
        message="pause 3.4 s >= 3.0 s",
        state="acknowledged",
        acknowledged_by=clinician,
        acknowledged_at=timezone.now(),
    )
    client.force_login(clinician)
    response = client.get(f"/patients/{patient.pk}/live/")
    page = response.content.decode()
    assert "csrftoken" in response.cookies
    assert f'data-socket="/ws/patients/{patient.pk}/"' in page
    assert f'<button type="button" class="ack" data-alarm="{open_alarm.pk}">' in page
    assert f'data-alarm="{acked.pk}">Acknowledge' not in page
    assert "HR 134 &gt; 120" in page and "clinician at" in page
    assert f"#{recording.pk}" in page  # the live recording is named
    for gain in (5, 10, 20):
        assert f'<option value="{gain}"' in page


def test_home_and_patient_page_link_station_and_live_view(client, clinician, patient):
    client.force_login(clinician)
    home = client.get("/").content.decode()
    assert reverse("station") in home and reverse("patient-live", args=[patient.pk]) in home
    assert reverse("manage") not in home  # management is for staff
    detail = client.get(f"/patients/{patient.pk}/").content.decode()
    assert reverse("patient-live", args=[patient.pk]) in detail
    assert reverse("patient-limits", args=[patient.pk]) not in detail


# --- HR trend -------------------------------------------------------------------------------


def test_hr_trend_is_60_over_median_rr_per_minute(client, clinician, patient, device):
    now = timezone.now()
    # 30 minutes ago: 60 s at RR 1.0 s (60 bpm); 10 minutes ago: 60 s at RR 0.5 s (120 bpm)
    # with one premature beat, which the median ignores.
    start = now - timedelta(minutes=40)
    recording = Recording.objects.create(
        patient=patient,
        device=device,
        sampling_rate_hz=250.0,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        started_at=start,
    )
    slow = [600.0 + i * 1.0 for i in range(61)]
    fast = [1800.0 + i * 0.5 for i in range(121)]
    fast[40] -= 0.2  # premature: RR 0.3 then 0.7
    add_beats(recording, slow + fast)

    client.force_login(clinician)
    body = client.get(f"/api/patients/{patient.pk}/hr-trend/?minutes=60").json()
    assert body["minutes"] == 60 and body["bin_s"] == 60
    rates = [point["hr_bpm"] for point in body["points"]]
    assert rates and set(rates) <= {60.0, 120.0}
    assert rates.count(60.0) in (1, 2) and rates.count(120.0) in (1, 2)  # bins need not align
    assert sum(p["intervals"] for p in body["points"] if p["hr_bpm"] == 60.0) == 60
    assert sum(p["intervals"] for p in body["points"] if p["hr_bpm"] == 120.0) == 120
    times = [point["time"] for point in body["points"]]
    assert times == sorted(times)


def test_hr_trend_leaves_out_old_beats_and_holes(patient, device):
    now = timezone.now()
    recording = Recording.objects.create(
        patient=patient,
        device=device,
        sampling_rate_hz=360.0,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        started_at=now - timedelta(minutes=90),
    )
    # 80 minutes ago (outside a 60-minute trend), then a 20-s hole, then 75 bpm.
    old = [600.0 + i * 0.8 for i in range(50)]
    recent = [4200.0 + i * 0.8 for i in range(60)]
    add_beats(recording, old + recent)
    points = hr_trend(patient, 60, now=now)
    assert points and all(point["hr_bpm"] == 75.0 for point in points)
    assert sum(point["intervals"] for point in points) == 59  # the hole is no interval
    assert hr_trend(patient, 5, now=now) == []


def test_hr_trend_rejects_a_bad_window(client, clinician, patient):
    client.force_login(clinician)
    # "%C2%B2" is "²": "²".isdigit() is true but int("²") raises, so it was a 500
    for minutes in ("0", "abc", "100000", "", "%C2%B2", "1.5", "-5", "9" * 5000):
        response = client.get(f"/api/patients/{patient.pk}/hr-trend/?minutes={minutes}")
        assert response.status_code == 400, minutes
        # the one error shape of the API (it was {"minutes": ...})
        assert response.json() == {"detail": "minutes must be a whole number from 1 to 1440"}


# --- Management (staff only) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/manage/"),
        ("get", "/manage/patients/admit/"),
        ("post", "/manage/patients/admit/"),
        ("get", "/manage/patients/{pk}/limits/"),
        ("post", "/manage/patients/{pk}/limits/"),
        ("post", "/manage/patients/{pk}/discharge/"),
        ("post", "/manage/patients/{pk}/device/"),
        ("post", "/manage/devices/{device}/unassign/"),
    ],
)
def test_management_is_403_for_clinicians(client, clinician, patient, device, method, url):
    client.force_login(clinician)
    response = getattr(client, method)(url.format(pk=patient.pk, device=device.pk))
    assert response.status_code == 403
    patient.refresh_from_db()
    device.refresh_from_db()
    assert patient.is_active and device.patient == patient


def test_staff_admits_a_patient_with_audited_starting_limits(client, staff_user, clinician):
    client.force_login(staff_user)
    response = client.post(
        "/manage/patients/admit/",
        {
            "mrn": "MRN-100",
            "name": "New Admission",
            "sex": "F",
            "ward": "ICU",
            "bed": "4",
            "clinicians": [clinician.pk],
            "hr_low_limit_bpm": 45,
            "hr_high_limit_bpm": 130,
            "pause_limit_s": 3.0,
            "pvc_limit_per_min": 10,
            "notes": "",
            **NO_RECIPIENTS,
        },
    )
    patient = Patient.objects.get(mrn="MRN-100")
    assert response.status_code == 302 and response["Location"] == f"/patients/{patient.pk}/"
    assert patient.is_active and list(patient.clinicians.all()) == [clinician]
    entries = {e.field: (e.old_value, e.new_value, e.user) for e in patient.audit_entries.all()}
    assert entries["hr_low_limit_bpm"] == ("", "45", staff_user)
    assert entries["hr_high_limit_bpm"] == ("", "130", staff_user)


def test_admit_refuses_low_limit_above_high(client, staff_user):
    client.force_login(staff_user)
    response = client.post(
        "/manage/patients/admit/",
        {
            "mrn": "MRN-101",
            "name": "X",
            "sex": "U",
            "hr_low_limit_bpm": 130,
            "hr_high_limit_bpm": 120,
            "pause_limit_s": 3.0,
            "pvc_limit_per_min": 10,
            **NO_RECIPIENTS,
        },
    )
    assert response.status_code == 200
    assert "must be below the high limit" in response.content.decode()
    assert not Patient.objects.filter(mrn="MRN-101").exists()
    assert not AuditEntry.objects.exists()


def test_limit_changes_write_one_audit_row_per_changed_field(client, staff_user, patient):
    client.force_login(staff_user)
    response = client.post(
        f"/manage/patients/{patient.pk}/limits/",
        {
            **opened(patient),
            "hr_low_limit_bpm": 40,
            "hr_high_limit_bpm": 120,
            "pause_limit_s": 4.5,
            "pvc_limit_per_min": 10,
            **NO_RECIPIENTS,
        },
    )
    assert response.status_code == 302
    patient.refresh_from_db()
    assert (patient.hr_low_limit_bpm, patient.pause_limit_s) == (40, 4.5)
    rows = {e.field: e for e in AuditEntry.objects.filter(patient=patient)}
    assert set(rows) == {"hr_low_limit_bpm", "pause_limit_s"}  # unchanged fields: no row
    assert (rows["hr_low_limit_bpm"].old_value, rows["hr_low_limit_bpm"].new_value) == ("50", "40")
    assert (rows["pause_limit_s"].old_value, rows["pause_limit_s"].new_value) == ("3.0", "4.5")
    assert rows["pause_limit_s"].user == staff_user
    # and the patient page shows the trail
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    assert 'id="audit-trail"' in page and "pause_limit_s" in page and "4.5" in page


def test_server_rendered_times_name_their_zone(client, staff_user, patient, device, settings):
    """The patient page, the management page, the discharged list and an upload's results
    showed times in TIME_ZONE without saying so (the recordings list in Django's "Jan. 15,
    2026, 1 p.m." besides): read in another zone, or across a clock change, they were
    ambiguous. Each now carries its zone's abbreviation, as the alarm emails do."""
    settings.TIME_ZONE = "Europe/Berlin"
    winter = datetime(2026, 1, 15, 12, 0, 5, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 12, 0, 5, tzinfo=UTC)
    Device.objects.filter(pk=device.pk).update(last_seen_at=summer)
    recording = Recording.objects.create(
        patient=patient,
        device=device,
        sampling_rate_hz=250.0,
        gain_adc_per_mv=200.0,
        n_channels=1,
        lead_names=["II"],
        started_at=winter,
    )
    upload = Recording.objects.create(
        patient=patient,
        source=Recording.Source.UPLOAD,
        sampling_rate_hz=250.0,
        gain_adc_per_mv=200.0,
        n_channels=1,
        lead_names=["II"],
    )
    Recording.objects.filter(pk=upload.pk).update(created_at=summer)
    AuditEntry.objects.create(
        patient=patient,
        user=staff_user,
        field="hr_low_limit_bpm",
        old_value="50",
        new_value="40",
        changed_at=winter,
    )
    gone = Patient.objects.create(mrn="MRN-GONE", name="Gone Patient", is_active=False)
    Patient.objects.filter(pk=gone.pk).update(updated_at=summer)
    client.force_login(staff_user)

    page = client.get(f"/patients/{patient.pk}/").content.decode()
    assert "2026-07-01 14:00:05 CEST" in page  # the device, last seen (summer time)
    assert "2026-01-15 13:00:05 CET" in page  # the recording's start, and the audit entry
    assert page.count("2026-01-15 13:00:05 CET") == 2
    manage = client.get("/manage/").content.decode()
    assert "2026-07-01 14:00:05 CEST" in manage  # the device
    assert "2026-07-01 14:00 CEST" in manage  # the discharged patient's last change
    results = client.get(f"/recordings/{upload.pk}/").content.decode()
    assert "2026-07-01 14:00 CEST by" in results
    assert (
        "Started 2026-01-15 13:00:05 CET (Europe/Berlin)"
        in client.get(f"/recordings/{recording.pk}/review/").content.decode()
    )


def test_the_window_model_alarm_is_switched_on_in_the_limits_form_and_audited(
    client, staff_user, patient
):
    client.force_login(staff_user)
    page = client.get(f"/manage/patients/{patient.pk}/limits/").content.decode()
    assert 'name="sustained_arrhythmia_alarm"' in page and "0.53" in page  # the reason
    response = client.post(
        f"/manage/patients/{patient.pk}/limits/",
        {**opened(patient), **DEFAULT_LIMITS, **NO_RECIPIENTS, "sustained_arrhythmia_alarm": "on"},
    )
    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.sustained_arrhythmia_alarm is True
    entry = AuditEntry.objects.get(patient=patient)
    assert (entry.field, entry.old_value, entry.new_value) == (
        "sustained_arrhythmia_alarm",
        "False",
        "True",
    )
    assert 'id="arrhythmia-switch">on<' in client.get(f"/patients/{patient.pk}/").content.decode()


def test_an_invalid_limit_change_saves_and_audits_nothing(client, staff_user, patient):
    client.force_login(staff_user)
    response = client.post(
        f"/manage/patients/{patient.pk}/limits/",
        {
            **opened(patient),
            "hr_low_limit_bpm": 150,
            "hr_high_limit_bpm": 120,
            "pause_limit_s": 3.0,
            "pvc_limit_per_min": 10,
            **NO_RECIPIENTS,
        },
    )
    assert response.status_code == 200
    patient.refresh_from_db()
    assert patient.hr_low_limit_bpm == 50
    assert not AuditEntry.objects.exists()


def test_clinicians_see_the_audit_trail_of_their_patients(client, staff_user, clinician, patient):
    AuditEntry.objects.create(
        patient=patient,
        user=staff_user,
        field="hr_high_limit_bpm",
        old_value="120",
        new_value="110",
    )
    client.force_login(clinician)
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    assert "hr_high_limit_bpm" in page and "staff" in page and "110" in page


def test_discharge_leaves_the_station_and_is_audited(client, staff_user, patient):
    client.force_login(staff_user)
    assert client.post(f"/manage/patients/{patient.pk}/discharge/").status_code == 302
    patient.refresh_from_db()
    assert not patient.is_active
    entry = AuditEntry.objects.get(patient=patient, field="is_active")
    assert (entry.old_value, entry.new_value) == ("True", "False")
    assert f'id="tile-{patient.pk}"' not in client.get("/station/").content.decode()
    # GET asks for confirmation (tests/test_staff_walkthrough.py); once discharged, nothing to ask
    assert client.get(f"/manage/patients/{patient.pk}/discharge/").status_code == 302


def test_assign_moves_a_device_and_unassign_frees_it(
    client, staff_user, patient, other_patient, device
):
    client.force_login(staff_user)
    response = client.post(
        f"/manage/patients/{other_patient.pk}/device/",
        {"device": device.pk, "take_from_patient": "on"},  # it is worn by patient
    )
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.patient == other_patient
    assert AuditEntry.objects.get(patient=patient, field="device").old_value == "DEV-001"
    assert AuditEntry.objects.get(patient=other_patient, field="device").new_value == "DEV-001"

    assert client.post(f"/manage/devices/{device.pk}/unassign/").status_code == 302
    device.refresh_from_db()
    assert device.patient is None
    assert AuditEntry.objects.filter(patient=other_patient, field="device").count() == 2


def test_an_inactive_device_cannot_be_assigned(client, staff_user, patient):
    revoked = Device.objects.create(serial="DEV-OLD", is_active=False)
    client.force_login(staff_user)
    response = client.post(f"/manage/patients/{patient.pk}/device/", {"device": revoked.pk})
    assert response.status_code == 200 and "device" in response.context["form"].errors
    revoked.refresh_from_db()
    assert revoked.patient is None


def test_staff_management_overview_lists_patients_and_devices(client, staff_user, patient, device):
    client.force_login(staff_user)
    page = client.get("/manage/").content.decode()
    assert "MRN-001" in page and "DEV-001" in page
    assert reverse("patient-limits", args=[patient.pk]) in page
    assert reverse("manage") in client.get("/").content.decode()


def test_the_manage_page_counts_recipients_in_as_many_queries_for_10_patients_as_for_2(
    client, staff_user
):
    def admit_patients(n: int) -> None:
        for _ in range(n):
            number = Patient.objects.count()
            patient = Patient.objects.create(mrn=f"MRN-Q{number:02d}", name=f"Queried {number}")
            AlarmRecipient.objects.create(patient=patient, address=f"ward{number}@x.example")
            AlarmRecipient.objects.create(
                patient=patient, address=f"chief{number}@x.example", escalation=True
            )

    def manage_page() -> tuple[int, str]:
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/manage/")
        assert response.status_code == 200
        return len(queries), response.content.decode()

    client.force_login(staff_user)
    admit_patients(2)
    with_2, _ = manage_page()
    admit_patients(7)
    escalation_only = Patient.objects.create(mrn="MRN-Q99", name="Escalation Only")
    AlarmRecipient.objects.create(
        patient=escalation_only, address="chief@x.example", escalation=True
    )
    with_10, page = manage_page()
    assert with_10 == with_2
    # the counts are still right: 9 patients with both recipients, one told of nothing at once
    assert page.count("<td>2</td>") == 9
    assert page.count('<span class="error">none first-call</span>') == 1


def test_hr_trend_leaves_out_uploaded_recordings(patient):
    # an upload's started_at is the upload time, not when its signal was recorded
    upload = Recording.objects.create(
        patient=patient,
        source=Recording.Source.UPLOAD,
        sampling_rate_hz=360.0,
        gain_adc_per_mv=200.0,
        lead_names=["MLII"],
        started_at=timezone.now() - timedelta(minutes=5),
    )
    add_beats(upload, [i * 0.8 for i in range(200)])
    assert hr_trend(patient, 60) == []


# --- Alarm recipients ------------------------------------------------------------------------


def recipient_rows(*rows, initial: int = 0) -> dict:
    """The recipients formset's POST data: (address, transport, escalation[, id, delete])."""
    data = {"recipients-TOTAL_FORMS": str(len(rows)), "recipients-INITIAL_FORMS": str(initial)}
    for i, (address, transport, escalation, *existing) in enumerate(rows):
        data[f"recipients-{i}-address"] = address
        data[f"recipients-{i}-transport"] = transport
        if escalation:
            data[f"recipients-{i}-escalation"] = "on"
        if existing:
            data[f"recipients-{i}-id"] = str(existing[0])
            if len(existing) > 1 and existing[1]:
                data[f"recipients-{i}-DELETE"] = "on"
    return data


def admit(client, mrn: str, recipients: dict):
    return client.post(
        "/manage/patients/admit/",
        {"mrn": mrn, "name": "New Admission", "sex": "U", **DEFAULT_LIMITS, **recipients},
    )


def test_staff_admit_a_patient_with_audited_recipients(client, staff_user):
    client.force_login(staff_user)
    page = client.get("/manage/patients/admit/").content.decode()
    assert 'id="recipients-table"' in page and 'name="recipients-0-address"' in page
    response = admit(
        client,
        "MRN-200",
        recipient_rows(
            ("icu@hospital.example", "email", False), ("chief@hospital.example", "email", True)
        ),
    )
    patient = Patient.objects.get(mrn="MRN-200")
    assert response.status_code == 302
    assert sorted(patient.alarm_recipients.values_list("address", "escalation")) == [
        ("chief@hospital.example", True),
        ("icu@hospital.example", False),
    ]
    trail = patient.audit_entries.filter(field="alarm_recipient")
    assert sorted((e.old_value, e.new_value, e.user) for e in trail) == [
        ("", "chief@hospital.example (email, escalation)", staff_user),
        ("", "icu@hospital.example (email, first call)", staff_user),
    ]
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    assert 'id="no-recipients"' not in page and "icu@hospital.example (email, first call)" in page


def test_a_patient_without_recipients_is_admitted_with_a_warning_on_its_pages(
    client, staff_user, clinician
):
    client.force_login(staff_user)
    response = admit(client, "MRN-201", NO_RECIPIENTS)
    patient = Patient.objects.get(mrn="MRN-201")
    page = client.get(response["Location"]).content.decode()
    assert "has no first-call alarm recipient" in page  # the message after the admission
    assert 'id="no-recipients"' in page and reverse("patient-limits", args=[patient.pk]) in page
    assert 'id="no-recipients"' in client.get(f"/patients/{patient.pk}/live/").content.decode()
    # a clinician sees the warning too, without the staff link
    patient.clinicians.add(clinician)
    client.force_login(clinician)
    page = client.get(f"/patients/{patient.pk}/live/").content.decode()
    assert 'id="no-recipients"' in page and "Staff add them" in page
    assert reverse("patient-limits", args=[patient.pk]) not in page
    # an escalation address alone still emails nobody when an alarm is raised
    AlarmRecipient.objects.create(patient=patient, address="chief@x.example", escalation=True)
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    assert 'id="no-recipients"' in page and "only the escalation list" in page


def test_recipients_are_added_changed_and_removed_on_the_limits_page_and_audited(
    client, staff_user, patient
):
    ward = AlarmRecipient.objects.create(patient=patient, address="ward-a@hospital.example")
    old_hook = AlarmRecipient.objects.create(
        patient=patient, address="https://pager.example/old", transport="webhook"
    )
    client.force_login(staff_user)
    page = client.get(f"/manage/patients/{patient.pk}/limits/").content.decode()
    assert "Alarm limits and recipients" in page and 'value="ward-a@hospital.example"' in page
    response = client.post(
        f"/manage/patients/{patient.pk}/limits/",
        {
            **opened(patient),
            **DEFAULT_LIMITS,
            **recipient_rows(
                ("ward-a@hospital.example", "email", True, ward.pk),  # now escalation only
                ("https://pager.example/old", "webhook", False, old_hook.pk, True),  # removed
                ("nurse@hospital.example", "email", False),  # added
                initial=2,
            ),
        },
    )
    assert response.status_code == 302
    assert sorted(patient.alarm_recipients.values_list("address", "escalation")) == [
        ("nurse@hospital.example", False),
        ("ward-a@hospital.example", True),
    ]
    trail = AuditEntry.objects.filter(patient=patient, field="alarm_recipient")
    assert sorted((e.old_value, e.new_value) for e in trail) == [
        ("", "nurse@hospital.example (email, first call)"),
        ("https://pager.example/old (webhook, first call)", ""),
        (
            "ward-a@hospital.example (email, first call)",
            "ward-a@hospital.example (email, escalation)",
        ),
    ]
    assert not AuditEntry.objects.exclude(field="alarm_recipient").exists()  # limits unchanged


def test_a_long_webhook_address_keeps_what_changed_in_the_audit_trail(client, staff_user, patient):
    url = "https://pager.example/" + "a" * 278  # 300 characters
    hook = AlarmRecipient.objects.create(patient=patient, address=url, transport="webhook")
    client.force_login(staff_user)
    response = client.post(
        f"/manage/patients/{patient.pk}/limits/",
        {
            **opened(patient),
            **DEFAULT_LIMITS,
            **recipient_rows((url, "webhook", True, hook.pk), initial=1),
        },
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(patient=patient, field="alarm_recipient")
    assert (entry.old_value, entry.new_value) == (
        f"{url} (webhook, first call)",
        f"{url} (webhook, escalation)",
    )
    # the longest label a recipient can have fits too
    address_length = AlarmRecipient._meta.get_field("address").max_length
    longest = AlarmRecipient(address="x" * address_length, transport="webhook", escalation=True)
    assert len(str(longest)) <= AuditEntry._meta.get_field("new_value").max_length


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ((("not-an-address", "email", False),), "Enter an email address"),
        ((("ftp://pager.example/", "webhook", False),), "A webhook address is an http(s) URL"),
        ((("a@x.example", "email", False), ("a@x.example", "email", False)), "Please correct"),
    ],
    ids=["bad-email", "bad-webhook", "duplicate"],
)
def test_a_bad_recipient_saves_and_audits_nothing(client, staff_user, patient, rows, error):
    client.force_login(staff_user)
    response = client.post(
        f"/manage/patients/{patient.pk}/limits/",
        {**opened(patient), **DEFAULT_LIMITS, "hr_high_limit_bpm": 110, **recipient_rows(*rows)},
    )
    assert response.status_code == 200 and error in response.content.decode()
    patient.refresh_from_db()
    assert patient.hr_high_limit_bpm == 120 and not patient.alarm_recipients.exists()
    assert not AuditEntry.objects.exists()


# --- What the pages say (walkthrough, 2026-12-07) -----------------------------------------


def test_the_live_view_names_the_time_zone_of_its_alarm_times(client, clinician, patient, settings):
    """The alarm list's times are in the server's zone, as on the patient page and the review,
    and the page says which: live.js formatted them in the browser's zone without saying so,
    so a clinician in another zone saw 21:07 there and 02:06 on the review of the same event."""
    settings.TIME_ZONE = "Europe/Berlin"
    Alarm.objects.create(patient=patient, kind="HR_HIGH", priority="warning", message="HR 130")
    client.force_login(clinician)
    page = client.get(f"/patients/{patient.pk}/live/").content.decode()
    assert 'data-time-zone="Europe/Berlin"' in page  # what live.js formats in
    assert "<th>Raised (Europe/Berlin)</th>" in page
    # an error on acknowledging is announced to a screen reader; the table takes the focus
    # when the last button to acknowledge goes
    assert '<p class="error" id="ack-error" role="alert">' in page
    assert '<table class="grid" id="alarm-table" tabindex="-1">' in page


@pytest.mark.parametrize("url", ["/manage/patients/admit/", "/manage/patients/{pk}/limits/"])
def test_every_recipient_control_has_a_label(client, staff_user, patient, url):
    """The recipients formset's inputs sat under the table's headings with no label of their
    own: a screen reader read "edit text", "checkbox"."""
    AlarmRecipient.objects.create(patient=patient, address="ward-a@hospital.example")
    client.force_login(staff_user)
    page = client.get(url.format(pk=patient.pk)).content.decode()
    table = page[page.index('id="recipients-table"') : page.index("</table>")]
    controls = [
        re.search(r'\bid="([^"]+)"', tag).group(1)
        for tag in re.findall(r"<(?:input|select)[^>]*>", table)
        if 'type="hidden"' not in tag
    ]
    assert controls and any(c.endswith("-DELETE") for c in controls) == ("limits" in url)
    for control in controls:
        assert f'<label class="visually-hidden" for="{control}">' in table, control


def test_pages_have_an_icon_and_the_station_uses_the_whole_width(client, clinician, patient):
    """Every page asked for /favicon.ico (a 404 in the console of each page); the station, a
    wall display, sat in the pages' 1200-px column."""
    from django.contrib.staticfiles import finders

    client.force_login(clinician)
    home = client.get("/").content.decode()
    assert 'rel="icon" href="/static/cardiospike/favicon.svg"' in home
    assert finders.find("cardiospike/favicon.svg")
    assert '<main class="wide">' in client.get("/station/").content.decode()
    assert "<main>" in home
