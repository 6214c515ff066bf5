"""``manage.py run_periodic``: celery beat's schedule run in one process (the quick start's)."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from monitoring.models import AlarmKind, AlarmRecipient, Device, Recording

pytestmark = pytest.mark.django_db


def test_it_runs_every_beat_task_once_offline_alarm_emailed_and_silent_recording_closed(
    recording, other_patient, mailoutbox, eager_celery, django_capture_on_commit_callbacks, capsys
):
    # Every device has stopped: nothing reaches the ingest path that runs this work inline.
    # One went quiet 45 s ago (offline, > DEVICE_OFFLINE_S), one 400 s ago (its recording is
    # past DEVICE_SILENCE_CLOSE_S).
    AlarmRecipient.objects.create(patient=recording.patient, address="ward@example.org")
    now = timezone.now()
    Recording.objects.filter(pk=recording.pk).update(last_chunk_at=now - timedelta(seconds=45))
    silent = Recording.objects.create(
        patient=other_patient,
        device=Device.objects.create(serial="DEV-002", patient=other_patient),
        sampling_rate_hz=250.0,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        last_chunk_at=now - timedelta(seconds=400),
    )
    with django_capture_on_commit_callbacks(execute=True):
        call_command("run_periodic", "--once")
    output = capsys.readouterr().out
    assert "monitoring.tasks.sweep_streams_task" in output
    assert "monitoring.tasks.check_devices_task" in output
    silent.refresh_from_db()
    # the stream sweep closed the long-silent recording ...
    assert (silent.status, silent.closed_by) == ("closed", "silence")
    # ... and the alarm check raised device offline and emailed it, strip attached
    alarm = recording.patient.alarms.get()
    assert alarm.kind == AlarmKind.DEVICE_OFFLINE
    assert [message.to for message in mailoutbox] == [["ward@example.org"]]
    assert "No data from DEV-001" in mailoutbox[0].subject
    # a second pass changes nothing: one open alarm, one email
    with django_capture_on_commit_callbacks(execute=True):
        call_command("run_periodic", "--once")
    assert recording.patient.alarms.count() == 1 and len(mailoutbox) == 1


def test_it_deletes_expired_sessions_and_keeps_live_ones():
    # the hourly cleanup is in the schedule that run_periodic (and the server) follow
    from django.contrib.sessions.models import Session

    from monitoring.periodic import beat_entries
    from monitoring.sessions import SessionStore

    assert (
        "clear-expired-sessions",
        "monitoring.tasks.clear_expired_sessions_task",
        3600.0,
    ) in beat_entries()
    live, expired = SessionStore(), SessionStore()
    for store in (live, expired):
        store["anything"] = 1
        store.save()
    Session.objects.filter(session_key=expired.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    call_command("run_periodic", "--once")
    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]


def test_celery_beat_queues_the_session_cleanup_hourly():
    # with Redis, celery beat reads the schedule from the Celery app's configuration
    from cardiospike.celery import app

    entry = app.conf.beat_schedule["clear-expired-sessions"]
    assert entry["task"] == "monitoring.tasks.clear_expired_sessions_task"
    assert entry["schedule"] == 3600 and entry["options"] == {"expires": 3600}
    import monitoring.tasks  # noqa: F401  (what a worker's autodiscovery imports)

    assert "monitoring.tasks.clear_expired_sessions_task" in app.tasks


def test_it_refuses_a_schedule_it_cannot_follow(settings):
    from celery.schedules import crontab

    settings.CELERY_BEAT_SCHEDULE = {
        "nightly": {"task": "monitoring.tasks.sweep_streams_task", "schedule": crontab(hour=3)}
    }
    with pytest.raises(CommandError, match="nightly"):
        call_command("run_periodic", "--once")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)  # the tasks' threads have connections of their own
async def test_in_the_server_its_alarms_reach_the_open_pages(recording, eager_celery):
    # Embedded defaults: the in-memory channel layer lives in the server's process and event
    # loop, so only a schedule run there can tell the open pages of an alarm.
    import asyncio

    from channels.db import database_sync_to_async
    from channels.layers import get_channel_layer

    from monitoring import live
    from monitoring.periodic import ScheduleInServer

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(live.patient_group(recording.patient_id), channel)
    await database_sync_to_async(Recording.objects.filter(pk=recording.pk).update)(
        last_chunk_at=timezone.now() - timedelta(seconds=45)
    )

    answered = []

    async def application(scope, receive, send):
        answered.append(scope["type"])

    server = ScheduleInServer(application)
    assert server.task is None  # nothing runs before the server's first connection
    await server({"type": "http"}, None, None)
    try:
        message = await asyncio.wait_for(layer.receive(channel), 20.0)
    finally:
        server.task.cancel()
    assert answered == ["http"]
    assert message["type"] == "live.alarm"
    assert message["message"]["alarm"]["kind"] == AlarmKind.DEVICE_OFFLINE
    kinds = await database_sync_to_async(
        lambda: list(recording.patient.alarms.values_list("kind", flat=True))
    )()
    assert kinds == [AlarmKind.DEVICE_OFFLINE]
