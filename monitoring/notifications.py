"""Alarm notifications: who is told, over which transport, retried, escalated (docs/alarms.md).

- :func:`schedule_notifications` makes one ``Notification`` per recipient of the patient
  (``AlarmRecipient``; the escalation list separately), all or none, and queues
  ``send_notification_task`` for each after the commit. ``(alarm, recipient, transport,
  escalation)`` is unique, so scheduling twice notifies once. ``alarms._raise`` calls it in the
  transaction that creates the alarm, so an alarm is never committed without them;
  :func:`repair_unnotified_alarms` (the periodic check) creates them for an open alarm that has
  none all the same (its scheduling failed, or the patient had no first-call recipient then).
- :func:`send_notification` claims a notification with one conditional UPDATE (``pending`` ->
  ``sending``): of two workers handed the same id, one sends and the other finds nothing to
  do. Every attempt is a ``NotificationAttempt`` row with its error; a failure puts the
  notification back to ``pending`` with ``next_attempt_at`` doubled each time
  (``ALARM_RETRY_BASE_S`` up to ``ALARM_RETRY_MAX_S``), until ``NOTIFY_GIVE_UP_S`` after it was
  created, when it is ``failed`` (logged at ERROR). An escalation of an alarm acknowledged
  meanwhile is ``cancelled`` instead of sent. :func:`send_due` (the periodic check) queues the
  notifications that are due.
- :func:`escalate_unacknowledged`: an alarm nobody acknowledged ``ALARM_ESCALATION_S`` after it
  was raised is sent to the escalation list, once: an open one, or a critical one that resolved
  meanwhile (critical alarms latch until acknowledged). ``Alarm.escalated_at`` is claimed with
  the alarm's row locked and read again under the lock, in the transaction that creates the
  escalation notifications.
- Transports are classes with ``send(notification, strip_png)`` that raise on failure:
  ``TRANSPORTS = {"email": EmailTransport, "webhook": WebhookTransport}``; those whose
  ``attaches_strip`` is true get the ECG strip (None when it cannot be drawn).

A worker that dies between the claim and the end of a send leaves the notification
``sending``; after ``STALE_SENDING_S`` the periodic check puts it back to ``pending``. That one
case can send a message twice (the send may have gone out before the crash); every other
path sends at most once. A send that hangs instead is stopped by the task's time limits
(``SEND_SOFT_TIME_LIMIT_S``, ``SEND_TIME_LIMIT_S``) well before ``STALE_SENDING_S``.
"""

import json
import logging
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from monitoring import live, webhooks
from monitoring.models import (
    Alarm,
    AlarmRecipient,
    AlarmState,
    Notification,
    NotificationAttempt,
    NotificationState,
    Recording,
    latched_q,
)

logger = logging.getLogger(__name__)

STALE_SENDING_S = 300.0
WEBHOOK_TIMEOUT_S = 5.0
# A send (the strip, then the SMTP session or the POST) runs under Celery time limits well
# inside STALE_SENDING_S (monitoring/tasks.py). EMAIL_TIMEOUT and WEBHOOK_TIMEOUT_S bound each
# network operation, not the whole send: a server that answers a line every few seconds, or a
# slow name lookup (no timeout at all), can stretch one send past STALE_SENDING_S, when the
# periodic check puts its notification back and another worker sends it a second time. Past
# the soft limit the send is interrupted (SoftTimeLimitExceeded), recorded as a failed attempt
# and retried like any failure; past the hard one its pool process is killed, so it cannot
# finish after the notification was put back. Inline (no broker) there are no time limits.
SEND_SOFT_TIME_LIMIT_S = 120.0
SEND_TIME_LIMIT_S = 150.0
# The strip attached to an alarm: this much signal before and after the event's sample.
STRIP_BEFORE_S = 8.0
STRIP_AFTER_S = 4.0
SEND_DUE_BATCH = 200
REPAIR_BATCH = 100


def local_time(moment: datetime | None) -> str:
    """A time as people on the ward read it: "2024-05-03 14:07:09 CEST" (``TIME_ZONE``)."""
    if moment is None:
        return ""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")


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
        "acknowledged_at": alarm.acknowledged_at.isoformat() if alarm.acknowledged_at else None,
        "resolved_at": alarm.resolved_at.isoformat() if alarm.resolved_at else None,
        "patient": {
            "mrn": patient.mrn,
            "name": patient.name,
            "ward": patient.ward,
            "bed": patient.bed,
        },
        "recording": alarm.recording_id,
        "escalation": notification.escalation,
        "acknowledge": f"/api/alarms/{alarm.pk}/acknowledge/",
        # a receiver de-duplicates on notification_id: a retry after a lost answer, or the
        # send of a worker that died mid-send, repeats it with a higher attempt
        "notification_id": notification.pk,
        "attempt": notification.attempts,
    }


class EmailTransport:
    """An email through Django's email backend (SMTP, console or file, per settings)."""

    attaches_strip = True

    def send(self, notification: Notification, strip_png: bytes | None) -> None:
        alarm = notification.alarm
        patient = alarm.patient
        where = " ".join(part for part in (patient.ward, patient.bed) if part)
        prefix = "ESCALATION " if notification.escalation else ""
        resolved = alarm.state == AlarmState.RESOLVED
        subject = (
            f"[CardioSpike] {prefix}{alarm.priority.upper()} {alarm.get_kind_display()}: "
            f"{alarm.message} - {patient.name} ({where or patient.mrn})"
            + (" (resolved)" if resolved else "")
        )
        # one line: a name pasted with a line break (forms keep it) would make every try fail
        # with BadHeaderError until the message is given up
        subject = " ".join(subject.split())
        lines = [
            f"{alarm.get_priority_display()} alarm: {alarm.get_kind_display()}",
            f"{alarm.message}",
            "",
            f"Patient: {patient.name}, MRN {patient.mrn}" + (f", {where}" if where else ""),
            f"Raised at: {local_time(alarm.raised_at)}",
            f"State: {alarm.get_state_display()}",
        ]
        if alarm.acknowledged_at is not None:
            who = alarm.acknowledged_by.username if alarm.acknowledged_by else "someone"
            lines.append(f"Acknowledged by {who} at {local_time(alarm.acknowledged_at)}")
        if resolved:
            lines.append(
                f"Resolved at: {local_time(alarm.resolved_at)} (the condition is gone; "
                "this message was delayed)"
                if not notification.escalation
                else f"Resolved at: {local_time(alarm.resolved_at)}"
            )
        if notification.escalation:
            lines.append(
                f"Nobody acknowledged this alarm within {settings.ALARM_ESCALATION_S:g} s."
            )
            if resolved:
                lines.append(
                    "A critical alarm stays latched until someone acknowledges it, "
                    "even after its condition is gone."
                )
        site = settings.SITE_URL
        lines.append(f"Live view (acknowledge there): {site}/patients/{patient.pk}/live/")
        if alarm.recording_id is not None:
            lines.append(f"Review: {review_url(alarm)}")
        if strip_png:
            strip_note = "The ECG around the event is attached."
        elif alarm.recording_id is not None:
            strip_note = "No ECG strip is attached (none stored there, or it could not be drawn)."
        else:
            strip_note = "No ECG is stored for it."
        lines += [
            f"Or: POST {site}/api/alarms/{alarm.pk}/acknowledge/",
            "",
            strip_note,
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
    """An HTTP POST of the alarm as JSON to the recipient URL (5 s timeout; non-2xx fails).

    The notification's id and the attempt's number are in the JSON (``notification_id``,
    ``attempt``) and in the headers ``X-CardioSpike-Notification`` and
    ``X-CardioSpike-Attempt``, so that a receiver can drop a repeat. Only to a public address
    or one in ``WEBHOOK_ALLOWED_NETWORKS``, checked after resolving the host at each send; no
    redirect followed, no proxy; a failure is a short ``WebhookError`` (monitoring/webhooks.py).
    """

    attaches_strip = False

    def send(self, notification: Notification, strip_png: bytes | None) -> None:
        body = json.dumps(alarm_payload(notification)).encode()
        headers = {
            "Content-Type": "application/json",
            "X-CardioSpike-Notification": str(notification.pk),
            "X-CardioSpike-Attempt": str(notification.attempts),
        }
        webhooks.post(notification.recipient, body, headers, timeout=WEBHOOK_TIMEOUT_S)


TRANSPORTS = {"email": EmailTransport, "webhook": WebhookTransport}


SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"


def email_server() -> str:
    """Where Django's email backend sends, for the log and /health: "SMTP
    mail.example.org:587 (STARTTLS)", the file backend's folder, or the backend's name. Never
    a user name or password."""
    backend = settings.EMAIL_BACKEND
    if backend == SMTP_BACKEND:
        host = settings.EMAIL_HOST
        host = f"[{host}]" if ":" in host else host  # an IPv6 address
        security = (
            " (TLS)" if settings.EMAIL_USE_SSL else " (STARTTLS)" if settings.EMAIL_USE_TLS else ""
        )
        return f"SMTP {host}:{settings.EMAIL_PORT}{security}"
    if backend == FILE_BACKEND:
        return f"files in {settings.EMAIL_FILE_PATH}"
    return backend


def destination(notification: Notification) -> str:
    """Whom a notification goes to and through what, for the log and /health: "email to
    ward@example.org via SMTP mail.example.org:25", "webhook to https://pager.example.org".

    A webhook shows its scheme, host and port only: its path or query often is the secret
    that lets one post (a chat service's incoming webhook), and so are credentials in it."""
    if notification.transport == "email":
        return f"email to {notification.recipient} via {email_server()}"
    parts = urlsplit(notification.recipient)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port past 65535: its send fails and says so
        port = ""
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    return f"{notification.transport} to {parts.scheme}://{host}{port}"


# --- The ECG strip -----------------------------------------------------------------------


def alarm_strip_png(alarm: Alarm) -> bytes | None:
    """A PNG of the recording around the alarm's event sample, or None when nothing is stored
    there. Gaps are drawn as gaps."""
    from monitoring.strips import render_range_png

    recording = alarm.recording
    if recording is None or recording.end_sample <= 0:
        return None
    event = event_sample(alarm)
    start, end = alarm_strip_window(recording, event)
    if end <= start:
        return None
    return render_range_png(recording, start, end, marker_sample=event, title=alarm.message)


def event_sample(alarm: Alarm) -> int:
    """The sample the alarm is about (``details["sample"]``), else the recording's last one."""
    return int((alarm.details or {}).get("sample", alarm.recording.end_sample - 1))


def alarm_strip_window(recording: Recording, event: int) -> tuple[int, int]:
    """Samples ``[start, end)`` of the alarm's strip: ``STRIP_BEFORE_S`` before the event to
    ``STRIP_AFTER_S`` after it, moved (not cut) to fit the recording.

    An event in the first 8 s (an AF episode found at 2 s, a pause from the start) or in the
    last 4 s (the latest beat, the usual case for a live alarm) still gets a strip of the full
    length, the event off-centre: clipping only the start gave 4.6 s strips. Only a recording
    shorter than the strip gives a shorter one (all of it).
    """
    from monitoring.strips import fitted_window

    fs_hz = recording.sampling_rate_hz
    before_n = round(STRIP_BEFORE_S * fs_hz)
    length_n = before_n + round(STRIP_AFTER_S * fs_hz)
    return fitted_window(event - before_n, length_n, recording.end_sample)


def review_url(alarm: Alarm) -> str:
    """The review page of the alarm's recording, opened on the attached strip's window: the
    site's address and :func:`review_path`."""
    return f"{settings.SITE_URL}{review_path(alarm)}"


def review_path(alarm: Alarm) -> str:
    """The path of the review page of the alarm's recording, opened on the window of the
    strip an e-mail attaches (the alarm history page links rows here too).

    The page reads its position from the fragment (``#t=<start s>&w=<width s>``,
    frontend/static/cardiospike/review.js); without it the page opens at 0 s, hours away
    from the event of a long recording. Reads only the recording's row (no query when it was
    selected with the alarm).
    """
    recording = alarm.recording
    path = f"/recordings/{recording.pk}/review/"
    if recording.end_sample <= 0:
        return path  # nothing stored: 0 s is all there is
    fs_hz = recording.sampling_rate_hz
    start, end = alarm_strip_window(recording, event_sample(alarm))
    return f"{path}#t={start / fs_hz:.3f}&w={(end - start) / fs_hz:g}"


# --- Scheduling and sending --------------------------------------------------------------


def schedule_notifications(alarm: Alarm, escalation: bool = False) -> list[int]:
    """One pending notification per recipient of the alarm's patient, all or none; queued
    after commit. Returns the ids created now (existing ones are not scheduled again)."""
    # due at once by the real clock: ``now`` (a test's or the periodic check's) only says
    # which alarms are due for escalation
    due_at = timezone.now()
    created = []
    recipients = AlarmRecipient.objects.filter(patient_id=alarm.patient_id, escalation=escalation)
    with transaction.atomic():
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
    """Claim, send and record one notification: "sent", "retry", "failed" (gave up),
    "cancelled" (an escalation of an alarm acknowledged meanwhile) or "skipped" (another
    worker has it, it is not due, or it is done)."""
    now = now or timezone.now()
    claimed = Notification.objects.filter(
        pk=notification_id, state=NotificationState.PENDING, next_attempt_at__lte=now
    ).update(state=NotificationState.SENDING, claimed_at=now, attempts=F("attempts") + 1)
    if not claimed:
        return "skipped"
    notification = Notification.objects.select_related(
        "alarm__patient", "alarm__recording", "alarm__acknowledged_by"
    ).get(pk=notification_id)
    # this claim, and only it: a worker that took the notification over after a stale claim
    # (STALE_SENDING_S) holds another claimed_at and attempt number
    ours = Notification.objects.filter(
        pk=notification_id,
        state=NotificationState.SENDING,
        claimed_at=now,
        attempts=notification.attempts,
    )
    alarm = notification.alarm
    if notification.escalation and alarm.acknowledged_at is not None:
        who = alarm.acknowledged_by.username if alarm.acknowledged_by else "someone"
        ours.update(
            state=NotificationState.CANCELLED,
            attempts=F("attempts") - 1,  # nothing was tried
            last_error=f"not sent: acknowledged by {who} at {alarm.acknowledged_at.isoformat()}",
            claimed_at=None,
        )
        return "cancelled"
    started_at = timezone.now()
    try:
        transport = TRANSPORTS[notification.transport]()
        strip_png = alarm_strip(alarm) if getattr(transport, "attaches_strip", False) else None
        transport.send(notification, strip_png)
    except Exception as exc:  # any failure is recorded and retried; nothing is lost
        error = f"{type(exc).__name__}: {exc}"[:2000]
        NotificationAttempt.objects.create(
            notification=notification, started_at=started_at, ok=False, error=error
        )
        give_up_at = notification.created_at + timedelta(seconds=settings.NOTIFY_GIVE_UP_S)
        gave_up = now >= give_up_at
        # the last try falls at the give-up time, not a whole backoff past it
        next_at = min(now + timedelta(seconds=retry_delay_s(notification.attempts)), give_up_at)
        # where it went (the SMTP server and port, the recipient) and when it is tried again:
        # "Connection refused" alone does not say which server refused
        if gave_up:
            logger.error(
                "gave up notification %s (%s, alarm %s) after %s attempts since %s: %s",
                notification_id,
                destination(notification),
                alarm.pk,
                notification.attempts,
                notification.created_at.isoformat(),
                error,
            )
        else:
            logger.warning(
                "notification %s (%s, alarm %s) failed on attempt %s, next try in %g s: %s",
                notification_id,
                destination(notification),
                alarm.pk,
                notification.attempts,
                (next_at - now).total_seconds(),
                error,
            )
        ours.update(
            state=NotificationState.FAILED if gave_up else NotificationState.PENDING,
            last_error=error,
            next_attempt_at=now if gave_up else next_at,
            claimed_at=None,
        )
        return "failed" if gave_up else "retry"
    sent_at = timezone.now()
    NotificationAttempt.objects.create(notification=notification, started_at=started_at, ok=True)
    Notification.objects.filter(pk=notification_id).exclude(state=NotificationState.SENT).update(
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


def alarm_strip(alarm: Alarm) -> bytes | None:
    """The alarm's ECG strip, or None when it cannot be drawn: a message without the strip
    is better than none."""
    try:
        return alarm_strip_png(alarm)
    except Exception:
        logger.exception("could not draw the ECG strip of alarm %s; sending without it", alarm.pk)
        return None


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


def repair_unnotified_alarms() -> list[int]:
    """Notify the first-call recipients of every open alarm that has no first-call
    notification although its patient has such recipients; returns those alarms' ids.

    ``alarms._raise`` creates the notifications in the alarm's own transaction, so this finds
    an alarm whose scheduling failed (logged there), or one raised while the patient had no
    first-call recipient: whoever was added since hears of it. Not an alarm someone has
    acknowledged, nor a technical repeat while the alarm it repeats is recent (one still open
    ``TECHNICAL_RENOTIFY_S`` after it was raised is sent). Each alarm on its own: one that
    fails is logged and the others are repaired.
    """
    first_call_recipient = AlarmRecipient.objects.filter(
        patient_id=OuterRef("patient_id"), escalation=False
    )
    first_call_notification = Notification.objects.filter(alarm_id=OuterRef("pk"), escalation=False)
    # A technical repeat is not sent while the alarm it repeats is recent (alarms.repeat_of);
    # one still open TECHNICAL_RENOTIFY_S after it was raised is news again and is sent.
    recent_repeat = Q(details__has_key="repeat_of") & Q(
        raised_at__gt=timezone.now() - timedelta(seconds=settings.TECHNICAL_RENOTIFY_S)
    )
    unnotified = (
        Alarm.objects.open()
        .filter(Exists(first_call_recipient), ~Exists(first_call_notification))
        .filter(acknowledged_at__isnull=True)  # someone is at it: nobody needs telling
        .exclude(recent_repeat)
        .filter(patient__is_active=True)
        .order_by("raised_at", "pk")[:REPAIR_BATCH]
    )
    repaired = []
    for alarm in unnotified:
        try:
            created = schedule_notifications(alarm)
        except Exception:
            logger.exception("could not schedule the notifications of alarm %s", alarm.pk)
            continue
        if created:
            logger.warning(
                "alarm %s (%s, raised %s) had no notification: %s scheduled now",
                alarm.pk,
                alarm.kind,
                alarm.raised_at.isoformat(),
                len(created),
            )
            repaired.append(alarm.pk)
    return repaired


def escalation_due(now: datetime) -> Q:
    """Which alarms are due for escalation at ``now``: nobody acknowledged them
    ``ALARM_ESCALATION_S`` after they were raised, and they are open or, critical alarms
    latching, resolved meanwhile (not older than ``NOTIFY_GIVE_UP_S``, not of a patient since
    discharged)."""
    cutoff = now - timedelta(seconds=settings.ALARM_ESCALATION_S)
    waiting = (AlarmState.RAISED, AlarmState.NOTIFIED)
    latched = latched_q(now)
    return Q(
        escalated_at__isnull=True,
        acknowledged_at__isnull=True,
        raised_at__lte=cutoff,
    ) & (Q(state__in=waiting) | latched)


def escalate_unacknowledged(now: datetime | None = None) -> list[int]:
    """Notify the escalation list of every alarm due for escalation (:func:`escalation_due`);
    each alarm escalates once. Returns their ids."""
    now = now or timezone.now()
    due = escalation_due(now)
    escalated = []
    for alarm in Alarm.objects.filter(due).order_by("raised_at", "pk"):
        try:
            with transaction.atomic():
                # the claim and the notifications commit together, or neither does and the
                # next check tries again. The row locked and read again under the lock: an
                # UPDATE with due's join (the patient) is rewritten by Django as
                # "WHERE id IN (subquery)", which PostgreSQL does not re-check after waiting
                # on another claim or an acknowledgment; a locking read re-checks it.
                locked = Alarm.objects.select_for_update(of=("self",)).filter(due, pk=alarm.pk)
                claimed = locked.exists() and bool(
                    Alarm.objects.filter(pk=alarm.pk).update(escalated_at=now)
                )
                if claimed:
                    schedule_notifications(alarm, escalation=True)
        except Exception:
            logger.exception("could not escalate alarm %s", alarm.pk)
            continue
        if claimed:
            escalated.append(alarm.pk)
    return escalated
