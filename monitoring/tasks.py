"""Celery tasks: thin wrappers that take ids (JSON-serializable) and call plain functions."""

import logging
import threading
import time
from importlib import import_module

from celery import shared_task
from celery.app.trace import LOG_SUCCESS
from django.conf import settings

from monitoring.models import Recording
from monitoring.notifications import SEND_SOFT_TIME_LIMIT_S, SEND_TIME_LIMIT_S
from monitoring.periodic import heartbeat
from monitoring.recordings import summarize

logger = logging.getLogger(__name__)


@shared_task
def summarize_recording(recording_id: int) -> dict:
    """What is stored of a recording, computed on a worker (see ``recordings.summarize``)."""
    return summarize(Recording.objects.get(pk=recording_id))


@shared_task
def analyze_recording_task(recording_id: int, force: bool = False) -> dict:
    """Batch analysis of a stored (uploaded) recording (see ``analysis.analyze_recording``)."""
    from monitoring.analysis import analyze_recording

    return analyze_recording(recording_id, force=force)


# A device's every chunk (one a second) queues a stream analysis, and a worker at INFO logged
# each one's success with its result: with the "received" line, 350 bytes per chunk, 94 KB in
# 2 minutes for 2 devices, which buried everything else in the log. The success line of this
# task is dropped (ANALYSIS_LOG_FILTER); each worker process says instead, once a minute, how
# many analyses it ran, of which recordings, how much signal and how slow the slowest was.
# Failures and retries are logged as before (WARNING, ERROR), and so is the "received" line,
# which says which worker took an analysis.
STREAM_LOG_SUMMARY_S = 60.0


class StreamAnalysisTally:
    """The stream analyses one worker process ran since its last summary line."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # a threads pool runs several tasks at once
        self.reset(time.monotonic())

    def reset(self, now_s: float) -> None:
        self.since_s = now_s
        self.tasks = 0
        self.recordings: set[int] = set()
        self.samples = 0
        self.beats = 0
        self.slowest_s = 0.0

    def add(self, totals: dict, runtime_s: float) -> str | None:
        """Count one analysis; return the summary line once ``STREAM_LOG_SUMMARY_S`` has
        passed since the last one (and start counting again), else None."""
        now_s = time.monotonic()
        with self.lock:
            self.tasks += 1
            self.recordings.add(totals["recording"])
            self.samples += totals["samples"]
            self.beats += totals["beats"]
            self.slowest_s = max(self.slowest_s, runtime_s)
            if now_s - self.since_s < STREAM_LOG_SUMMARY_S:
                return None
            line = (
                f"stream analysis, last {now_s - self.since_s:.0f} s: {self.tasks} task(s), "
                f"recording(s) {', '.join(str(pk) for pk in sorted(self.recordings))}, "
                f"{self.samples} samples, {self.beats} beats, slowest {self.slowest_s:.2f} s"
            )
            self.reset(now_s)
            return line


stream_tally = StreamAnalysisTally()


@shared_task(ignore_result=True)
def analyze_stream_task(recording_id: int) -> dict:
    """Streaming analysis of a device recording (see ``streaming.run_stream_analysis``)."""
    from monitoring.streaming import run_stream_analysis

    started_s = time.perf_counter()
    totals = run_stream_analysis(recording_id)
    summary = stream_tally.add(totals, time.perf_counter() - started_s)
    if summary:
        logger.info(summary)
    return totals


class QuietSuccessFilter(logging.Filter):
    """Drops Celery's "Task ... succeeded in ...: <result>" line of the tasks named; every
    other record passes (their failures and retries among them)."""

    def __init__(self, task_names: set[str]) -> None:
        super().__init__()
        self.task_names = task_names

    def filter(self, record: logging.LogRecord) -> bool:
        # celery.app.trace logs success with LOG_SUCCESS and the task's context in ``data``
        # (celery.app.trace.info); failures and retries have messages of their own
        data = getattr(record, "data", None)
        return not (
            record.msg == LOG_SUCCESS
            and isinstance(data, dict)
            and data.get("name") in self.task_names
        )


# the name Celery gives the task (shared_task: module and function)
ANALYSIS_LOG_FILTER = QuietSuccessFilter({f"{__name__}.analyze_stream_task"})
# on the logger that writes the line, so that whatever handlers the worker sets up later
# (celery --loglevel, Django's LOGGING) never see it
logging.getLogger("celery.app.trace").addFilter(ANALYSIS_LOG_FILTER)


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
