"""A streaming device and its patient: moved to another patient, or its patient discharged.

Moving a device answers its next chunk of the old session 409 with ``"code": "new_session"``
(the device starts a new session and resends the chunk there); discharging a patient
unassigns their devices, so that the next chunk is refused and nothing more is recorded, or
alarmed, for a patient no station shows.
"""

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone
from rest_framework.test import APIClient

from monitoring.alarms import check_devices
from monitoring.models import Alarm, AuditEntry, Device, Recording, SampleChunk
from tests.test_admin_site import patient_form
from tests.test_device_ingest import make_chunk, post_json

pytestmark = pytest.mark.django_db


@pytest.fixture
def device_client(device_token):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Device {device_token}")
    return api


@pytest.fixture
def analyses(monkeypatch):
    """The recordings whose analysis was scheduled (not run: these tests are about storage)."""
    scheduled = []
    monkeypatch.setattr("monitoring.ingest.schedule_analysis", scheduled.append)
    return scheduled


# --- Moving a device --------------------------------------------------------------------


def test_a_moved_device_is_asked_for_a_new_session_and_streams_to_its_new_patient(
    client, staff_user, device_client, device, patient, other_patient, analyses
):
    assert post_json(device_client, make_chunk(seq=0, session="before")).status_code == 201
    client.force_login(staff_user)
    response = client.post(
        f"/manage/patients/{other_patient.pk}/device/",
        {"device": device.pk, "take_from_patient": "on"},  # it is worn by patient
    )
    assert response.status_code == 302

    refused = post_json(device_client, make_chunk(seq=1, session="before"))
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "new_session"
    assert "another patient" in body["detail"]
    # the code and what to do with the backlog first: the firmware reads 200 bytes
    assert list(body) == ["code", "backlog", "detail"] and body["backlog"] == "drop"

    # the device's new session: its next chunk (the refused one, sampled on the previous
    # patient, is dropped), as seq 0 from sample 0
    following = make_chunk(seq=2, session="after")
    following.seq, following.first_sample = 0, 0
    assert post_json(device_client, following).status_code == 201
    old = Recording.objects.get(session="before")
    new = Recording.objects.get(session="after")
    assert old.patient == patient and old.status == Recording.Status.CLOSED
    assert new.patient == other_patient and new.status == Recording.Status.LIVE
    assert (old.chunks.count(), new.chunks.count()) == (1, 1)


def test_a_device_without_session_ids_goes_on_in_a_new_recording_after_a_move(
    device_client, device, patient, other_patient, analyses
):
    # a JSON client that never names a session cannot be asked to start a new one
    assert post_json(device_client, make_chunk(seq=0, session="")).status_code == 201
    Device.objects.filter(pk=device.pk).update(patient=other_patient)
    response = post_json(device_client, make_chunk(seq=1, session=""))
    assert response.status_code == 201
    old, new = Recording.objects.order_by("pk")
    assert old.patient == patient and old.status == Recording.Status.CLOSED
    assert new.patient == other_patient and response.json()["recording"] == new.pk


def test_a_second_device_replaces_the_first_which_can_no_longer_record_for_the_patient(
    client, staff_user, device_client, device, patient, analyses
):
    assert post_json(device_client, make_chunk(seq=0, session="before")).status_code == 201
    spare = Device.objects.create(serial="DEV-002")
    client.force_login(staff_user)
    response = client.post(f"/manage/patients/{patient.pk}/device/", {"device": spare.pk})
    assert response.status_code == 302
    device.refresh_from_db()
    spare.refresh_from_db()
    assert (device.patient, spare.patient) == (None, patient)
    audited = AuditEntry.objects.filter(patient=patient, field="device").order_by("id")
    assert [(e.old_value, e.new_value, e.user) for e in audited] == [
        ("DEV-001", "", staff_user),
        ("", "DEV-002", staff_user),
    ]
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == [
        "Device DEV-002 assigned to Assigned Patient (replacing DEV-001, now unassigned)."
    ]

    # the replaced device's next chunk is refused: it has no patient any more
    refused = post_json(device_client, make_chunk(seq=1, session="before"))
    assert refused.status_code == 403 and "not assigned" in refused.json()["detail"]
    assert SampleChunk.objects.count() == 1


def test_the_database_holds_one_device_per_patient(patient, device):
    from django.core.exceptions import ValidationError
    from django.db import IntegrityError, transaction

    spare = Device(serial="DEV-002", patient=patient)
    with pytest.raises(ValidationError, match="already has a device"):
        spare.full_clean()  # what the admin's form runs
    with pytest.raises(IntegrityError), transaction.atomic():
        spare.save()
    Device.objects.create(serial="DEV-003")  # any number of unassigned devices
    Device.objects.create(serial="DEV-004")


# --- Discharging a patient --------------------------------------------------------------


def test_discharge_unassigns_the_device_and_closes_the_live_recording(
    client, staff_user, device_client, device, patient, analyses, django_capture_on_commit_callbacks
):
    assert post_json(device_client, make_chunk(seq=0)).status_code == 201
    recording = Recording.objects.get()

    client.force_login(staff_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/manage/patients/{patient.pk}/discharge/")
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.patient is None
    audited = AuditEntry.objects.filter(patient=patient, field="device")
    assert [(e.old_value, e.new_value, e.user) for e in audited] == [("DEV-001", "", staff_user)]
    recording.refresh_from_db()
    assert recording.status == Recording.Status.CLOSED
    assert recording.closed_by == Recording.ClosedBy.DISCHARGE
    assert analyses == [recording.pk]  # the analysis finishes the closed recording
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == ["Discharged Assigned Patient; device DEV-001 unassigned."]


def test_a_chunk_after_discharge_is_refused_and_raises_nothing(
    client, staff_user, device_client, patient, analyses, django_capture_on_commit_callbacks
):
    assert post_json(device_client, make_chunk(seq=0)).status_code == 201
    client.force_login(staff_user)
    client.post(f"/manage/patients/{patient.pk}/discharge/")

    with django_capture_on_commit_callbacks(execute=True):
        for seq in (1, 2):  # the same session, then a new one after the device's reboot
            session = "a1b2c3d4" if seq == 1 else "rebooted"
            response = post_json(device_client, make_chunk(seq=seq, session=session))
            assert response.status_code == 403
            assert "not assigned to a patient" in response.json()["detail"]
    assert SampleChunk.objects.count() == 1
    assert Recording.objects.get().status == Recording.Status.CLOSED
    assert analyses == []
    # and a silent device of a discharged patient is nobody's "device offline"
    check_devices(timezone.now() + timedelta(hours=1))
    assert not Alarm.objects.exists()


def test_discharge_without_a_device_says_only_discharged(client, staff_user, patient):
    client.force_login(staff_user)
    response = client.post(f"/manage/patients/{patient.pk}/discharge/")
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == ["Discharged Assigned Patient."]
    assert not AuditEntry.objects.filter(field="device").exists()


def assert_refused_as_discharged(client, patient, device) -> None:
    """The assign page refuses ``device`` for the discharged ``patient`` and says why."""
    response = client.post(f"/manage/patients/{patient.pk}/device/", {"device": device.pk})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.patient is None
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown[-1].startswith("Assigned Patient is discharged: readmit them")


def test_a_discharged_patient_cannot_be_given_a_device(client, staff_user, patient, device):
    spare = Device.objects.create(serial="DEV-002")
    client.force_login(staff_user)
    client.post(f"/manage/patients/{patient.pk}/discharge/")
    assert_refused_as_discharged(client, patient, spare)
    # nor through the admin, whose form runs the model's validation
    from django.core.exceptions import ValidationError

    patient.refresh_from_db()
    spare.patient = patient
    with pytest.raises(ValidationError, match="is discharged"):
        spare.full_clean()


def test_a_discharge_while_a_device_is_being_assigned_wins(
    client, staff_user, patient, monkeypatch
):
    """The page reads the patient, then validates the form: a discharge committed in
    between must be seen under the lock, not overwritten by the assignment."""
    from monitoring.forms import AssignDeviceForm
    from monitoring.models import Patient

    spare = Device.objects.create(serial="DEV-002")
    validate = AssignDeviceForm.is_valid

    def discharged_meanwhile(form):
        Patient.objects.filter(pk=patient.pk).update(is_active=False)
        return validate(form)

    monkeypatch.setattr(AssignDeviceForm, "is_valid", discharged_meanwhile)
    client.force_login(staff_user)
    assert_refused_as_discharged(client, patient, spare)


def test_a_discharge_in_the_admin_ends_the_monitoring_as_the_page_does(
    client, staff_user, device_client, device, patient, analyses, django_capture_on_commit_callbacks
):
    from monitoring.alarms import Condition, apply_conditions
    from monitoring.models import AlarmKind

    assert post_json(device_client, make_chunk(seq=0)).status_code == 201
    condition = Condition(AlarmKind.HR_HIGH, True, "HR 140 > 120", value=140.0, limit=120.0)
    apply_conditions(patient, None, [condition], timezone.now())
    client.force_login(staff_user)
    form = patient_form(patient, is_active=None)  # the Admitted box unticked
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/monitoring/patient/{patient.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    device.refresh_from_db()
    assert device.patient is None
    recording = Recording.objects.get()
    assert recording.status == Recording.Status.CLOSED
    assert recording.closed_by == Recording.ClosedBy.DISCHARGE
    assert Alarm.objects.get().state == "resolved"
    audited = AuditEntry.objects.filter(patient=patient).order_by("id")
    assert [(e.field, e.old_value, e.new_value) for e in audited] == [
        ("is_active", "True", "False"),
        ("device", "DEV-001", ""),
    ]
    refused = post_json(device_client, make_chunk(seq=1))
    assert refused.status_code == 403 and SampleChunk.objects.count() == 1


def test_a_discharge_while_the_admin_assigns_a_device_wins(
    client, staff_user, patient, monkeypatch
):
    """The admin's form reads the patient, then validates: a discharge committed in between
    must be seen (under the patient's lock) and refuse the assignment, as the page does."""
    from monitoring.admin import DeviceAdminForm
    from monitoring.models import Patient

    spare = Device.objects.create(serial="DEV-002")
    clean_fields = DeviceAdminForm._clean_fields

    def discharged_meanwhile(form):
        clean_fields(form)  # the patient field has been read, still admitted
        Patient.objects.filter(pk=patient.pk).update(is_active=False)

    monkeypatch.setattr(DeviceAdminForm, "_clean_fields", discharged_meanwhile)
    client.force_login(staff_user)
    form = {
        "serial": spare.serial,
        "label": "",
        "patient": patient.pk,
        "firmware_version": "",
        "sampling_rate_hz": spare.sampling_rate_hz,
        "gain_adc_per_mv": spare.gain_adc_per_mv,
        "is_active": "on",
    }
    response = client.post(f"/admin/monitoring/device/{spare.pk}/change/", form)
    assert response.status_code == 200  # the form again, with its error
    assert "is discharged: readmit them first" in response.content.decode()
    spare.refresh_from_db()
    assert spare.patient is None


def discharge_and_readmit(client, staff_user, patient, device) -> None:
    """Discharge the patient through the page, then admit them again with the same device."""
    client.force_login(staff_user)
    client.post(f"/manage/patients/{patient.pk}/discharge/")
    patient.is_active = True
    patient.save()
    device.refresh_from_db()
    device.patient = patient
    device.save()


def test_a_readmitted_patients_device_starts_a_new_recording(
    client, staff_user, device_client, device, patient
):
    assert post_json(device_client, make_chunk(seq=0)).status_code == 201
    discharge_and_readmit(client, staff_user, patient, device)

    # the discharged stay's session is over: the device is asked for a new one
    late = post_json(device_client, make_chunk(seq=1))
    assert late.status_code == 409
    assert late.json()["code"] == "new_session"
    assert "closed by discharge" in late.json()["detail"]
    fresh = post_json(device_client, make_chunk(seq=0, session="readmitted"))
    assert fresh.status_code == 201
    assert Recording.objects.filter(status=Recording.Status.LIVE).get().session == "readmitted"
    assert Recording.objects.count() == 2


def test_discharge_resolves_open_alarms_so_a_readmission_is_alarmed_again(
    client, staff_user, patient
):
    from monitoring.alarms import Condition, apply_conditions
    from monitoring.models import AlarmKind

    def tachycardia():
        condition = Condition(AlarmKind.HR_HIGH, True, "HR 140 > 120", value=140.0, limit=120.0)
        return apply_conditions(patient, None, [condition], timezone.now())

    assert [change.change for change in tachycardia()] == ["raised"]
    client.force_login(staff_user)
    client.post(f"/manage/patients/{patient.pk}/discharge/")
    alarm = Alarm.objects.get()
    assert alarm.state == "resolved" and alarm.resolved_at is not None  # nobody would see it
    # (and so escalation does not email it: a warning, and a discharged patient's alarm)
    patient.is_active = True
    patient.save()
    assert [change.change for change in tachycardia()] == ["raised"]  # not blocked by the old one


def test_opening_or_closing_an_old_session_after_a_move_or_a_discharge(
    client, staff_user, device_client, device, patient, other_patient
):
    """/recordings/open/ answers an old session as its chunks would be answered, and the
    device's close does not overwrite a discharge's."""
    assert post_json(device_client, make_chunk(seq=0)).status_code == 201
    device.patient = other_patient  # moved to another patient mid-stream
    device.save()
    opened = device_client.post(
        "/api/device/v1/recordings/open/",
        data={"session": "a1b2c3d4", "fs_hz": 250, "gain_adc_per_mv": 200},
        format="json",
    )
    assert opened.status_code == 409 and opened.json()["code"] == "new_session"
    assert "belongs to another patient" in opened.json()["detail"]

    device.patient = patient
    device.save()
    discharge_and_readmit(client, staff_user, patient, device)
    closed = device_client.post(
        "/api/device/v1/recordings/close/", data={"session": "a1b2c3d4"}, format="json"
    )
    assert closed.status_code == 200
    assert Recording.objects.get().closed_by == Recording.ClosedBy.DISCHARGE


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_each_patients_device_seen_last_and_audits_the_others():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("monitoring", "0011_recording_closed_by_discharge")]
    after = [("monitoring", "0012_one_device_per_patient")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("monitoring")
    executor.migrate(before)
    try:
        old_apps = MigrationExecutor(connection).loader.project_state(before).apps
        patient = old_apps.get_model("monitoring", "Patient").objects.create(mrn="M1", name="P")
        old_device = old_apps.get_model("monitoring", "Device")
        now = timezone.now()
        old_device.objects.create(serial="SEEN-LONG-AGO", patient=patient, last_seen_at=now)
        old_device.objects.create(
            serial="SEEN-LAST", patient=patient, last_seen_at=now + timedelta(seconds=5)
        )
        old_device.objects.create(serial="NEVER-SEEN", patient=patient)
        old_device.objects.create(serial="SPARE")
        gone = old_apps.get_model("monitoring", "Patient").objects.create(
            mrn="M2", name="Discharged", is_active=False
        )
        old_device.objects.create(serial="LEFT-ON-DISCHARGE", patient=gone)

        MigrationExecutor(connection).migrate(after)
        new_apps = MigrationExecutor(connection).loader.project_state(after).apps
        devices = new_apps.get_model("monitoring", "Device").objects.order_by("serial")
        assert {d.serial: d.patient_id for d in devices} == {
            "LEFT-ON-DISCHARGE": None,
            "NEVER-SEEN": None,
            "SEEN-LAST": patient.pk,
            "SEEN-LONG-AGO": None,
            "SPARE": None,
        }
        audited = new_apps.get_model("monitoring", "AuditEntry").objects.order_by("old_value")
        assert [(e.old_value, e.new_value, e.user_id) for e in audited] == [
            ("LEFT-ON-DISCHARGE", "", None),
            ("NEVER-SEEN", "", None),
            ("SEEN-LONG-AGO", "", None),
        ]
    finally:
        MigrationExecutor(connection).migrate(latest)
