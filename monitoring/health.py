"""Health checks of the parts the server depends on, for ``GET /health``.

Each check returns a dict with ``ok`` and details; a failing check names the part and the
error so an operator knows what to fix (e.g. "Redis at 127.0.0.1:6379: Connection refused").
Staff read the whole report, fresh on every call; anyone else ``public_report``, reused for
``PUBLIC_REPORT_MAX_AGE_S`` so that a flood of anonymous calls does not run every check each
time (``cached_public_report``); the server log has it all.

Two kinds of check. The server's own parts (``CHECKS``: database, broker, channel layer,
models): one that fails makes the status ``error`` (503), as this server cannot do its work.
The alarm path (``DELIVERY_CHECKS``: the periodic alarm check has completed lately; no
notification is late, none has kept failing for ``NOTIFICATION_UNDELIVERED_S``, none failed in
the last 24 h, email does not go to the console): one that fails makes it ``degraded``
(200), because another server would not do better (the rows and the schedule are shared), and
a load balancer that took every server out for a late email would take the dashboards too.
"""

import asyncio
import threading
import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Min
from django.utils import timezone

import inference
from monitoring.models import (
    AlarmRecipient,
    Heartbeat,
    Notification,
    NotificationState,
    Transport,
)
from monitoring.notifications import destination, email_server

CHECK_TIMEOUT_S = 2.0
# The alarm check is late after this many of its periods (ALARM_CHECK_S) without completing,
# and never sooner than PERIODIC_LATE_MIN_S (a slow check, a worker restarting).
PERIODIC_LATE_PERIODS = 3
PERIODIC_LATE_MIN_S = 60.0
# A notification pending or sending this long past its due time is late: the periodic check
# queues due ones every ALARM_CHECK_S and a send takes seconds, so it is stuck.
NOTIFICATION_LATE_S = 120.0
# A notification still undelivered this long after it was created (when it was first due) is
# failing: with the default backoff (ALARM_RETRY_BASE_S, 30 s) three tries have failed by then
# (at 0, 30 and 90 s), so its server is down, not blinking. Counted from creation, not from
# next_attempt_at: a failing notification keeps moving that forward, and was never "late".
NOTIFICATION_UNDELIVERED_S = 120.0
FAILED_WINDOW = timedelta(hours=24)
# The email backends that deliver nowhere a person reads: alarm emails "sent" through them are
# lost. Production refuses to start with the console by default (settings.py), but either can
# still be chosen explicitly.
NOWHERE_EMAIL_BACKENDS = (
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
)


def redacted(url: str) -> str:
    """A service URL without its password, fit for a public health page."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def check_database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {"ok": False, "vendor": connection.vendor, "error": f"database: {exc}"}
    return {
        "ok": True,
        "vendor": connection.vendor,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def check_broker() -> dict:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"ok": True, "mode": "eager", "detail": "REDIS_URL unset: tasks run in process"}
    url = settings.CELERY_BROKER_URL
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=CHECK_TIMEOUT_S
        )
        client.ping()
        client.close()
    except Exception as exc:
        return {"ok": False, "mode": "redis", "error": f"Redis broker at {redacted(url)}: {exc}"}
    return {"ok": True, "mode": "redis", "url": redacted(url)}


async def _round_trip(layer) -> None:
    channel = await layer.new_channel()
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "health.check", "token": token})
    message = await layer.receive(channel)
    if message.get("token") != token:
        raise RuntimeError("channel layer returned a different message")


def check_channel_layer() -> dict:
    layer = get_channel_layer()
    backend = type(layer).__name__ if layer else None
    if layer is None:
        return {"ok": False, "backend": None, "error": "channel layer: CHANNEL_LAYERS not set"}

    async def probe():
        await asyncio.wait_for(_round_trip(layer), timeout=CHECK_TIMEOUT_S)

    try:
        async_to_sync(probe)()
    except Exception as exc:
        where = f" at {redacted(settings.REDIS_URL)}" if settings.REDIS_URL else ""
        reason = str(exc) or type(exc).__name__
        return {"ok": False, "backend": backend, "error": f"channel layer{where}: {reason}"}
    return {"ok": True, "backend": backend}


def check_models() -> dict:
    try:
        cards = inference.list_models()
    except Exception as exc:
        return {"ok": False, "loaded": [], "error": f"models: {exc}"}
    return {"ok": True, "loaded": [f"{card['name']}@{card['version']}" for card in cards]}


def alarm_check_task() -> str:
    """The celery name of the alarm check, whose heartbeat ``check_periodic`` reads."""
    return settings.CELERY_BEAT_SCHEDULE["check-alarms"]["task"]


def check_periodic() -> dict:
    """The alarm check (device offline, escalation, notification retries) completed within
    a few of its periods: else nothing runs it (no celery beat, a dead loop) or it fails."""
    late_after_s = max(PERIODIC_LATE_MIN_S, PERIODIC_LATE_PERIODS * settings.ALARM_CHECK_S)
    try:
        heartbeat = Heartbeat.objects.filter(name=alarm_check_task()).first()
    except Exception as exc:
        return {"ok": False, "error": f"periodic check: {exc}"}
    result = {"late_after_s": late_after_s}
    if heartbeat is None:
        error = "the periodic alarm check has never completed (is celery beat running?)"
        return {"ok": False, **result, "last_completed_at": None, "error": error}
    age_s = round((timezone.now() - heartbeat.completed_at).total_seconds(), 1)
    result.update(last_completed_at=heartbeat.completed_at.isoformat(), age_s=age_s)
    if age_s > late_after_s:
        error = f"the periodic alarm check last completed {age_s:g} s ago"
        return {"ok": False, **result, "error": error}
    return {"ok": True, **result}


def notification_summary(notification: Notification, now) -> dict:
    """What staff need to know of one notification to act on it: where it goes (the SMTP
    server, the recipient) and why it has not arrived (its last error)."""
    return {
        "id": notification.pk,
        "alarm": notification.alarm_id,
        "to": destination(notification),
        "state": notification.state,
        "attempts": notification.attempts,
        "waiting_s": round((now - notification.created_at).total_seconds(), 1),
        "next_attempt_at": notification.next_attempt_at.isoformat(),
        "last_error": notification.last_error,
    }


def check_notifications() -> dict:
    """The alarm notifications are being delivered: none is pending or sending more than
    ``NOTIFICATION_LATE_S`` past its due time (the queue is stuck), none has been waiting
    more than ``NOTIFICATION_UNDELIVERED_S`` since it was created (its sends keep failing: the
    mail server is down), none failed for good in the last 24 h (staff can send those again in
    the admin), and email does not go to the console or nowhere while patients have email
    recipients.

    Nothing is sent or probed over SMTP here: the check reads what the real sends recorded, so
    a dead mail server shows once an alarm needs it (within ``NOTIFICATION_UNDELIVERED_S``),
    not before. ``manage.py sendtestemail`` checks the server on demand."""
    now = timezone.now()
    undelivered = Notification.objects.filter(
        state__in=(NotificationState.PENDING, NotificationState.SENDING)
    )
    try:
        oldest_due = undelivered.filter(next_attempt_at__lte=now).aggregate(
            oldest=Min("next_attempt_at")
        )["oldest"]
        # few rows (those not yet sent), read through the (state, next_attempt_at) index
        oldest_undelivered = undelivered.order_by("created_at", "pk").first()
        # failed for good after an attempt in the window: its last attempt is in it
        # a notification given up keeps the time it gave up in next_attempt_at
        # (notifications.send_notification): one read of the (state, next_attempt_at) index,
        # not a scan of every attempt ever made, on a path load balancers poll
        failed = Notification.objects.filter(
            state=NotificationState.FAILED, next_attempt_at__gte=now - FAILED_WINDOW
        ).order_by("-next_attempt_at", "-pk")
        failed_count = failed.count()
        last_failed = failed.first() if failed_count else None
        nowhere = settings.EMAIL_BACKEND in NOWHERE_EMAIL_BACKENDS and not settings.DEBUG
        email_recipients = (
            nowhere
            and AlarmRecipient.objects.filter(
                transport=Transport.EMAIL, patient__is_active=True
            ).exists()
        )
    except Exception as exc:
        return {"ok": False, "error": f"notifications: {exc}"}
    overdue_s = round((now - oldest_due).total_seconds(), 1) if oldest_due else 0.0
    waiting_s = (
        round((now - oldest_undelivered.created_at).total_seconds(), 1)
        if oldest_undelivered
        else 0.0
    )
    result = {
        "email": email_server(),
        "oldest_overdue_s": overdue_s,
        "late_after_s": NOTIFICATION_LATE_S,
        "oldest_undelivered_s": waiting_s,
        "undelivered_after_s": NOTIFICATION_UNDELIVERED_S,
        "oldest_undelivered": (
            notification_summary(oldest_undelivered, now) if oldest_undelivered else None
        ),
        "failed_24h": failed_count,
        "last_failed": notification_summary(last_failed, now) if last_failed else None,
    }
    errors = []
    if overdue_s > NOTIFICATION_LATE_S:
        errors.append(f"a notification is {overdue_s:g} s past its due time")
    if waiting_s > NOTIFICATION_UNDELIVERED_S:
        summary = result["oldest_undelivered"]
        errors.append(
            f"notification {summary['id']} ({summary['to']}) undelivered for {waiting_s:g} s "
            f"after {summary['attempts']} attempt(s)"
            + (f"; last error: {summary['last_error']}" if summary["last_error"] else "")
        )
    if failed_count:
        errors.append(f"{failed_count} notification(s) failed for good in the last 24 h")
    if email_recipients:
        errors.append(
            f"alarm emails go to {settings.EMAIL_BACKEND} (EMAIL_BACKEND), which delivers "
            "nowhere anyone reads, and patients have email recipients"
        )
    if errors:
        return {"ok": False, **result, "error": "; ".join(errors)}
    return {"ok": True, **result}


CHECKS = {
    "database": check_database,
    "broker": check_broker,
    "channel_layer": check_channel_layer,
    "models": check_models,
}
# checks of the alarm path: failing, they degrade the status rather than fail the server
DELIVERY_CHECKS = {
    "periodic": check_periodic,
    "notifications": check_notifications,
}


# What anyone may read of a check; its error and the service's address are for staff and the
# server log (an address and a driver's message tell an outsider about the network inside).
# What anyone may read of a check: whether it passed. Which database, channel layer or model
# versions a server runs (and how fast its database answers) is for staff: an anonymous
# caller is a load balancer or a monitor, which need the status, or someone mapping the
# server.
PUBLIC_KEYS = ("ok",)


def public_report(report: dict) -> dict:
    """``report`` with only each check's ok flag: status, failing and degraded parts."""
    checks = {
        name: {key: value for key, value in result.items() if key in PUBLIC_KEYS}
        for name, result in report["checks"].items()
    }
    return {**report, "checks": checks}


# How long the public answer (what anyone not staff reads) is reused. /health needs no login
# and each fresh answer runs every check (a database query, a Redis ping, a channel layer
# round trip, the model cards): a flood of anonymous requests would turn into a flood of
# those. Reused for a second, a flood costs one run of the checks a second per server
# process, and a load balancer polling every few seconds still reads a fresh status.
PUBLIC_REPORT_MAX_AGE_S = 1.0
PUBLIC_REPORT_CACHE_KEY = "health:public-report"
# one run of the checks at a time for the public answer: the callers that arrive while it
# runs wait for it and read its answer, rather than each running the checks again
_public_report_lock = threading.Lock()


def cached_public_report() -> tuple[dict, dict | None]:
    """The public report, reused for ``PUBLIC_REPORT_MAX_AGE_S``; returns it and the full
    report when the checks ran for this call (``None`` when the answer was reused), for the
    caller to log.

    Kept in the "default" cache, which stays in each process's memory (settings.CACHES):
    nothing here depends on Redis, one of the parts it checks.
    """
    report = cache.get(PUBLIC_REPORT_CACHE_KEY)
    if report is not None:
        return report, None
    with _public_report_lock:
        report = cache.get(PUBLIC_REPORT_CACHE_KEY)  # another caller may have just run them
        if report is not None:
            return report, None
        full = run_checks()
        report = public_report(full)
        cache.set(PUBLIC_REPORT_CACHE_KEY, report, PUBLIC_REPORT_MAX_AGE_S)
    return report, full


def run_checks() -> dict:
    """Every check; ``status`` is ``error`` when a part of the server fails (``failing``),
    else ``degraded`` when the alarm path does (``degraded``), else ``ok``."""
    results = {name: check() for name, check in {**CHECKS, **DELIVERY_CHECKS}.items()}
    failing = [name for name in CHECKS if not results[name]["ok"]]
    degraded = [name for name in DELIVERY_CHECKS if not results[name]["ok"]]
    status = "error" if failing else "degraded" if degraded else "ok"
    return {"status": status, "failing": failing, "degraded": degraded, "checks": results}
