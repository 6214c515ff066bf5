"""Run celery beat's schedule in this process, for the embedded defaults (no broker).

Why, and the other way to run it (a thread of the server): ``monitoring/periodic.py``.

    python manage.py run_periodic          # until Ctrl-C or SIGTERM
    python manage.py run_periodic --once   # every task once, then exit
"""

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from monitoring.periodic import ScheduleError, beat_entries, run_schedule


class Command(BaseCommand):
    help = (
        "Run the tasks of CELERY_BEAT_SCHEDULE (stream sweep, alarm check, session cleanup) "
        "in this process, each at its own period: what celery beat and a worker do when there "
        "is no broker."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run every task once and exit")

    def handle(self, *args, once=False, **options):
        try:
            entries = beat_entries()
        except ScheduleError as error:
            raise CommandError(str(error)) from None
        stop = threading.Event()
        if not once:
            # SIGTERM (the quick start's stop) ends the loop between tasks, never inside one.
            signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
            periods = ", ".join(f"{task} every {period_s:g} s" for _, task, period_s in entries)
            self.stdout.write(f"run_periodic: {periods}")

        def report(task_name: str, result) -> None:
            if isinstance(result, Exception):
                self.stderr.write(f"run_periodic: {task_name} failed: {result!r}")
            elif once or _did_something(result):
                self.stdout.write(f"run_periodic: {task_name}: {result}")

        try:
            run_schedule(stop, once=once, report=report)
        except KeyboardInterrupt:
            pass


def _did_something(result) -> bool:
    """Whether a task's summary (a dict of lists) names anything it changed."""
    return isinstance(result, dict) and any(result.values())
