"""/health and the log while alarm notifications cannot be delivered: a mail server that is
down, email that goes to the console, and what the failure log line says."""

import logging
import smtplib
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import health, notifications
from monitoring.models import (
    AlarmRecipient,
    Heartbeat,
    Notification,
    NotificationState,
    Transport,
)
from monitoring.notifications import schedule_notifications, send_notification
from tests.conftest import free_port
from tests.test_alarms import hr_alarm
from tests.test_notifications import smtp_settings

pytestmark = pytest.mark.django_db

ALARM_CHECK = "monitoring.tasks.check_devices_task"


@pytest.fixture
def alarm_check_ran():
    """The periodic alarm check completed a moment ago: only the notifications can degrade."""
    return Heartbeat.objects.create(name=ALARM_CHECK, completed_at=timezone.now())


@pytest.fixture
def smtp_down(settings):
    """SMTP settings pointing at a port nothing listens on, with credentials."""
    port = free_port()
    smtp_settings(settings, port)
    settings.EMAIL_HOST_USER = "cardiospike"
    settings.EMAIL_HOST_PASSWORD = "smtp-s3cret"
    return port


def failing_notification(recording, waiting_s: float) -> Notification:
    """A notification created ``waiting_s`` ago whose send has just failed against the closed
    port: pending, its next try moved into the future, as the retries leave it."""
    AlarmRecipient.objects.get_or_create(patient=recording.patient, address="nurse@example.org")
    [notification_id] = schedule_notifications(hr_alarm(recording))  # on_commit never runs
    created = timezone.now() - timedelta(seconds=waiting_s)
    Notification.objects.filter(pk=notification_id).update(
        created_at=created, next_attempt_at=created
    )
    assert send_notification(notification_id) == "retry"
    notification = Notification.objects.get(pk=notification_id)
    assert notification.next_attempt_at > timezone.now()  # nothing is "overdue"
    return notification


def staff_health(client, staff_user) -> dict:
    client.force_login(staff_user)
    response = client.get("/health")
    assert response.status_code == 200, response.json()
    return response.json()


def test_a_mail_server_that_stays_down_degrades_health_long_before_the_give_up(
    client, staff_user, recording, smtp_down, alarm_check_ran
):
    # Failing for 5 minutes: the notification is pending, its next try a minute away, so the
    # old check (overdue past next_attempt_at) said ok until the 6-hour give-up.
    notification = failing_notification(recording, waiting_s=300)
    public = client.get("/health").json()
    assert public["status"] == "degraded" and public["degraded"] == ["notifications"]
    assert public["checks"]["notifications"] == {"ok": False}  # no address, no error

    check = staff_health(client, staff_user)["checks"]["notifications"]
    assert check["ok"] is False
    assert check["oldest_overdue_s"] == 0.0
    assert check["oldest_undelivered_s"] >= 300
    assert check["undelivered_after_s"] == health.NOTIFICATION_UNDELIVERED_S
    oldest = check["oldest_undelivered"]
    assert oldest["id"] == notification.pk and oldest["attempts"] == 1
    server = f"SMTP 127.0.0.1:{smtp_down}"
    assert oldest["to"] == f"email to nurse@example.org via {server}"
    assert "ConnectionRefusedError" in oldest["last_error"]
    assert check["email"] == server
    # the message says which notification, where it goes, for how long and why
    assert (
        f"notification {notification.pk} (email to nurse@example.org via {server})"
        in (check["error"])
    )
    assert "undelivered for 30" in check["error"] and "ConnectionRefusedError" in check["error"]
    assert "smtp-s3cret" not in str(check)

    Notification.objects.filter(pk=notification.pk).update(state=NotificationState.SENT)
    assert staff_health(client, staff_user)["status"] == "ok"


def test_a_failure_shorter_than_the_threshold_is_shown_to_staff_but_does_not_degrade(
    client, staff_user, recording, smtp_down, alarm_check_ran
):
    failing_notification(recording, waiting_s=health.NOTIFICATION_UNDELIVERED_S - 60)
    body = staff_health(client, staff_user)
    assert body["status"] == "ok"
    oldest = body["checks"]["notifications"]["oldest_undelivered"]
    assert oldest["attempts"] == 1 and "ConnectionRefusedError" in oldest["last_error"]


def test_a_notification_failed_for_good_shows_its_last_error_to_staff(
    client, staff_user, recording, alarm_check_ran
):
    alarm = hr_alarm(recording)
    failed = Notification.objects.create(
        alarm=alarm,
        recipient="nurse@example.org",
        transport=Transport.EMAIL,
        state=NotificationState.FAILED,
        attempts=40,
        last_error="SMTPRecipientsRefused: {'nurse@example.org': (550, b'no such user')}",
        next_attempt_at=timezone.now() - timedelta(minutes=5),
    )
    check = staff_health(client, staff_user)["checks"]["notifications"]
    assert check["failed_24h"] == 1
    assert check["last_failed"]["id"] == failed.pk
    assert "550" in check["last_failed"]["last_error"]


def test_health_opens_no_smtp_connection(
    client, staff_user, recording, smtp_down, alarm_check_ran, monkeypatch
):
    failing_notification(recording, waiting_s=300)
    opened = []
    monkeypatch.setattr(smtplib.SMTP, "connect", lambda *args, **kwargs: opened.append(args))
    for _ in range(3):
        staff_health(client, staff_user)
        client.logout()
        client.get("/health")
    assert opened == []


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.dummy.EmailBackend",
    ],
)
def test_email_to_the_console_degrades_while_patients_have_email_recipients(
    client, staff_user, recording, settings, alarm_check_ran, backend
):
    settings.EMAIL_BACKEND = backend  # chosen explicitly: production starts with it
    settings.DEBUG = False
    assert staff_health(client, staff_user)["status"] == "ok"  # nobody to email

    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    check = staff_health(client, staff_user)["checks"]["notifications"]
    assert check["ok"] is False and check["email"] == backend
    assert "delivers nowhere anyone reads" in check["error"]

    settings.DEBUG = True  # development: the console is where email is meant to go
    assert staff_health(client, staff_user)["status"] == "ok"


# --- the failure log line ------------------------------------------------------------------


def test_a_failed_send_is_logged_with_the_smtp_server_and_the_recipient(
    recording, smtp_down, settings, caplog
):
    settings.ALARM_RETRY_BASE_S = 30
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    [notification_id] = schedule_notifications(hr_alarm(recording))
    with caplog.at_level(logging.WARNING, logger="monitoring.notifications"):
        assert send_notification(notification_id) == "retry"
    [line] = [r.getMessage() for r in caplog.records if r.name == "monitoring.notifications"]
    assert line.startswith(
        f"notification {notification_id} (email to nurse@example.org via "
        f"SMTP 127.0.0.1:{smtp_down}, alarm "
    )
    assert "failed on attempt 1, next try in 30 s: ConnectionRefusedError" in line
    assert "smtp-s3cret" not in line and "cardiospike" not in line  # no credentials


class RefusingWebhook:
    attaches_strip = False

    def send(self, notification, strip_png):
        raise ConnectionRefusedError(111, "Connection refused")


def test_a_failed_webhook_is_logged_without_the_secret_in_its_url(recording, monkeypatch, caplog):
    monkeypatch.setitem(notifications.TRANSPORTS, "webhook", RefusingWebhook)
    url = "https://bot:pw-s3cret@hooks.example.org:8443/services/T0/B0/tok-s3cret?key=k-s3cret"
    AlarmRecipient.objects.create(
        patient=recording.patient, address=url, transport=Transport.WEBHOOK
    )
    [notification_id] = schedule_notifications(hr_alarm(recording))
    with caplog.at_level(logging.WARNING, logger="monitoring.notifications"):
        assert send_notification(notification_id) == "retry"
    [line] = [r.getMessage() for r in caplog.records if r.name == "monitoring.notifications"]
    assert "(webhook to https://hooks.example.org:8443, alarm " in line
    assert "s3cret" not in line
