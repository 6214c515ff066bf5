"""Run celery beat's schedule in this process, for the embedded defaults (no broker).

In production celery beat queues the tasks of ``CELERY_BEAT_SCHEDULE`` (the stream sweep and
the alarms' periodic check: device offline, escalation, notification retries) and workers run
them. Without a broker there is no beat; the ingest path runs the same work inline, but only
while some device sends data, so once every device has stopped nothing would raise "device
offline", retry a failed email or escalate an unacknowledged alarm. ``scripts/quickstart``
starts this command next to the server for that (docs/alarms.md).

    python manage.py run_periodic          # until Ctrl-C or SIGTERM
    python manage.py run_periodic --once   # every task once, then exit
"""

import signal
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cardiospike.celery import app as celery_app


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
            raise CommandError(f"beat entry {name!r}: only periods in seconds are supported")
        if period_s <= 0:
            raise CommandError(f"beat entry {name!r}: the period must be positive, got {period_s}")
        entries.append((name, entry["task"], period_s))
    return entries


class Command(BaseCommand):
    help = (
        "Run the tasks of CELERY_BEAT_SCHEDULE (stream sweep, alarm check) in this process, each "
        "at its own period: what celery beat and a worker do when there is no broker."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run every task once and exit")

    def handle(self, *args, once=False, **options):
        entries = beat_entries()
        # A worker imports the tasks' modules (autodiscovery) before it runs any; so does this.
        celery_app.loader.import_default_modules()
        stop = threading.Event()
        if not once:
            # SIGTERM (the quick start's stop) ends the loop between tasks, never inside one.
            signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
            periods = ", ".join(f"{task} every {period_s:g} s" for _, task, period_s in entries)
            self.stdout.write(f"run_periodic: {periods}")
        due_at = {name: 0.0 for name, _, _ in entries}
        try:
            while not stop.is_set():
                for name, task_name, period_s in entries:
                    if time.monotonic() >= due_at[name]:
                        due_at[name] = time.monotonic() + period_s
                        self.run_task(task_name, verbose=once)
                if once:
                    return
                stop.wait(max(0.0, min(due_at.values()) - time.monotonic()))
        except KeyboardInterrupt:
            pass

    def run_task(self, task_name: str, verbose: bool) -> None:
        """One task, in this process; a failure is reported and the schedule goes on."""
        try:
            # called directly, a task runs its function here, as a worker would
            result = celery_app.tasks[task_name]()
        except Exception as error:  # the next period tries again, as beat would
            self.stderr.write(f"run_periodic: {task_name} failed: {error!r}")
            return
        if verbose or _did_something(result):
            self.stdout.write(f"run_periodic: {task_name}: {result}")


def _did_something(result) -> bool:
    """Whether a task's summary (a dict of lists) names anything it changed."""
    return isinstance(result, dict) and any(result.values())
