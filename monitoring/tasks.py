"""Celery tasks: thin wrappers that take ids (JSON-serializable) and call plain functions."""

from importlib import import_module

from celery import shared_task
from django.conf import settings

from monitoring.models import Recording
from monitoring.notifications import SEND_SOFT_TIME_LIMIT_S, SEND_TIME_LIMIT_S
from monitoring.periodic import heartbeat
from monitoring.recordings import summarize


@shared_task
def summarize_recording(recording_id: int) -> dict:
    """What is stored of a recording, computed on a worker (see ``recordings.summarize``)."""
    return summarize(Recording.objects.get(pk=recording_id))


@shared_task
def analyze_recording_task(recording_id: int, force: bool = False) -> dict:
    """Batch analysis of a stored (uploaded) recording (see ``analysis.analyze_recording``)."""
    from monitoring.analysis import analyze_recording

    return analyze_recording(recording_id, force=force)


@shared_task(ignore_result=True)
def analyze_stream_task(recording_id: int) -> dict:
    """Streaming analysis of a device recording (see ``streaming.run_stream_analysis``)."""
    from monitoring.streaming import run_stream_analysis

    return run_stream_analysis(recording_id)


@shared_task(ignore_result=True)
def sweep_streams_task() -> dict:
    """Periodic: close silent recordings, catch up lagging analyses, fail upload analyses
    left pending by a lost worker (``streaming.sweep``)."""
    from monitoring.streaming import sweep

    return sweep()


@shared_task(ignore_result=True)
@heartbeat  # /health says when this last completed: the sign that alarms are being checked
def check_devices_task() -> dict:
    """Periodic: device offline and leads off, escalation, due notification retries
    (``alarms.periodic_check``)."""
    from monitoring.alarms import periodic_check

    return periodic_check()


@shared_task(ignore_result=True)
def clear_expired_sessions_task() -> None:
    """Periodic: delete the sessions past their expiry (``SESSION_IDLE_S``), as ``manage.py
    clearsessions`` does. An expired row signs nobody in; deleting it keeps the table from
    holding every login ever made. With the database sessions (``monitoring.sessions``) it is
    one DELETE on the indexed ``expire_date``."""
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()


@shared_task(
    ignore_result=True,
    # inside STALE_SENDING_S, after which the notification is put back and sent again
    soft_time_limit=SEND_SOFT_TIME_LIMIT_S,
    time_limit=SEND_TIME_LIMIT_S,
)
def send_notification_task(notification_id: int) -> str:
    """Send one alarm notification, claimed atomically (``notifications.send_notification``);
    a send that hangs is interrupted and retried (``notifications.SEND_SOFT_TIME_LIMIT_S``)."""
    from monitoring.notifications import send_notification

    return send_notification(notification_id)
