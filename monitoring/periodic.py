"""Celery beat's schedule without a broker: the embedded defaults' periodic work.

In production celery beat queues the tasks of ``CELERY_BEAT_SCHEDULE`` (the stream sweep and
the alarms' periodic check: device offline, escalation, notification retries) and workers run
them. Without a broker there is no beat; the ingest path runs the same work inline, but only
while some device sends data, so once every device has stopped nothing would raise "device
offline", retry a failed email or escalate an unacknowledged alarm. Two ways to run it here:

- ``manage.py run_periodic``: ``run_schedule`` in a process of its own;
- ``PERIODIC_IN_SERVER`` (the quick start sets it): ``ScheduleInServer`` wraps the ASGI
  application (``cardiospike/asgi.py``) and runs the schedule as a task of the server's event
  loop from its first connection on. Only there do its alarms reach the open pages: the
  in-memory channel layer lives in the server's process and loop.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)


class ScheduleError(ValueError):
    """A beat entry this loop cannot follow (a crontab, a period that is not positive)."""


def beat_entries() -> list[tuple[str, str, float]]:
    """(entry name, task name, period in seconds) of each ``CELERY_BEAT_SCHEDULE`` entry."""
    entries = []
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        schedule = entry["schedule"]
        if isinstance(schedule, timedelta):
            period_s = schedule.total_seconds()
        elif isinstance(schedule, int | float):
            period_s = float(schedule)
        else:  # a crontab needs celery beat itself
            raise ScheduleError(f"beat entry {name!r}: only periods in seconds are supported")
        if period_s <= 0:
            raise ScheduleError(f"beat entry {name!r}: the period must be positive, got {period_s}")
        entries.append((name, entry["task"], period_s))
    return entries


class Schedule:
    """When each beat task is due: every one at once, then each at its own period."""

    def __init__(self) -> None:
        self.entries = beat_entries()
        self.due_at = {name: 0.0 for name, _, _ in self.entries}

    def due(self) -> list[str]:
        """The task names due now; their next time is set."""
        now, names = time.monotonic(), []
        for name, task_name, period_s in self.entries:
            if now >= self.due_at[name]:
                self.due_at[name] = now + period_s
                names.append(task_name)
        return names

    def wait_s(self) -> float:
        return max(0.0, min(self.due_at.values()) - time.monotonic())


def run_task(task_name: str):
    """One beat task, here, as a worker would run it; its result, or the exception it raised
    (logged: the next period tries again, as beat would)."""
    from cardiospike.celery import app as celery_app

    # A worker imports the tasks' modules (autodiscovery) before it runs any; so does this.
    celery_app.loader.import_default_modules()
    _refresh_connection()
    try:
        return celery_app.tasks[task_name]()
    except Exception as error:
        logger.exception("periodic task %s failed", task_name)
        return error


def run_schedule(
    stop: threading.Event,
    once: bool = False,
    report: Callable[[str, object], None] | None = None,
) -> None:
    """Run each beat task at its own period until ``stop`` is set (``once``: each once);
    ``report(task_name, result_or_exception)`` hears every run."""
    schedule = Schedule()
    while not stop.is_set():
        for task_name in schedule.due():
            result = run_task(task_name)
            if report is not None:
                report(task_name, result)
        if once:
            return
        stop.wait(schedule.wait_s())


class ScheduleInServer:
    """ASGI middleware: the first connection starts the schedule on the server's event loop.

    Each task runs in a worker thread (``sync_to_async``), from which the channel layer calls
    of the alarms come back to this loop, where the consumers read the in-memory layer.
    """

    def __init__(self, application) -> None:
        self.application = application
        self.schedule = Schedule()  # refuse a schedule it cannot follow at start-up
        self.task: asyncio.Task | None = None

    async def __call__(self, scope, receive, send):
        if self.task is None:
            periods = ", ".join(f"{task} every {s:g} s" for _, task, s in self.schedule.entries)
            logger.info("running celery beat's schedule in the server: %s", periods)
            self.task = asyncio.get_running_loop().create_task(self.run())
        return await self.application(scope, receive, send)

    async def run(self) -> None:
        while True:
            for task_name in self.schedule.due():
                await sync_to_async(run_task, thread_sensitive=False)(task_name)
            await asyncio.sleep(self.schedule.wait_s())


def _refresh_connection() -> None:
    """Drop a broken or expired database connection, as Django does around each request (a
    loop that lives for days would otherwise keep one); never inside a transaction the caller
    holds open (a test's)."""
    if not connection.in_atomic_block:
        close_old_connections()
