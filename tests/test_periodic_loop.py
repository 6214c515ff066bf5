"""The in-server schedule (``PERIODIC_IN_SERVER``) keeps running: an error does not end it, a
task that ended anyway starts again, and under daphne it starts with the server; the alarm
check's heartbeat (``periodic.heartbeat``)."""

import asyncio
import logging
import sys
from datetime import timedelta

import pytest
from celery import shared_task
from django.utils import timezone

from monitoring import periodic
from monitoring.models import Heartbeat

FAST_WAIT_S = 0.01
TASKS = {
    "check-alarms": "monitoring.tasks.check_devices_task",
    "sweep-streams": "monitoring.tasks.sweep_streams_task",
}
TASK_NAMES = sorted(TASKS.values())


async def answer(scope, receive, send):
    return None


@pytest.fixture
def fast_schedule(settings, monkeypatch):
    """Both beat tasks every ``FAST_WAIT_S``; the tasks' modules not imported again (celery's
    Django fixup would set Django, and its logging, up again)."""
    settings.CELERY_BEAT_SCHEDULE = {
        name: {"task": task, "schedule": FAST_WAIT_S} for name, task in TASKS.items()
    }
    monkeypatch.setattr(periodic, "LOOP_ERROR_PAUSE_S", FAST_WAIT_S)
    monkeypatch.setattr("cardiospike.celery.app.loader.import_default_modules", lambda: None)


async def wait_for(predicate, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(FAST_WAIT_S)


async def still_running_once(predicate) -> None:
    """A connection starts the schedule, ``predicate`` comes true and the schedule still runs."""
    server = periodic.ScheduleInServer(answer)
    await server({"type": "http"}, None, None)
    try:
        await wait_for(predicate)
        assert not server.task.done()
    finally:
        server.task.cancel()


def test_run_task_reports_an_error_before_the_task_instead_of_raising(
    fast_schedule, monkeypatch, caplog
):
    def broken_refresh():
        raise RuntimeError("connection close failed")

    monkeypatch.setattr(periodic, "_refresh_connection", broken_refresh)
    with caplog.at_level(logging.ERROR, logger="monitoring.periodic"):
        result = periodic.run_task("monitoring.tasks.sweep_streams_task")
    assert isinstance(result, RuntimeError)
    assert "periodic task monitoring.tasks.sweep_streams_task failed" in caplog.text


@pytest.mark.asyncio
async def test_an_error_in_the_loop_is_logged_and_the_schedule_goes_on(
    fast_schedule, monkeypatch, caplog
):
    # the review's probe: one exception outside a task's own try used to end the loop for good
    calls = []

    def refresh():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("connection close failed")

    monkeypatch.setattr(periodic, "_refresh_connection", refresh)
    monkeypatch.setattr("cardiospike.celery.app.tasks", {name: dict for name in TASK_NAMES})
    await still_running_once(lambda: len(calls) >= 4)
    assert "connection close failed" in caplog.text


@pytest.mark.asyncio
async def test_an_error_outside_run_task_pauses_the_loop_and_it_goes_on(
    fast_schedule, monkeypatch, caplog
):
    runs = []

    def run_task(task_name):
        runs.append(task_name)
        if len(runs) == 1:
            raise RuntimeError("worker thread gone")  # past run_task's own try

    monkeypatch.setattr(periodic, "run_task", run_task)
    await still_running_once(lambda: len(runs) >= 4)
    assert "the server's schedule failed" in caplog.text and "worker thread gone" in caplog.text


@pytest.mark.asyncio
async def test_the_next_connection_starts_an_ended_schedule_again(
    fast_schedule, monkeypatch, caplog
):
    runs = []
    monkeypatch.setattr(periodic, "run_task", runs.append)
    server = periodic.ScheduleInServer(answer)
    await server({"type": "http"}, None, None)
    first = server.task
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    before = len(runs)

    await server({"type": "websocket"}, None, None)
    try:
        assert server.task is not first
        await wait_for(lambda: len(runs) > before)
    finally:
        server.task.cancel()
    assert "the server's schedule had ended (cancelled); starting it again" in caplog.text


def test_under_daphne_it_starts_with_the_reactor_before_any_connection(fast_schedule, monkeypatch):
    # daphne 4 sends no ASGI lifespan events; its Twisted reactor's first turn starts it
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    runs = []
    monkeypatch.setattr(periodic, "run_task", runs.append)
    loop = asyncio.new_event_loop()
    reactor = AsyncioSelectorReactor(loop)  # daphne's kind, not installed as the global one
    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", reactor)
    server = periodic.ScheduleInServer(answer)
    try:
        assert server.start_with_daphne() is True
        assert server.task is None  # not before the reactor's loop runs

        async def until_both_ran():
            await wait_for(lambda: len(runs) >= len(TASK_NAMES))
            assert server.task.get_loop() is loop
            server.task.cancel()

        loop.run_until_complete(until_both_ran())
    finally:
        loop.close()
    assert sorted(set(runs)) == TASK_NAMES


@pytest.mark.asyncio
async def test_the_server_deletes_expired_sessions_from_its_start_on(monkeypatch):
    # the real schedule (CELERY_BEAT_SCHEDULE): the hourly cleanup runs at the start, then
    # every hour (what it deletes: tests/test_sessions.py, tests/test_run_periodic.py)
    runs = []
    monkeypatch.setattr(periodic, "run_task", runs.append)
    cleanup = ("clear-expired-sessions", "monitoring.tasks.clear_expired_sessions_task", 3600.0)
    assert cleanup in periodic.Schedule().entries
    await still_running_once(lambda: cleanup[1] in runs)


def test_outside_daphne_it_waits_for_the_first_connection(monkeypatch):
    monkeypatch.delitem(sys.modules, "twisted.internet.reactor", raising=False)
    server = periodic.ScheduleInServer(answer)
    assert server.start_with_daphne() is False
    assert "twisted.internet.reactor" not in sys.modules  # no reactor installed by asking
    assert server.task is None


# --- the heartbeat -----------------------------------------------------------------------


def checked(now=None) -> dict:
    """A stand-in periodic task."""
    return {"raised": []}


@pytest.mark.django_db
def test_a_task_that_returns_records_its_heartbeat_under_its_celery_name():
    task = shared_task(periodic.heartbeat(checked))
    assert task.name == f"{__name__}.checked"  # the decorator keeps the task's name
    before = timezone.now()
    assert task() == {"raised": []}
    beat = Heartbeat.objects.get()
    assert beat.name == task.name and beat.completed_at >= before
    Heartbeat.objects.update(completed_at=before - timedelta(hours=1))
    task()
    assert Heartbeat.objects.count() == 1  # one row per task, overwritten
    assert Heartbeat.objects.get().completed_at >= before


@pytest.mark.django_db
def test_a_task_that_raises_leaves_its_last_heartbeat():
    long_ago = timezone.now() - timedelta(hours=1)
    Heartbeat.objects.create(name=f"{__name__}.failing", completed_at=long_ago)

    @periodic.heartbeat
    def failing():
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        failing()
    assert Heartbeat.objects.get().completed_at == long_ago


@pytest.mark.django_db
def test_a_heartbeat_that_cannot_be_written_is_logged_and_the_result_returned(monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise RuntimeError("read-only database")

    monkeypatch.setattr(Heartbeat.objects, "update_or_create", refuse)
    assert periodic.heartbeat(checked)() == {"raised": []}
    assert "could not record the heartbeat of" in caplog.text
