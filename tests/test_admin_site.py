"""The admin: every page renders for staff, nobody else gets in, device tokens show once."""

import hashlib
from datetime import timedelta

import numpy as np
import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from monitoring.forms import patient_version
from monitoring.models import (
    Alarm,
    AlarmRecipient,
    ApiToken,
    AuditEntry,
    Beat,
    Device,
    Episode,
    GivenUpGap,
    Heartbeat,
    Notification,
    NotificationAttempt,
    NotificationState,
    Patient,
    Prediction,
    Recording,
    SampleChunk,
)

pytestmark = pytest.mark.django_db

# rows written only by the system
READ_ONLY = {
    SampleChunk,
    Prediction,
    Beat,
    Episode,
    Alarm,
    Notification,
    NotificationAttempt,
    AuditEntry,
    Heartbeat,
    GivenUpGap,
    Recording,  # its patient, rate or gain changed here would misread every sample
}


@pytest.fixture
def rows(patient, other_patient, device, recording, django_user_model):
    SampleChunk.from_samples(recording, seq=0, first_sample=0, samples=np.arange(10)).save()
    Prediction.objects.create(
        recording=recording,
        model_name="window-cnn-mitdb",
        model_version="1",
        window_start=0,
        window_length=500,
        label="normal",
        probabilities={"normal": 0.9, "arrhythmia": 0.1},
    )
    Beat.objects.create(
        recording=recording,
        index=0,
        sample=5,
        label="V",
        confidence=0.9,
        probabilities={"N": 0.05, "S": 0.0, "V": 0.9, "F": 0.05, "Q": 0.0},
    )
    Episode.objects.create(recording=recording, kind="VT", start_s=1.0, end_s=3.5)
    alarm = Alarm.objects.create(
        patient=patient, recording=recording, kind="VT", priority="critical", message="VT"
    )
    AlarmRecipient.objects.create(patient=patient, address="nurse@example.org")
    notification = Notification.objects.create(
        alarm=alarm, recipient="nurse@example.org", transport="email"
    )
    NotificationAttempt.objects.create(notification=notification, ok=False, error="refused")
    AuditEntry.objects.create(
        patient=patient, field="hr_high_limit_bpm", old_value="120", new_value="110"
    )
    ApiToken.issue(django_user_model.objects.create_user("token-holder"), "a script")
    Heartbeat.objects.create(
        name="monitoring.tasks.check_devices_task", completed_at=timezone.now()
    )
    GivenUpGap.objects.create(recording=recording, start_sample=10, end_sample=260)


def admin_url(model, page: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{page}", args=args)


def test_it_registers_every_monitoring_model():
    from django.apps import apps

    monitoring_models = set(apps.get_app_config("monitoring").get_models())
    assert monitoring_models <= set(admin.site._registry)
    assert len(monitoring_models) >= 5


def test_it_renders_every_changelist_for_staff(client, staff_user, rows):
    client.force_login(staff_user)
    for model in admin.site._registry:
        response = client.get(admin_url(model, "changelist"))
        assert response.status_code == 200, model
    listing = client.get(admin_url(SampleChunk, "changelist")).content.decode()
    assert "MRN-001" in listing  # the chunk row and its recording column rendered


def test_it_renders_add_pages_and_keeps_system_rows_read_only(client, staff_user):
    client.force_login(staff_user)
    for model in admin.site._registry:
        response = client.get(admin_url(model, "add"))
        if model in READ_ONLY:
            assert response.status_code == 403, model
        else:
            assert response.status_code == 200, model
    assert all(not admin.site._registry[model].has_add_permission(None) for model in READ_ONLY)


def test_it_renders_every_change_page_for_staff(client, staff_user, rows):
    client.force_login(staff_user)
    from django.apps import apps

    for model in apps.get_app_config("monitoring").get_models():
        row = model.objects.first()
        response = client.get(admin_url(model, "change", row.pk))
        assert response.status_code == 200, model


@pytest.mark.parametrize("page", ["changelist", "add"])
def test_it_refuses_the_admin_to_non_staff_and_anonymous(client, clinician, page):
    url = admin_url(Device, page)
    response = client.get(url)
    assert response.status_code == 302 and "login/?next=/admin/" in response["Location"]
    client.force_login(clinician)
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def device_form(**overrides) -> dict:
    form = {
        "serial": "NEW-1",
        "label": "bed 9",
        "firmware_version": "1.0",
        "sampling_rate_hz": "250",
        "gain_adc_per_mv": "200",
        "lead_names": "II",
        "is_active": "on",
    }
    form.update(overrides)
    return form


def test_it_shows_a_new_device_token_once_and_stores_only_its_hash(client, staff_user):
    client.force_login(staff_user)
    response = client.post(admin_url(Device, "add"), device_form())
    assert response.status_code == 200  # a page of its own, not a redirect
    page = response.content.decode()
    token = page.split('id="device-token"')[1].split(">")[1].split("<")[0]
    assert token.startswith("csd_")
    assert "no-store" in response["Cache-Control"]
    device = Device.objects.get(serial="NEW-1")
    assert device.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in [str(value) for value in device.__dict__.values()]
    assert Device.objects.authenticate(token) == device
    assert token not in str(dict(client.session))
    assert all(token not in cookie.value for cookie in response.cookies.values())
    change_page = client.get(admin_url(Device, "change", device.pk)).content.decode()
    assert token not in change_page and device.token_hint in change_page


def test_it_rotates_a_device_token(client, staff_user, device, device_token):
    client.force_login(staff_user)
    url = reverse("admin:monitoring_device_rotate_token", args=[device.pk])
    confirmation = client.get(url)
    assert confirmation.status_code == 200 and "csd_" not in confirmation.content.decode()
    assert Device.objects.authenticate(device_token) == device  # nothing changed on GET
    response = client.post(url)
    new_token = response.content.decode().split('id="device-token"')[1].split(">")[1].split("<")[0]
    assert new_token.startswith("csd_") and new_token != device_token
    assert Device.objects.authenticate(device_token) is None
    assert Device.objects.authenticate(new_token) == device
    assert LogEntry.objects.filter(object_id=str(device.pk), change_message__contains="Rotated")


def test_it_refuses_token_rotation_to_non_staff(client, clinician, device, device_token):
    client.force_login(clinician)
    response = client.post(reverse("admin:monitoring_device_rotate_token", args=[device.pk]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert Device.objects.authenticate(device_token) == device


def test_it_searches_and_filters_patients(client, staff_user, patient, other_patient):
    client.force_login(staff_user)
    url = reverse("admin:monitoring_patient_changelist")
    found = client.get(url, {"q": "MRN-002"}).content.decode()
    assert "Someone Else" in found and "Assigned Patient" not in found
    by_ward = client.get(url, {"ward": "A"}).content.decode()
    assert "Assigned Patient" in by_ward and "Someone Else" not in by_ward


def patient_form(patient, **changes) -> dict:
    """The admin's change form of ``patient`` as it stands, with ``changes``; an ``is_active``
    of None leaves the Admitted box unticked (a discharge)."""
    form = {
        "mrn": patient.mrn,
        "name": patient.name,
        "birth_date": "",
        "sex": patient.sex,
        "notes": "",
        "is_active": "on",
        "ward": patient.ward,
        "bed": patient.bed,
        "hr_low_limit_bpm": patient.hr_low_limit_bpm,
        "hr_high_limit_bpm": patient.hr_high_limit_bpm,
        "pause_limit_s": patient.pause_limit_s,
        "pvc_limit_per_min": patient.pvc_limit_per_min,
        # the care team as it stands (left out, the admin would empty it)
        "clinicians": list(patient.clinicians.values_list("pk", flat=True)),
        # the hidden field of a page opened now
        "opened_version": patient_version(Patient.objects.get(pk=patient.pk)),
        **changes,
    }
    return {key: value for key, value in form.items() if value is not None}


def test_limit_and_device_changes_in_the_admin_are_audited(
    client, staff_user, clinician, patient, other_patient, device
):
    # the admin is a second way to change what /manage/ audits: it must leave the same trail
    client.force_login(staff_user)
    form = patient_form(patient, clinicians=[clinician.pk], hr_high_limit_bpm=110)
    response = client.post(admin_url(type(patient), "change", patient.pk), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    entries = list(AuditEntry.objects.filter(patient=patient))
    assert [(e.field, e.old_value, e.new_value, e.user) for e in entries] == [
        ("hr_high_limit_bpm", "120", "110", staff_user)
    ]

    response = client.post(
        admin_url(Device, "change", device.pk),
        device_form(serial=device.serial, patient=other_patient.pk),
    )
    assert response.status_code == 302
    moved_from = AuditEntry.objects.get(patient=patient, field="device")
    moved_to = AuditEntry.objects.get(patient=other_patient, field="device")
    assert (moved_from.old_value, moved_from.new_value) == (device.serial, "")
    assert (moved_to.old_value, moved_to.new_value) == ("", device.serial)


def test_recipient_changes_in_the_admin_are_audited(client, staff_user, patient, other_patient):
    client.force_login(staff_user)
    form = {"patient": patient.pk, "address": "ward@x.example", "transport": "email"}
    assert client.post(admin_url(AlarmRecipient, "add"), form).status_code == 302
    recipient = AlarmRecipient.objects.get()
    form.update(patient=other_patient.pk, escalation="on")  # moved, and escalation only
    response = client.post(admin_url(AlarmRecipient, "change", recipient.pk), form)
    assert response.status_code == 302
    response = client.post(admin_url(AlarmRecipient, "delete", recipient.pk), {"post": "yes"})
    assert response.status_code == 302
    trail = AuditEntry.objects.filter(field="alarm_recipient").order_by("id")
    assert [(e.patient_id, e.old_value, e.new_value, e.user) for e in trail] == [
        (patient.pk, "", "ward@x.example (email, first call)", staff_user),
        (patient.pk, "ward@x.example (email, first call)", "", staff_user),
        (other_patient.pk, "", "ward@x.example (email, escalation)", staff_user),
        (other_patient.pk, "ward@x.example (email, escalation)", "", staff_user),
    ]
    # the model's check of the address applies here too
    bad = {"patient": patient.pk, "address": "nobody", "transport": "email"}
    response = client.post(admin_url(AlarmRecipient, "add"), bad)
    assert response.status_code == 200 and "Enter an email address" in response.content.decode()


def test_admin_recipient_saves_audit_only_what_changed_and_lock_only_an_existing_row(
    client, staff_user, patient
):
    client.force_login(staff_user)
    form = {"patient": patient.pk, "address": "https://pager.example/a", "transport": "webhook"}
    with CaptureQueriesContext(connection) as queries:
        assert client.post(admin_url(AlarmRecipient, "add"), form).status_code == 302
    # an add has no row to lock or read back (it used to look one up by a null id)
    table = AlarmRecipient._meta.db_table
    assert not [q["sql"] for q in queries if table in q["sql"] and "IS NULL" in q["sql"]]
    recipient = AlarmRecipient.objects.get()
    url = admin_url(AlarmRecipient, "change", recipient.pk)
    assert client.post(url, form).status_code == 302  # saved unchanged: nothing to audit
    assert client.post(url, {**form, "escalation": "on"}).status_code == 302
    trail = AuditEntry.objects.filter(field="alarm_recipient").order_by("id")
    assert [(e.old_value, e.new_value) for e in trail] == [
        ("", "https://pager.example/a (webhook, first call)"),
        (
            "https://pager.example/a (webhook, first call)",
            "https://pager.example/a (webhook, escalation)",
        ),
    ]


def test_failed_notifications_can_be_sent_again_and_it_is_logged(
    client, staff_user, recording, mailoutbox
):
    from monitoring.notifications import send_notification

    alarm = Alarm.objects.create(
        patient=recording.patient, recording=recording, kind="VT", priority="critical"
    )
    long_ago = timezone.now() - timedelta(hours=2)

    def made(recipient, state):
        return Notification.objects.create(
            alarm=alarm,
            recipient=recipient,
            transport="email",
            state=state,
            attempts=6,
            last_error="SMTPServerDisconnected: refused",
            next_attempt_at=long_ago,
            created_at=long_ago,
        )

    failed = made("nurse@example.org", NotificationState.FAILED)
    sent = made("chief@example.org", NotificationState.SENT)
    client.force_login(staff_user)
    before = timezone.now()
    response = client.post(
        admin_url(Notification, "changelist"),
        {"action": "send_again", "_selected_action": [failed.pk, sent.pk]},
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "1 notification(s) pending again" in page and "1 left as they were" in page
    failed.refresh_from_db()
    sent.refresh_from_db()
    assert failed.state == NotificationState.PENDING and failed.next_attempt_at >= before
    assert failed.attempts == 6  # the count of tries stays true; the attempt log keeps them
    assert sent.state == NotificationState.SENT and sent.next_attempt_at == long_ago
    [entry] = LogEntry.objects.filter(object_id=str(failed.pk))
    assert entry.user == staff_user and entry.is_change()
    assert "Sent again (was failed: SMTPServerDisconnected: refused)" in entry.change_message
    # the periodic check's send picks it up: it is due now
    assert send_notification(failed.pk) == "sent"
    assert [message.to for message in mailoutbox] == [["nurse@example.org"]]


def test_sending_again_needs_the_change_permission_on_notifications(
    client, django_user_model, recording
):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw-view-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_notification"))
    alarm = Alarm.objects.create(
        patient=recording.patient, recording=recording, kind="VT", priority="critical"
    )
    failed = Notification.objects.create(
        alarm=alarm, recipient="nurse@example.org", transport="email", state="failed"
    )
    client.force_login(viewer)
    url = admin_url(Notification, "changelist")
    listing = client.get(url)
    assert listing.status_code == 200 and "send_again" not in listing.content.decode()
    client.post(url, {"action": "send_again", "_selected_action": [failed.pk]})
    failed.refresh_from_db()
    assert failed.state == NotificationState.FAILED
    assert not LogEntry.objects.filter(object_id=str(failed.pk)).exists()
