"""Alarm notifications: real SMTP to a local aiosmtpd server, PNG strips, retries with
backoff, the atomic claim, escalation and the webhook transport."""

import asyncio
import email
import email.policy
import http.server
import io
import json
import threading
from datetime import timedelta

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from django.db import connection
from django.utils import timezone
from PIL import Image

from monitoring import live
from monitoring.alarms import on_analysis_round
from monitoring.models import (
    Alarm,
    AlarmKind,
    AlarmPriority,
    AlarmRecipient,
    AlarmState,
    Notification,
    NotificationAttempt,
    NotificationState,
    Transport,
)
from monitoring.notifications import (
    escalate_unacknowledged,
    schedule_notifications,
    send_due,
    send_notification,
)
from monitoring.recordings import samples_mv
from tests.conftest import free_port
from tests.test_alarms import FS_HZ, add_beats, hr_alarm, store_signal

pytestmark = pytest.mark.django_db


class Inbox:
    """An aiosmtpd handler that keeps every message; ``delay_s`` slows each one down."""

    def __init__(self, delay_s: float = 0.0):
        self.messages = []
        self.delay_s = delay_s

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.messages.append(
            (
                envelope.rcpt_tos,
                email.message_from_bytes(envelope.content, policy=email.policy.default),
            )
        )
        return "250 Message accepted for delivery"


def smtp_settings(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5


@pytest.fixture
def smtp(settings):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    smtp_settings(settings, controller.port)
    yield inbox
    controller.stop()


def ecg_with_gap(recording, seconds: float = 60.0, gap=(20.0, 23.0)) -> None:
    """A spiky synthetic trace at 75 bpm stored in two chunks around a missing stretch."""
    t = np.arange(round(seconds * FS_HZ)) / FS_HZ
    signal = 0.05 * np.sin(2 * np.pi * 0.3 * t)
    for beat_s in np.arange(0.4, seconds, 0.8):
        signal += 1.2 * np.exp(-(((t - beat_s) / 0.012) ** 2))
    cut0, cut1 = round(gap[0] * FS_HZ), round(gap[1] * FS_HZ)
    store_signal(recording, signal[:cut0], first_sample=0, seq=0)
    store_signal(recording, signal[cut1:], first_sample=cut1, seq=1)


def nurse_and_chief(patient) -> None:
    """A first-call recipient (the nurse) and an escalation one (the chief), by email."""
    AlarmRecipient.objects.create(patient=patient, address="nurse@example.org")
    AlarmRecipient.objects.create(patient=patient, address="chief@example.org", escalation=True)


def png_parts(message) -> list[bytes]:
    return [
        part.get_payload(decode=True)
        for part in message.walk()
        if part.get_content_type() == "image/png"
    ]


# --- Strips ------------------------------------------------------------------------------


def test_a_sample_range_shows_a_gap_as_missing(recording):
    ecg_with_gap(recording)
    piece = samples_mv(recording, round(19 * FS_HZ), round(24 * FS_HZ))
    gap = slice(round(1 * FS_HZ), round(4 * FS_HZ))
    assert np.isnan(piece[gap]).all()
    assert np.isfinite(piece[: gap.start]).all() and np.isfinite(piece[gap.stop :]).all()
    assert np.nanmax(piece) > 1.0  # the spikes, in mV


# --- Email over real SMTP ----------------------------------------------------------------


def test_alarm_email_arrives_over_smtp_with_a_decodable_png_strip(
    smtp, recording, eager_celery, django_capture_on_commit_callbacks, monkeypatch, settings
):
    settings.SITE_URL = "https://monitor.example.org"
    ecg_with_gap(recording)
    alarm = hr_alarm(recording)
    nurse_and_chief(recording.patient)
    published = []  # what the live pages were told
    monkeypatch.setattr(live, "publish_alarm", lambda alarm: published.append(alarm.state))
    with django_capture_on_commit_callbacks(execute=True):
        created = schedule_notifications(alarm)
    assert len(created) == 1  # the escalation list waits
    assert len(smtp.messages) == 1
    recipients, message = smtp.messages[0]
    assert recipients == ["nurse@example.org"]
    assert "HR 134 > 120" in message["Subject"] and "Assigned Patient" in message["Subject"]
    body = message.get_body(("plain",)).get_content()
    site = "https://monitor.example.org"  # SITE_URL, set below
    assert f"{site}/patients/{recording.patient_id}/live/" in body
    assert f"{site}/recordings/{recording.pk}/review/" in body
    [png] = png_parts(message)
    image = Image.open(io.BytesIO(png))
    image.verify()
    assert image.format == "PNG" and image.size[0] >= 600
    notification = Notification.objects.get()
    assert notification.state == NotificationState.SENT and notification.attempts == 1
    assert list(notification.attempt_log.values_list("ok", flat=True)) == [True]
    alarm.refresh_from_db()
    assert alarm.state == AlarmState.NOTIFIED and alarm.notified_at is not None
    assert published == [AlarmState.NOTIFIED]
    # scheduling the same alarm again notifies nobody twice
    with django_capture_on_commit_callbacks(execute=True):
        assert schedule_notifications(alarm) == []
    assert len(smtp.messages) == 1


def test_an_alarm_raised_by_an_analysis_round_is_emailed(
    smtp, recording, eager_celery, django_capture_on_commit_callbacks
):
    ecg_with_gap(recording, seconds=90.0)
    AlarmRecipient.objects.create(patient=recording.patient, address="ward@example.org")
    add_beats(recording, bpm=134, seconds=30)
    with django_capture_on_commit_callbacks(execute=True):
        changes = on_analysis_round(recording.pk)
    assert [(c.change, c.alarm.kind) for c in changes] == [("raised", AlarmKind.HR_HIGH)]
    [(recipients, message)] = smtp.messages
    assert recipients == ["ward@example.org"]
    assert len(png_parts(message)) == 1


def test_a_closed_smtp_port_records_the_attempt_and_retries_with_backoff(
    settings, recording, eager_celery, caplog
):
    smtp_settings(settings, free_port())  # nothing listens there
    settings.ALARM_RETRY_BASE_S = 30
    settings.NOTIFY_GIVE_UP_S = 120
    alarm = hr_alarm(recording)
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    [notification_id] = schedule_notifications(alarm)  # on_commit never runs in this test
    created_at = Notification.objects.get(pk=notification_id).created_at
    now = timezone.now()
    assert send_notification(notification_id, now=now) == "retry"
    notification = Notification.objects.get(pk=notification_id)
    assert notification.state == NotificationState.PENDING and notification.attempts == 1
    assert "ConnectionRefused" in notification.last_error
    assert notification.next_attempt_at == now + timedelta(seconds=30)
    [attempt] = NotificationAttempt.objects.filter(notification_id=notification_id)
    assert not attempt.ok and "ConnectionRefused" in attempt.error
    # not due yet: nobody tries
    assert send_notification(notification_id, now=now + timedelta(seconds=10)) == "skipped"
    assert send_due(now + timedelta(seconds=10)) == []
    later = now + timedelta(seconds=31)
    assert send_notification(notification_id, now=later) == "retry"
    notification.refresh_from_db()
    assert notification.next_attempt_at == later + timedelta(seconds=60)  # doubled
    assert send_notification(notification_id, now=later + timedelta(seconds=61)) == "retry"
    notification.refresh_from_db()
    # the last try falls at the give-up time, not a whole backoff past it
    give_up_at = created_at + timedelta(seconds=120)
    assert notification.next_attempt_at == give_up_at
    assert send_notification(notification_id, now=give_up_at) == "failed"
    notification.refresh_from_db()
    assert notification.state == NotificationState.FAILED and notification.attempts == 4
    assert NotificationAttempt.objects.filter(notification_id=notification_id).count() == 4
    [gave_up] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "gave up notification" in gave_up.getMessage()
    alarm.refresh_from_db()
    assert alarm.state == AlarmState.RAISED and alarm.notified_at is None


def test_the_periodic_sweep_sends_a_due_retry(smtp, recording, eager_celery):
    alarm = hr_alarm(recording)
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    [notification_id] = schedule_notifications(alarm)
    Notification.objects.filter(pk=notification_id).update(
        attempts=1, next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert send_due() == [notification_id]
    assert len(smtp.messages) == 1
    assert Notification.objects.get(pk=notification_id).state == NotificationState.SENT


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sends_of_one_notification_send_one_email(settings, recording):
    inbox = Inbox(delay_s=0.5)  # the first send is still going when the second one starts
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        smtp_settings(settings, controller.port)
        alarm = hr_alarm(recording)
        notification_id = Notification.objects.create(
            alarm=alarm, recipient="nurse@example.org", transport=Transport.EMAIL
        ).pk
        barrier = threading.Barrier(2)
        results = []

        def worker():
            try:
                barrier.wait(timeout=10)
                results.append(send_notification(notification_id))
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(results) == ["sent", "skipped"]
        assert len(inbox.messages) == 1
        assert NotificationAttempt.objects.filter(notification_id=notification_id).count() == 1
    finally:
        controller.stop()


# --- Escalation --------------------------------------------------------------------------


def test_an_unacknowledged_alarm_is_escalated_once_after_the_delay(
    settings, recording, mailoutbox, eager_celery, django_capture_on_commit_callbacks
):
    settings.ALARM_ESCALATION_S = 120
    ecg_with_gap(recording)
    alarm = hr_alarm(recording)
    nurse_and_chief(recording.patient)
    with django_capture_on_commit_callbacks(execute=True):
        schedule_notifications(alarm)
    assert [m.to for m in mailoutbox] == [["nurse@example.org"]]
    raised_at = alarm.raised_at
    with django_capture_on_commit_callbacks(execute=True):
        assert escalate_unacknowledged(raised_at + timedelta(seconds=100)) == []
        assert escalate_unacknowledged(raised_at + timedelta(seconds=121)) == [alarm.pk]
        assert escalate_unacknowledged(raised_at + timedelta(seconds=300)) == []
    assert [m.to for m in mailoutbox] == [["nurse@example.org"], ["chief@example.org"]]
    assert "ESCALATION" in mailoutbox[1].subject
    assert "within 120 s" in mailoutbox[1].body
    assert [a[2] for a in mailoutbox[1].attachments] == ["image/png"]
    escalated = Notification.objects.get(escalation=True)
    assert escalated.recipient == "chief@example.org" and escalated.state == "sent"


def test_an_acknowledged_alarm_or_a_resolved_warning_is_not_escalated(recording, clinician):
    from monitoring.alarms import acknowledge

    acknowledged = hr_alarm(recording)
    acknowledge(acknowledged, clinician)
    Alarm.objects.create(
        patient=recording.patient,
        kind=AlarmKind.PVC,
        priority=AlarmPriority.WARNING,
        message="PVC 15/min > 10/min",
        state=AlarmState.RESOLVED,
    )
    # a critical one latches until acknowledged (tests/test_notification_reliability.py), but
    # this one was acknowledged after it resolved
    latched = Alarm.objects.create(
        patient=recording.patient,
        kind=AlarmKind.VT,
        priority=AlarmPriority.CRITICAL,
        message="VT",
        state=AlarmState.RESOLVED,
    )
    acknowledge(latched, clinician)
    AlarmRecipient.objects.create(
        patient=recording.patient, address="chief@example.org", escalation=True
    )
    assert escalate_unacknowledged(timezone.now() + timedelta(hours=1)) == []
    assert not Notification.objects.exists()


# --- Webhook -----------------------------------------------------------------------------


@pytest.fixture
def webhook_server(settings):
    # webhooks may not reach this machine by default (tests/test_webhook_addresses.py): the
    # test server on 127.0.0.1 is allowed explicitly, as a site allows its pager gateway
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    received, answers = [], []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            length = int(self.headers["Content-Length"])
            received.append((self.headers, json.loads(self.rfile.read(length))))
            self.send_response(answers.pop(0) if answers else 204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received, answers
    server.shutdown()
    server.server_close()


def test_the_webhook_transport_posts_the_alarm_as_json_and_retries_an_error(
    recording, webhook_server
):
    url, received, answers = webhook_server
    alarm = hr_alarm(recording)
    AlarmRecipient.objects.create(
        patient=recording.patient, address=url, transport=Transport.WEBHOOK
    )
    [notification_id] = schedule_notifications(alarm)
    answers.append(500)
    now = timezone.now()
    assert send_notification(notification_id, now=now) == "retry"
    assert "500" in Notification.objects.get(pk=notification_id).last_error
    assert send_notification(notification_id, now=now + timedelta(minutes=5)) == "sent"
    headers, payload = received[-1]
    assert headers["Content-Type"] == "application/json"
    assert payload["alarm"] == alarm.pk and payload["message"] == "HR 134 > 120"
    assert payload["unit"] == "bpm"
    assert payload["patient"]["mrn"] == "MRN-001" and payload["escalation"] is False
    # a receiver that got the first try after all (its answer lost) can drop the second: the
    # same notification, a later attempt
    assert [p["notification_id"] for _, p in received] == [notification_id] * 2
    assert [p["attempt"] for _, p in received] == [1, 2]
    assert headers["X-CardioSpike-Notification"] == str(notification_id)
    assert headers["X-CardioSpike-Attempt"] == "2"
    assert payload["resolved_at"] is None and payload["acknowledged_at"] is None
