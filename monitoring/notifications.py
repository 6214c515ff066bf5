"""Alarm notifications: who is told, over which transport, retried, escalated (docs/alarms.md).

- :func:`schedule_notifications` makes one ``Notification`` per recipient of the patient
  (``AlarmRecipient``; the escalation list separately) and queues ``send_notification_task``
  for each after the commit. ``(alarm, recipient, transport, escalation)`` is unique, so
  scheduling twice notifies once.
- :func:`send_notification` claims a notification with one conditional UPDATE (``pending`` ->
  ``sending``): of two workers handed the same id, one sends and the other finds nothing to
  do. Every attempt is a ``NotificationAttempt`` row with its error; a failure puts the
  notification back to ``pending`` with ``next_attempt_at`` doubled each time
  (``ALARM_RETRY_BASE_S`` up to ``ALARM_RETRY_MAX_S``), and after ``ALARM_MAX_ATTEMPTS`` it is
  ``failed``. :func:`send_due` (the periodic check) queues the notifications that are due.
- :func:`escalate_unacknowledged`: an open alarm nobody acknowledged ``ALARM_ESCALATION_S``
  after it was raised is sent to the escalation list, once (``Alarm.escalated_at`` is claimed
  by a conditional UPDATE too).
- Transports are classes with ``send(notification, strip_png)`` that raise on failure:
  ``TRANSPORTS = {"email": EmailTransport, "webhook": WebhookTransport}``.

A worker that dies between the claim and the end of a send leaves the notification
``sending``; after ``STALE_SENDING_S`` the periodic check puts it back to ``pending``. That one
case can send a message twice (the send may have gone out before the crash); every other
path sends at most once.
"""

import json
import logging
import urllib.parse
import urllib.request
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from monitoring import live
from monitoring.models import (
    Alarm,
    AlarmRecipient,
    AlarmState,
    Notification,
    NotificationAttempt,
    NotificationState,
)

logger = logging.getLogger(__name__)

STALE_SENDING_S = 300.0
WEBHOOK_TIMEOUT_S = 5.0
# The strip attached to an alarm: this much signal before and after the event's sample.
STRIP_BEFORE_S = 8.0
STRIP_AFTER_S = 4.0
SEND_DUE_BATCH = 200


# --- Transports --------------------------------------------------------------------------


def alarm_payload(notification: Notification) -> dict:
    """What every transport says about the alarm."""
    alarm = notification.alarm
    patient = alarm.patient
    return {
        "alarm": alarm.pk,
        "kind": alarm.kind,
        "priority": alarm.priority,
        "message": alarm.message,
        "value": alarm.value,
        "limit": alarm.limit,
        "unit": alarm.unit,
        "state": alarm.state,
        "raised_at": alarm.raised_at.isoformat(),
        "patient": {
            "mrn": patient.mrn,
            "name": patient.name,
            "ward": patient.ward,
            "bed": patient.bed,
        },
        "recording": alarm.recording_id,
        "escalation": notification.escalation,
        "acknowledge": f"/api/alarms/{alarm.pk}/acknowledge/",
    }


class EmailTransport:
    """An email through Django's email backend (SMTP, console or file, per settings)."""

    def send(self, notification: Notification, strip_png: bytes | None) -> None:
        alarm = notification.alarm
        patient = alarm.patient
        where = " ".join(part for part in (patient.ward, patient.bed) if part)
        prefix = "ESCALATION " if notification.escalation else ""
        subject = (
            f"[CardioSpike] {prefix}{alarm.priority.upper()} {alarm.get_kind_display()}: "
            f"{alarm.message} - {patient.name} ({where or patient.mrn})"
        )
        lines = [
            f"{alarm.get_priority_display()} alarm: {alarm.get_kind_display()}",
            f"{alarm.message}",
            "",
            f"Patient: {patient.name}, MRN {patient.mrn}" + (f", {where}" if where else ""),
            f"Raised at: {alarm.raised_at.isoformat()}",
            f"State: {alarm.get_state_display()}",
        ]
        if notification.escalation:
            lines.append(
                f"Nobody acknowledged this alarm within {settings.ALARM_ESCALATION_S:g} s."
            )
        site = settings.SITE_URL
        lines.append(f"Live view (acknowledge there): {site}/patients/{patient.pk}/live/")
        if alarm.recording_id is not None:
            lines.append(f"Review: {site}/recordings/{alarm.recording_id}/review/")
        lines += [
            f"Or: POST {site}/api/alarms/{alarm.pk}/acknowledge/",
            "",
            "The ECG around the event is attached." if strip_png else "No ECG is stored for it.",
            "",
            "CardioSpike is research software, not a medical device.",
        ]
        message = EmailMessage(
            subject=subject,
            body="\n".join(lines),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[notification.recipient],
            connection=get_connection(fail_silently=False),
        )
        if strip_png:
            message.attach(f"alarm-{alarm.pk}-ecg.png", strip_png, "image/png")
        message.send(fail_silently=False)


class WebhookTransport:
    """An HTTP POST of the alarm as JSON to the recipient URL (5 s timeout; non-2xx fails)."""

    def send(self, notification: Notification, strip_png: bytes | None) -> None:
        url = notification.recipient
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"a webhook address must be an http(s) URL, got {url!r}")
        body = json.dumps(alarm_payload(notification)).encode()
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:  # noqa: S310
            if not 200 <= response.status < 300:
                raise OSError(f"webhook answered HTTP {response.status}")


TRANSPORTS = {"email": EmailTransport, "webhook": WebhookTransport}


# --- The ECG strip -----------------------------------------------------------------------


def alarm_strip_png(alarm: Alarm) -> bytes | None:
    """A PNG of the recording around the alarm's event sample, or None when nothing is stored
    there. Gaps are drawn as gaps."""
    from monitoring.strips import render_range_png

    recording = alarm.recording
    if recording is None or recording.end_sample <= 0:
        return None
    fs_hz = recording.sampling_rate_hz
    event = int(alarm.details.get("sample", recording.end_sample - 1))
    start = max(0, event - round(STRIP_BEFORE_S * fs_hz))
    end = min(recording.end_sample, event + round(STRIP_AFTER_S * fs_hz))
    if end <= start:
        return None
    return render_range_png(recording, start, end, marker_sample=event, title=alarm.message)


# --- Scheduling and sending --------------------------------------------------------------


def schedule_notifications(alarm: Alarm, escalation: bool = False) -> list[int]:
    """One pending notification per recipient of the alarm's patient; queued after commit.
    Returns the ids created now (existing ones are not scheduled again)."""
    # due at once by the real clock: ``now`` (a test's or the periodic check's) only says
    # which alarms are due for escalation
    due_at = timezone.now()
    created = []
    recipients = AlarmRecipient.objects.filter(patient_id=alarm.patient_id, escalation=escalation)
    for recipient in recipients:
        notification, new = Notification.objects.get_or_create(
            alarm=alarm,
            recipient=recipient.address,
            transport=recipient.transport,
            escalation=escalation,
            defaults={"next_attempt_at": due_at, "created_at": due_at},
        )
        if new:
            created.append(notification.pk)
    if created:
        transaction.on_commit(lambda: queue(created))
    return created


def queue(notification_ids: list[int]) -> None:
    """Queue a send task per notification; a broker that refuses leaves them to ``send_due``."""
    from monitoring.tasks import send_notification_task

    for notification_id in notification_ids:
        try:
            send_notification_task.delay(notification_id)
        except Exception:
            logger.exception("could not queue notification %s", notification_id)


def retry_delay_s(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: base, 2 x base, 4 x ..."""
    return min(settings.ALARM_RETRY_MAX_S, settings.ALARM_RETRY_BASE_S * 2 ** (attempts - 1))


def send_notification(notification_id: int, now: datetime | None = None) -> str:
    """Claim, send and record one notification: "sent", "retry", "failed" or "skipped"
    (another worker has it, it is not due, or it is done)."""
    now = now or timezone.now()
    claimed = Notification.objects.filter(
        pk=notification_id, state=NotificationState.PENDING, next_attempt_at__lte=now
    ).update(state=NotificationState.SENDING, claimed_at=now, attempts=F("attempts") + 1)
    if not claimed:
        return "skipped"
    notification = Notification.objects.select_related("alarm__patient", "alarm__recording").get(
        pk=notification_id
    )
    started_at = timezone.now()
    try:
        transport = TRANSPORTS[notification.transport]()
        strip_png = alarm_strip_png(notification.alarm)
        transport.send(notification, strip_png)
    except Exception as exc:  # any failure is recorded and retried; nothing is lost
        error = f"{type(exc).__name__}: {exc}"[:2000]
        logger.warning("notification %s failed: %s", notification_id, error)
        NotificationAttempt.objects.create(
            notification=notification, started_at=started_at, ok=False, error=error
        )
        gave_up = notification.attempts >= settings.ALARM_MAX_ATTEMPTS
        next_at = now + timedelta(seconds=retry_delay_s(notification.attempts))
        Notification.objects.filter(pk=notification_id, state=NotificationState.SENDING).update(
            state=NotificationState.FAILED if gave_up else NotificationState.PENDING,
            last_error=error,
            next_attempt_at=now if gave_up else next_at,
            claimed_at=None,
        )
        return "failed" if gave_up else "retry"
    sent_at = timezone.now()
    NotificationAttempt.objects.create(notification=notification, started_at=started_at, ok=True)
    Notification.objects.filter(pk=notification_id).update(
        state=NotificationState.SENT, sent_at=sent_at, last_error="", claimed_at=None
    )
    Alarm.objects.filter(pk=notification.alarm_id, notified_at__isnull=True).update(
        notified_at=sent_at
    )
    notified = Alarm.objects.filter(pk=notification.alarm_id, state=AlarmState.RAISED).update(
        state=AlarmState.NOTIFIED
    )
    if notified:  # the pages show the new state at once (live.publish_alarm never raises)
        live.publish_alarm(
            Alarm.objects.select_related("acknowledged_by").get(pk=notification.alarm_id)
        )
    return "sent"


def send_due(now: datetime | None = None) -> list[int]:
    """Queue the pending notifications whose time has come (retries, and first sends whose
    queuing failed); put back those a dead worker left ``sending``."""
    now = now or timezone.now()
    Notification.objects.filter(
        state=NotificationState.SENDING,
        claimed_at__lt=now - timedelta(seconds=STALE_SENDING_S),
    ).update(state=NotificationState.PENDING, claimed_at=None)
    due = list(
        Notification.objects.filter(state=NotificationState.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SEND_DUE_BATCH]
    )
    queue(due)
    return due


def escalate_unacknowledged(now: datetime | None = None) -> list[int]:
    """Notify the escalation list of every open alarm not acknowledged within
    ``ALARM_ESCALATION_S`` of being raised; each alarm escalates once. Returns their ids."""
    now = now or timezone.now()
    waiting = (AlarmState.RAISED, AlarmState.NOTIFIED)
    cutoff = now - timedelta(seconds=settings.ALARM_ESCALATION_S)
    escalated = []
    due = Alarm.objects.filter(state__in=waiting, escalated_at__isnull=True, raised_at__lte=cutoff)
    for alarm in due:
        claimed = Alarm.objects.filter(
            pk=alarm.pk, state__in=waiting, escalated_at__isnull=True
        ).update(escalated_at=now)
        if claimed:
            schedule_notifications(alarm, escalation=True)
            escalated.append(alarm.pk)
    return escalated
