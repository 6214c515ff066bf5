"""DEVICE_OFFLINE for a device assigned to an admitted patient that has sent them nothing
since it was assigned (``Device.assigned_at``, ``DEVICE_NO_DATA_AFTER_ASSIGN_S``).

Until 2026-12-07 the rule watched only recordings: a device assigned and never switched on, a
swap whose new device stayed silent, or a device moved to a patient that never reconnected
showed "No signal" on the station tile and raised nothing, so the ward believed the patient
was monitored."""

from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.utils import timezone
from rest_framework.test import APIClient

from monitoring.alarms import check_devices, evaluate_alarms, periodic_check
from monitoring.models import (
    Alarm,
    AlarmKind,
    AlarmPriority,
    AlarmRecipient,
    AlarmState,
    AuditEntry,
    Device,
    Recording,
)
from tests.test_alarms import open_alarms
from tests.test_device_ingest import make_chunk, post_json

pytestmark = pytest.mark.django_db

LIMIT_S = 60  # DEVICE_NO_DATA_AFTER_ASSIGN_S's default


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def device_client(device: Device) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Device {device.issue_token()}")
    return api


def after_assignment(device: Device, seconds: float):
    device.refresh_from_db()
    return device.assigned_at + timedelta(seconds=seconds)


def assigned_long_ago(device: Device, seconds: float = 2 * LIMIT_S) -> None:
    """As if the device had been assigned ``seconds`` ago, so that checks at the real time
    (a chunk's analysis round) see it past the limit."""
    earlier = timezone.now() - timedelta(seconds=seconds)
    Device.objects.filter(pk=device.pk).update(assigned_at=earlier)
    device.refresh_from_db()


def offline_alarms(patient):
    return Alarm.objects.filter(patient=patient, kind=AlarmKind.DEVICE_OFFLINE)


# --- assigned_at ---------------------------------------------------------------------------


def test_it_dates_every_assignment_and_clears_on_unassignment(patient, other_patient):
    before = timezone.now()
    device = Device.objects.create(serial="DEV-009", patient=patient)
    first = device.assigned_at
    assert first is not None and first >= before
    device.label = "relabelled"
    device.save()  # the same patient: the assignment stands
    device.issue_token()  # saves the token fields only
    device.refresh_from_db()
    assert device.assigned_at == first
    device.patient = other_patient  # moved (the admin's form saves the whole row)
    device.save()
    device.refresh_from_db()
    assert device.assigned_at > first
    device.patient = None
    device.save(update_fields=["patient"])  # as admissions.unassign does
    device.refresh_from_db()
    assert device.assigned_at is None
    assert Device.objects.create(serial="DEV-010").assigned_at is None


def test_the_assign_page_dates_the_assignment(staff_client, patient):
    spare = Device.objects.create(serial="DEV-002")
    before = timezone.now()
    response = staff_client.post(f"/manage/patients/{patient.pk}/device/", {"device": spare.pk})
    assert response.status_code == 302
    spare.refresh_from_db()
    assert spare.patient == patient and spare.assigned_at >= before


# --- Raised, once -------------------------------------------------------------------------


def test_it_is_raised_once_past_the_limit_with_when_the_device_was_assigned(device):
    patient = device.patient
    assert check_devices(after_assignment(device, LIMIT_S - 1)) == []  # not before the limit
    assert not Alarm.objects.exists()

    now = after_assignment(device, LIMIT_S + 1)
    result = periodic_check(now)
    alarm = offline_alarms(patient).get()
    assert result["raised"] == [alarm.pk]
    assert alarm.priority == AlarmPriority.TECHNICAL
    assert alarm.recording is None  # no recording of the device to review
    assigned = timezone.localtime(device.assigned_at)
    assert alarm.message == (
        f"No data from DEV-001 since it was assigned at {assigned:%H:%M:%S %Z} (> 60 s)"
    )
    assert (alarm.value, alarm.limit) == (LIMIT_S + 1, LIMIT_S)
    assert alarm.details["device"] == "DEV-001"
    # the periodic check again and again: the same one alarm, no flapping
    for later_s in (LIMIT_S + 11, LIMIT_S + 21, 600, 3600):
        result = periodic_check(after_assignment(device, later_s))
        assert (result["raised"], result["resolved"]) == ([], []), later_s
    assert offline_alarms(patient).get() == alarm
    assert alarm.state != AlarmState.RESOLVED


def test_the_limit_is_a_setting(device, settings):
    settings.DEVICE_NO_DATA_AFTER_ASSIGN_S = 300
    assert check_devices(after_assignment(device, 200)) == []
    [change] = check_devices(after_assignment(device, 301))
    assert change.change == "raised" and "(> 300 s)" in change.alarm.message


# --- Resolved -----------------------------------------------------------------------------


def test_the_first_chunk_through_the_device_api_resolves_it(
    device, eager_celery, django_capture_on_commit_callbacks
):
    assigned_long_ago(device)
    [raised] = check_devices()
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(device_client(device), make_chunk(seq=0))
    assert response.status_code == 201, response.content
    # the chunk's analysis round resolved it: its recording is watched now
    raised.alarm.refresh_from_db()
    assert raised.alarm.state == AlarmState.RESOLVED
    assert check_devices() == []
    assert not open_alarms(device.patient).exists()


def test_unassigning_the_device_resolves_it(staff_client, device):
    assigned_long_ago(device)
    [raised] = check_devices()
    response = staff_client.post(f"/manage/devices/{device.pk}/unassign/")
    assert response.status_code == 302
    [resolved] = check_devices()
    assert (resolved.change, resolved.alarm.pk) == ("resolved", raised.alarm.pk)
    assert check_devices(timezone.now() + timedelta(hours=1)) == []


def test_discharging_the_patient_resolves_it(staff_client, device):
    patient = device.patient
    assigned_long_ago(device)
    check_devices()
    assert open_alarms(patient, AlarmKind.DEVICE_OFFLINE).exists()
    response = staff_client.post(f"/manage/patients/{patient.pk}/discharge/")
    assert response.status_code == 302
    assert not open_alarms(patient).exists()
    assert check_devices(timezone.now() + timedelta(hours=1)) == []


def test_a_device_unassigned_before_the_limit_raises_nothing(staff_client, device):
    staff_client.post(f"/manage/devices/{device.pk}/unassign/")
    assert check_devices(timezone.now() + timedelta(hours=1)) == []
    assert not Alarm.objects.exists()


# --- A device that has sent --------------------------------------------------------------


def test_a_device_that_has_streamed_since_its_assignment_never_raises_it(device):
    api = device_client(device)
    assert post_json(api, make_chunk(seq=0, session="ended0001")).status_code == 201
    # the device ends its session on purpose: not offline, however long it then stays quiet
    response = api.post("/api/device/v1/recordings/close/", {"session": "ended0001"}, format="json")
    assert response.status_code == 200, response.content
    recording = Recording.objects.get()
    assert recording.closed_by == Recording.ClosedBy.DEVICE
    for later_s in (LIMIT_S + 1, 3600, 86400):
        assert check_devices(timezone.now() + timedelta(seconds=later_s)) == []
    assert not Alarm.objects.exists()


def test_devices_assigned_before_the_upgrade_are_dated_at_or_before_their_assignment(
    patient, other_patient, staff_user
):
    """Migration 0022: the audited assignment, else the device's creation; not the upgrade's
    time, which would make a device that ended its session before it count as silent."""
    backfill = import_module("monitoring.migrations.0022_device_assigned_at")
    streamed = Device.objects.create(serial="DEV-001", patient=patient)
    never = Device.objects.create(serial="DEV-002", patient=other_patient)
    api = device_client(streamed)
    assert post_json(api, make_chunk(seq=0, session="old00001")).status_code == 201
    api.post("/api/device/v1/recordings/close/", {"session": "old00001"}, format="json")
    audited = AuditEntry.record(staff_user, other_patient, "device", None, "DEV-002")
    Device.objects.update(assigned_at=None)  # as they were before the field existed

    backfill.date_present_assignments(apps, None)
    streamed.refresh_from_db()
    never.refresh_from_db()
    assert streamed.assigned_at == streamed.created_at  # created assigned, unaudited
    assert never.assigned_at == audited.changed_at
    changes = check_devices(timezone.now() + timedelta(seconds=LIMIT_S + 1))
    # only the device that never sent its patient anything: that patient is not monitored
    assert [(c.change, c.alarm.patient) for c in changes] == [("raised", other_patient)]


# --- Swaps and moves ---------------------------------------------------------------------


def test_a_swapped_in_device_that_stays_silent_raises_it_and_the_old_recording_keeps_it(
    staff_client, device, eager_celery, django_capture_on_commit_callbacks
):
    patient = device.patient
    with django_capture_on_commit_callbacks(execute=True):
        assert post_json(device_client(device), make_chunk(seq=0)).status_code == 201
    old = Recording.objects.get()
    spare = Device.objects.create(serial="DEV-002")
    response = staff_client.post(f"/manage/patients/{patient.pk}/device/", {"device": spare.pk})
    assert response.status_code == 302
    spare.refresh_from_db()
    assert spare.patient == patient

    assert check_devices(after_assignment(spare, LIMIT_S - 1)) == []
    now = after_assignment(spare, LIMIT_S + 1)
    [raised] = check_devices(now)
    alarm = raised.alarm
    assert alarm.message.startswith("No data from DEV-002 since it was assigned at")
    assert alarm.recording is None  # not the old device's recording
    # the old device's recording (no longer watched) closes and its last rounds run: they
    # neither resolve the new device's alarm nor raise another
    Recording.objects.filter(pk=old.pk).update(
        status=Recording.Status.CLOSED, closed_by=Recording.ClosedBy.SILENCE
    )
    assert evaluate_alarms(old.pk, now=now + timedelta(seconds=5)) == []
    assert check_devices(now + timedelta(seconds=10)) == []
    alarm.refresh_from_db()
    assert alarm.state != AlarmState.RESOLVED and offline_alarms(patient).count() == 1

    # the new device's first chunk resolves it
    Device.objects.filter(pk=spare.pk).update(assigned_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        assert post_json(device_client(spare), make_chunk(seq=0, session="new00001")).status_code
    alarm.refresh_from_db()
    assert alarm.state == AlarmState.RESOLVED


def test_a_device_moved_to_another_patient_that_never_reconnects_raises_it_for_them(
    staff_client, device, other_patient
):
    patient = device.patient
    api = device_client(device)
    assert post_json(api, make_chunk(seq=0, session="before01")).status_code == 201
    response = staff_client.post(
        f"/manage/patients/{other_patient.pk}/device/",
        {"device": device.pk, "take_from_patient": "on"},
    )
    assert response.status_code == 302
    # the device checks its token (which dates last_seen_at) and goes on with its old
    # session, refused: no data for the new patient, whatever last_seen_at says
    assert api.get("/api/device/v1/self/").status_code == 200
    assert post_json(api, make_chunk(seq=1, session="before01")).status_code == 409
    device.refresh_from_db()
    assert device.last_seen_at > device.assigned_at
    now = after_assignment(device, LIMIT_S + 1)
    [raised] = check_devices(now)
    assert raised.alarm.patient == other_patient
    assert raised.alarm.message.startswith("No data from DEV-001 since it was assigned at")
    assert not open_alarms(patient).exists()  # the first patient has no device to watch


def test_a_device_taken_away_and_given_back_starts_a_new_session_and_is_watched(
    staff_client, device
):
    """A -> B -> A (a review of 2026-12-07): A's old session went on writing its old
    recording, older than B's, so the rules watched B's recording (the patient's newest) and
    A went unwatched: no offline alarm however long it then stayed silent."""
    patient = device.patient
    api = device_client(device)
    assert post_json(api, make_chunk(seq=0, session="first001")).status_code == 201
    spare = Device.objects.create(serial="DEV-002")
    take = {"take_from_patient": "on"}
    path = f"/manage/patients/{patient.pk}/device/"
    assert staff_client.post(path, {"device": spare.pk, **take}).status_code == 302
    assert post_json(device_client(spare), make_chunk(seq=0, session="spare001")).status_code
    assert staff_client.post(path, {"device": device.pk, **take}).status_code == 302

    response = post_json(api, make_chunk(seq=1, session="first001"))
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "new_session" and response.json()["backlog"] == "drop"
    assert post_json(api, make_chunk(seq=0, session="second01")).status_code == 201
    newest = Recording.objects.filter(patient=patient).order_by("-pk").first()
    assert newest.device == device  # the one the rules watch
    [raised] = check_devices(timezone.now() + timedelta(minutes=10))
    assert raised.change == "raised" and raised.alarm.kind == AlarmKind.DEVICE_OFFLINE
    assert raised.alarm.message.startswith("No data from DEV-001 since")


def test_a_swapped_in_devices_silence_is_sent_not_taken_for_the_old_devices_repeat(
    staff_client, device, settings
):
    """A repeat within TECHNICAL_RENOTIFY_S is one device's flapping; after a swap the new
    device's silence is another fault and is sent (a review of 2026-12-07)."""
    patient = device.patient
    AlarmRecipient.objects.create(patient=patient, address="ward@example.org")
    api = device_client(device)
    assert post_json(api, make_chunk(seq=0, session="old00001")).status_code == 201
    recording = Recording.objects.get()
    [old] = check_devices(recording.last_chunk_at + timedelta(seconds=45))
    assert old.alarm.details["device"] == "DEV-001"
    spare = Device.objects.create(serial="DEV-002")
    response = staff_client.post(
        f"/manage/patients/{patient.pk}/device/", {"device": spare.pk, "take_from_patient": "on"}
    )
    assert response.status_code == 302
    # the periodic check (every ALARM_CHECK_S) resolves the old device's alarm at the swap
    [resolved] = check_devices(after_assignment(spare, 10))
    assert resolved.change == "resolved" and resolved.alarm.pk == old.alarm.pk
    changes = check_devices(after_assignment(spare, LIMIT_S + 1))
    [new] = [c.alarm for c in changes if c.change == "raised"]
    assert new.details["device"] == "DEV-002"
    assert "repeat_of" not in new.details
    assert new.notifications.exists()  # sent, not held as a repeat
