"""Celery beat's schedule without a broker: the embedded defaults' periodic work.

In production celery beat queues the tasks of ``CELERY_BEAT_SCHEDULE`` (the stream sweep, the
alarms' periodic check: device offline, escalation, notification retries; and the hourly
deletion of expired sessions) and workers run them. Without a broker there is no beat; the
ingest path runs the sweep and the check inline, but only while some device sends data, so
once every device has stopped nothing would raise "device offline", retry a failed email or
escalate an unacknowledged alarm, and no expired session would ever be deleted. Two ways to
run it here:

- ``manage.py run_periodic``: ``run_schedule`` in a process of its own;
- ``PERIODIC_IN_SERVER`` (the quick start sets it): ``ScheduleInServer`` wraps the ASGI
  application (``cardiospike/asgi.py``) and runs the schedule as a task of the server's event
  loop from the server's start on. Only there do its alarms reach the open pages: the
  in-memory channel layer lives in the server's process and loop.

Either way the alarm check leaves a heartbeat (:func:`heartbeat`, a ``Heartbeat`` row per task)
when it completes, wherever it runs (a worker, here): ``/health`` reports a check that stopped.
"""

import asyncio
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

logger = logging.getLogger(__name__)

# After an error of the in-server loop itself (not of a task: those are logged by run_task),
# it waits this long and goes on.
LOOP_ERROR_PAUSE_S = 5.0


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

    try:
        # A worker imports the tasks' modules (autodiscovery) before it runs any; so does this.
        celery_app.loader.import_default_modules()
        _refresh_connection()
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
    """ASGI middleware: runs the schedule as a task of the server's event loop.

    Each task runs in a worker thread (``sync_to_async``), from which the channel layer calls
    of the alarms come back to this loop, where the consumers read the in-memory layer.

    It starts when daphne starts (:meth:`start_with_daphne`), or else at the first connection;
    every connection after that starts it again if it ended. daphne (4.x) implements no ASGI
    lifespan protocol (no ``lifespan.startup`` event reaches an application), so the start is
    hooked on its Twisted reactor instead, whose event loop is the one daphne runs the
    application on.
    """

    def __init__(self, application) -> None:
        self.application = application
        self.schedule = Schedule()  # refuse a schedule it cannot follow at start-up
        self.task: asyncio.Task | None = None

    async def __call__(self, scope, receive, send):
        self.ensure_running()
        return await self.application(scope, receive, send)

    def ensure_running(self) -> None:
        """Start the schedule on the running event loop, or again if its task ended (``run``
        catches every error, so only a cancellation, or a bug, ends it)."""
        if self.task is not None and not self.task.done():
            return
        if self.task is None:
            periods = ", ".join(f"{task} every {s:g} s" for _, task, s in self.schedule.entries)
            logger.info("running celery beat's schedule in the server: %s", periods)
        else:
            ended = "cancelled" if self.task.cancelled() else repr(self.task.exception())
            logger.error("the server's schedule had ended (%s); starting it again", ended)
        self.task = asyncio.get_running_loop().create_task(self.run())

    def start_with_daphne(self) -> bool:
        """Start the schedule as soon as daphne's reactor runs, rather than at the first
        connection (a server restarted while no page is open and no device sends would
        otherwise raise no "device offline" at all). Whether daphne's reactor is here: outside
        daphne (tests, another server) nothing is scheduled and the first connection starts it."""
        reactor = sys.modules.get("twisted.internet.reactor")  # never install one here
        if reactor is None:
            return False
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        if not isinstance(reactor, AsyncioSelectorReactor):
            return False
        # a delayed call of this reactor is a callback of its asyncio loop: it runs in the
        # loop's first turn, where daphne then creates the applications' tasks too
        reactor.callLater(0, self.ensure_running)
        return True

    async def run(self) -> None:
        """Each due task in a worker thread, for ever; an error here (not in a task: run_task
        logs those) is logged and the loop goes on after a pause."""
        while True:
            try:
                for task_name in self.schedule.due():
                    await sync_to_async(run_task, thread_sensitive=False)(task_name)
                wait_s = self.schedule.wait_s()
            except Exception:
                logger.exception(
                    "the server's schedule failed; going on in %g s", LOOP_ERROR_PAUSE_S
                )
                wait_s = LOOP_ERROR_PAUSE_S
            await asyncio.sleep(wait_s)


def heartbeat(task: Callable) -> Callable:
    """Decorator of a periodic task: each time it returns, its ``Heartbeat`` row (its celery
    name) says when, for ``/health``. A raise, or a result naming ``failed`` steps, leaves the
    old time, which then grows stale; a heartbeat that cannot be written is logged and the
    task's result returned all the same."""
    name = f"{task.__module__}.{task.__name__}"

    @functools.wraps(task)
    def beating(*args, **kwargs):
        result = task(*args, **kwargs)
        if isinstance(result, dict) and result.get("failed"):
            # a check whose steps failed (each logged) did not do its work: /health must
            # see the heartbeat grow stale, not a fresh one
            return result
        record_heartbeat(name)
        return result

    return beating


def record_heartbeat(name: str) -> None:
    from monitoring.models import Heartbeat

    try:
        Heartbeat.objects.update_or_create(name=name, defaults={"completed_at": timezone.now()})
    except Exception:
        logger.exception("could not record the heartbeat of %s", name)


def _refresh_connection() -> None:
    """Drop a broken or expired database connection, as Django does around each request (a
    loop that lives for days would otherwise keep one); never inside a transaction the caller
    holds open (a test's)."""
    if not connection.in_atomic_block:
        close_old_connections()
