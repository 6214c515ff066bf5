"""Every alarm reaches someone: notifications created with their alarm and repaired when they
are missing, failures contained, escalation latched for critical alarms and never lost,
retries that outlast an outage, no message that contradicts the alarm (docs/alarms.md)."""

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.core import mail
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from monitoring import alarms, live, notifications
from monitoring.alarms import (
    Condition,
    acknowledge,
    apply_conditions,
    evaluate_alarms,
    periodic_check,
)
from monitoring.models import (
    Alarm,
    AlarmKind,
    AlarmRecipient,
    AlarmState,
    Device,
    Notification,
    NotificationAttempt,
    NotificationState,
    Patient,
    Recording,
    Transport,
)
from monitoring.notifications import (
    escalate_unacknowledged,
    repair_unnotified_alarms,
    schedule_notifications,
    send_due,
    send_notification,
)
from tests.test_alarms import add_beats, hr_alarm
from tests.test_notifications import ecg_with_gap

pytestmark = pytest.mark.django_db

LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def locmem(settings):
    settings.EMAIL_BACKEND = LOCMEM
    mail.outbox = []
    return mail.outbox


def offline_patient(number: int) -> Patient:
    """A patient whose device has been silent for 90 s, with a first-call nurse."""
    patient = Patient.objects.create(mrn=f"MRN-{number}", name=f"Patient {number}")
    device = Device.objects.create(serial=f"DEV-{number}", patient=patient)
    recording = Recording.objects.create(
        patient=patient, device=device, sampling_rate_hz=250, gain_adc_per_mv=200, lead_names=["II"]
    )
    silent_since = timezone.now() - timedelta(seconds=90)
    Recording.objects.filter(pk=recording.pk).update(last_chunk_at=silent_since)
    AlarmRecipient.objects.create(patient=patient, address=f"nurse{number}@example.org")
    return patient


def vt(recording, active: bool, at: datetime) -> list:
    condition = Condition(AlarmKind.VT, active, message="VT 6 beats at 152 bpm")
    return apply_conditions(recording.patient, recording, [condition], at)


def chief(patient) -> None:
    AlarmRecipient.objects.create(patient=patient, address="chief@example.org", escalation=True)


# --- An alarm and its notifications ------------------------------------------------------


def test_a_raised_alarm_is_committed_with_its_notifications(recording):
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    with transaction.atomic():
        [change] = vt(recording, True, timezone.now())
        # in the alarm's own transaction, before anything else runs: a crash after the
        # commit cannot leave the alarm without them
        [notification] = Notification.objects.filter(alarm=change.alarm)
    assert notification.recipient == "nurse@example.org" and not notification.escalation


def test_a_scheduling_failure_keeps_the_alarm_and_the_others_and_the_check_repairs_it(
    locmem, eager_celery, django_capture_on_commit_callbacks, caplog
):
    first = offline_patient(1)
    offline_patient(2)
    schedule = notifications.schedule_notifications

    def fails_for_the_first(alarm, escalation=False):
        if alarm.patient_id == first.pk:
            raise RuntimeError("database blip")
        return schedule(alarm, escalation)

    with mock.patch.object(notifications, "schedule_notifications", fails_for_the_first):
        with django_capture_on_commit_callbacks(execute=True):
            result = periodic_check()  # does not raise: the other steps ran too
    assert len(result["raised"]) == 2  # both alarms stand: the stations show them
    assert [m.to for m in locmem] == [["nurse2@example.org"]]  # the second was told
    assert "could not schedule the notifications" in caplog.text
    # the next check finds the alarm nobody was told of, and tells them
    with django_capture_on_commit_callbacks(execute=True):
        result = periodic_check(timezone.now() + timedelta(seconds=10))
    [repaired] = result["repaired"]
    assert Alarm.objects.get(pk=repaired).patient_id == first.pk
    assert sorted(m.to[0] for m in locmem) == ["nurse1@example.org", "nurse2@example.org"]
    assert periodic_check()["repaired"] == []  # once


def test_one_failing_patient_or_step_leaves_the_rest_of_the_periodic_check_to_run(caplog):
    first, second = offline_patient(1), offline_patient(2)
    technical = alarms.technical_conditions

    def fails_for_the_first(recording, now):
        if recording.patient_id == first.pk:
            raise RuntimeError("bad device row")
        return technical(recording, now)

    due = Notification.objects.create(
        alarm=Alarm.objects.create(patient=second, kind=AlarmKind.VT, priority="critical"),
        recipient="nurse2@example.org",
        transport=Transport.EMAIL,
    )
    with (
        mock.patch.object(alarms, "technical_conditions", fails_for_the_first),
        mock.patch.object(notifications, "escalate_unacknowledged", side_effect=OSError("x")),
        mock.patch.object(notifications, "queue"),
    ):
        result = periodic_check(timezone.now() + timedelta(seconds=1))
    [raised] = result["raised"]  # the second patient's device is still watched
    assert Alarm.objects.get(pk=raised).patient_id == second.pk
    assert result["escalated"] == [] and due.pk in result["queued"]  # retries still go out
    assert "the technical alarm check of patient" in caplog.text
    assert "step 'escalated' failed" in caplog.text
    assert result["failed"] == ["escalated"]


def test_a_check_whose_steps_failed_records_no_heartbeat():
    """/health reads the heartbeat as "alarms are being checked": a check that caught its
    steps' errors did not check them."""
    from monitoring.models import Heartbeat
    from monitoring.tasks import check_devices_task

    with mock.patch.object(notifications, "send_due", side_effect=OSError("db blip")):
        assert check_devices_task()["failed"] == ["queued"]
    assert not Heartbeat.objects.exists()
    assert check_devices_task()["failed"] == []
    assert Heartbeat.objects.get().name == "monitoring.tasks.check_devices_task"


def test_the_repair_tells_only_first_call_recipients_of_open_alarms_once(recording):
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    open_alarm = hr_alarm(recording)  # raised without notifications
    Alarm.objects.create(  # resolved: nothing to tell any more
        patient=recording.patient,
        kind=AlarmKind.PVC,
        priority="warning",
        message="PVC 15/min > 10/min",
        state=AlarmState.RESOLVED,
    )
    escalation_only = Patient.objects.create(mrn="MRN-9", name="Escalation Only")
    chief(escalation_only)
    Alarm.objects.create(patient=escalation_only, kind=AlarmKind.VT, priority="critical")
    with mock.patch.object(notifications, "queue"):
        assert repair_unnotified_alarms() == [open_alarm.pk]
        assert repair_unnotified_alarms() == []
    [notification] = Notification.objects.all()
    assert notification.alarm == open_alarm and notification.recipient == "nurse@example.org"


def test_a_broken_rule_does_not_silence_the_others(recording, caplog):
    add_beats(recording, bpm=75, seconds=30)
    add_beats(recording, bpm=134, seconds=20)
    with mock.patch.object(alarms, "pvc_condition", side_effect=ValueError("bad beat row")):
        changes = evaluate_alarms(recording.pk)
    assert [(c.change, c.alarm.kind) for c in changes] == [("raised", AlarmKind.HR_HIGH)]
    assert "the alarm rule of PVC failed" in caplog.text


def test_a_condition_that_cannot_be_applied_leaves_the_others_applied(recording, caplog):
    now = timezone.now()
    old_vt = vt(recording, True, now)[0].alarm
    conditions = [
        Condition(AlarmKind.HR_HIGH, True, message="HR 134 > 120"),
        Condition(AlarmKind.VT, False),
    ]
    with mock.patch.object(alarms, "_raise", side_effect=RuntimeError("disk full")):
        changes = apply_conditions(recording.patient, recording, conditions, now)
    assert [(c.change, c.alarm.pk) for c in changes] == [("resolved", old_vt.pk)]
    assert "could not apply the HR_HIGH condition" in caplog.text


# --- Escalation --------------------------------------------------------------------------


def test_an_escalation_that_cannot_be_scheduled_is_tried_again(recording, caplog):
    chief(recording.patient)
    alarm = hr_alarm(recording)
    later = alarm.raised_at + timedelta(seconds=200)
    with mock.patch.object(
        notifications, "schedule_notifications", side_effect=RuntimeError("database blip")
    ):
        assert escalate_unacknowledged(later) == []  # logged, not raised
    alarm.refresh_from_db()
    assert alarm.escalated_at is None  # not marked done
    assert "could not escalate alarm" in caplog.text
    with mock.patch.object(notifications, "queue"):
        assert escalate_unacknowledged(later + timedelta(seconds=10)) == [alarm.pk]
    assert Notification.objects.filter(escalation=True, alarm=alarm).count() == 1


def test_an_unacknowledged_critical_alarm_that_resolved_is_escalated_all_the_same(
    recording, locmem, eager_celery, django_capture_on_commit_callbacks, settings
):
    settings.ALARM_ESCALATION_S = 120
    chief(recording.patient)
    t0 = timezone.now()
    [raised] = vt(recording, True, t0)
    vt(recording, False, t0 + timedelta(seconds=90))  # a VT run that stopped by itself
    assert escalate_unacknowledged(t0 + timedelta(seconds=100)) == []  # not due yet
    with django_capture_on_commit_callbacks(execute=True):
        assert escalate_unacknowledged(t0 + timedelta(seconds=130)) == [raised.alarm.pk]
        assert escalate_unacknowledged(t0 + timedelta(seconds=200)) == []  # once
    [message] = locmem
    assert message.to == ["chief@example.org"] and "ESCALATION" in message.subject
    assert message.subject.endswith("(resolved)")
    assert "Nobody acknowledged this alarm within 120 s." in message.body
    assert "Resolved at: " in message.body and "latched" in message.body


def test_a_resolved_warning_or_an_acknowledged_resolved_critical_alarm_is_not_escalated(
    client, clinician, recording, settings
):
    chief(recording.patient)
    t0 = timezone.now()
    warning = apply_conditions(
        recording.patient, recording, [Condition(AlarmKind.HR_HIGH, True, "HR 134 > 120")], t0
    )[0].alarm
    apply_conditions(recording.patient, recording, [Condition(AlarmKind.HR_HIGH, False)], t0)
    critical = vt(recording, True, t0)[0].alarm
    vt(recording, False, t0 + timedelta(seconds=30))
    # a resolved alarm can be acknowledged: the live view keeps its button until then
    client.force_login(clinician)
    response = client.post(f"/api/alarms/{critical.pk}/acknowledge/")
    assert response.status_code == 200
    assert response.json()["state"] == "resolved" and response.json()["acknowledged_by"]
    assert escalate_unacknowledged(t0 + timedelta(seconds=300)) == []
    assert not Alarm.objects.filter(pk__in=[warning.pk, critical.pk], escalated_at__isnull=False)


def test_a_latched_alarm_of_a_discharged_patient_or_long_past_is_not_escalated(recording, settings):
    settings.NOTIFY_GIVE_UP_S = 3600
    chief(recording.patient)
    t0 = timezone.now()
    vt(recording, True, t0)
    vt(recording, False, t0 + timedelta(seconds=30))
    assert escalate_unacknowledged(t0 + timedelta(seconds=3601)) == []  # past the give-up
    # a discharge ends the latching (admissions.end_monitoring calls this), also after a
    # readmission: the stations must not show the old alarm as waiting
    alarms.resolve_on_discharge(recording.patient)
    assert escalate_unacknowledged(t0 + timedelta(seconds=300)) == []
    Patient.objects.filter(pk=recording.patient_id).update(is_active=True)
    assert escalate_unacknowledged(t0 + timedelta(seconds=300)) == []
    assert live.top_alarm(recording.patient_id) is None


def test_alarms_from_before_latching_began_do_not_latch(recording):
    """Upgrading must not escalate, nor light the stations with, every critical alarm of the
    last hours that resolved unacknowledged when nobody acknowledged resolved alarms."""
    t0 = timezone.now()
    vt(recording, True, t0)
    vt(recording, False, t0 + timedelta(seconds=30))
    Alarm.objects.update(latches=False)  # what migration 0016 gives existing alarms
    assert escalate_unacknowledged(t0 + timedelta(seconds=300)) == []
    assert live.top_alarm(recording.patient_id) is None


def test_an_escalation_acknowledged_before_it_goes_out_is_cancelled(
    recording, clinician, locmem, eager_celery
):
    chief(recording.patient)
    alarm = hr_alarm(recording)
    with mock.patch.object(notifications, "queue"):  # queued, not run yet
        escalate_unacknowledged(alarm.raised_at + timedelta(seconds=200))
    acknowledge(alarm, clinician)
    [escalation] = Notification.objects.filter(escalation=True)
    assert send_notification(escalation.pk) == "cancelled"
    assert locmem == []
    escalation.refresh_from_db()
    assert escalation.state == NotificationState.CANCELLED and escalation.attempts == 0
    assert "acknowledged by clinician" in escalation.last_error
    assert send_due(timezone.now() + timedelta(hours=1)) == []  # done for good


def test_a_first_call_message_of_an_alarm_resolved_meanwhile_says_so(
    recording, locmem, eager_celery, settings
):
    settings.TIME_ZONE = "Europe/Berlin"
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    raised_at = datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC)
    with mock.patch.object(notifications, "queue"):  # the mail server is down meanwhile
        [change] = vt(recording, True, raised_at)
    vt(recording, False, raised_at + timedelta(seconds=75))
    [notification] = Notification.objects.all()
    assert send_notification(notification.pk) == "sent"
    [message] = locmem
    assert message.subject.endswith("(resolved)")
    lines = message.body.splitlines()
    # the ward's time, with its zone, not UTC ISO
    assert "Raised at: 2024-07-01 14:00:00 CEST" in lines
    assert "State: Resolved" in lines
    assert any(line.startswith("Resolved at: 2024-07-01 14:01:15 CEST") for line in lines)


# --- Sending -----------------------------------------------------------------------------


def test_a_strip_that_cannot_be_drawn_does_not_hold_the_email_back(
    recording, locmem, eager_celery, caplog
):
    ecg_with_gap(recording)
    alarm = hr_alarm(recording)
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    with mock.patch.object(notifications, "queue"):
        [notification_id] = schedule_notifications(alarm)
    with mock.patch("monitoring.strips.render_range_png", side_effect=ValueError("bad strip")):
        assert send_notification(notification_id) == "sent"
    [message] = locmem
    assert message.attachments == []
    assert "No ECG strip is attached" in message.body
    assert "could not draw the ECG strip" in caplog.text


def test_a_webhook_does_not_draw_the_strip(recording):
    ecg_with_gap(recording)
    alarm = hr_alarm(recording)
    notification = Notification.objects.create(
        alarm=alarm, recipient="http://127.0.0.1:9/hook", transport=Transport.WEBHOOK
    )
    with (
        mock.patch.object(notifications, "alarm_strip_png") as strip,
        mock.patch.object(notifications.WebhookTransport, "send") as send,
    ):
        assert send_notification(notification.pk) == "sent"
    strip.assert_not_called()
    assert send.call_args.args[1] is None


class OutageTransport:
    """A mail server that is down until ``up_at`` (by the ``now`` the test hands in)."""

    attaches_strip = False
    clock: datetime
    up_at: datetime
    sent: list = []

    def send(self, notification, strip_png):
        if self.clock < self.up_at:
            raise ConnectionRefusedError("mail server down")
        self.sent.append(notification.pk)


def run_retries(notification_id: int, start: datetime, until: datetime) -> list[datetime]:
    """Send at every due time from ``start`` until it is done or ``until``; the tries' times."""
    tries, now = [], start
    while now <= until:
        OutageTransport.clock = now
        outcome = send_notification(notification_id, now=now)
        tries.append(now)
        if outcome != "retry":
            break
        now = Notification.objects.get(pk=notification_id).next_attempt_at
    return tries


def test_retries_outlast_an_hour_long_mail_outage(recording, settings, monkeypatch):
    settings.ALARM_RETRY_BASE_S, settings.ALARM_RETRY_MAX_S = 30, 300
    monkeypatch.setitem(notifications.TRANSPORTS, "email", OutageTransport)
    OutageTransport.sent = []
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    with mock.patch.object(notifications, "queue"):
        [notification_id] = schedule_notifications(hr_alarm(recording))
    start = Notification.objects.get(pk=notification_id).created_at
    OutageTransport.up_at = start + timedelta(hours=1)
    tries = run_retries(notification_id, start, start + timedelta(hours=2))
    assert OutageTransport.sent == [notification_id]
    notification = Notification.objects.get(pk=notification_id)
    assert notification.state == NotificationState.SENT
    # sent within one capped backoff of the server's return, tried at most every 5 min
    assert tries[-1] - OutageTransport.up_at <= timedelta(seconds=300)
    assert max(b - a for a, b in zip(tries, tries[1:], strict=False)) == timedelta(seconds=300)


def test_retries_give_up_at_the_budget_and_say_so_at_error(
    recording, settings, monkeypatch, caplog
):
    settings.ALARM_RETRY_BASE_S, settings.ALARM_RETRY_MAX_S = 30, 300
    settings.NOTIFY_GIVE_UP_S = 2 * 3600
    monkeypatch.setitem(notifications.TRANSPORTS, "email", OutageTransport)
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    with mock.patch.object(notifications, "queue"):
        [notification_id] = schedule_notifications(hr_alarm(recording))
    start = Notification.objects.get(pk=notification_id).created_at
    OutageTransport.up_at = start + timedelta(days=1)
    with caplog.at_level(logging.WARNING, logger="monitoring.notifications"):
        tries = run_retries(notification_id, start, start + timedelta(hours=3))
    assert tries[-1] == start + timedelta(hours=2)  # the last try is at the budget's end
    notification = Notification.objects.get(pk=notification_id)
    assert notification.state == NotificationState.FAILED
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "gave up notification" in errors[0].getMessage()


def test_a_late_failure_does_not_undo_the_claim_of_a_worker_that_took_over(recording):
    alarm = hr_alarm(recording)
    notification = Notification.objects.create(
        alarm=alarm, recipient="nurse@example.org", transport=Transport.EMAIL
    )
    t0 = timezone.now()
    takeover_at = t0 + timedelta(seconds=notifications.STALE_SENDING_S + 2)

    def stuck_then_fails(self, notification, strip_png):
        # while this send hangs, the periodic check finds the claim stale and a second
        # worker claims the notification (send_notification's own claim)
        with mock.patch.object(notifications, "queue"):
            send_due(takeover_at - timedelta(seconds=1))
        assert Notification.objects.filter(pk=notification.pk, state="pending").update(
            state=NotificationState.SENDING, claimed_at=takeover_at, attempts=F("attempts") + 1
        )
        raise TimeoutError("the mail server never answered")

    with mock.patch.object(notifications.EmailTransport, "send", stuck_then_fails):
        assert send_notification(notification.pk, now=t0) == "retry"
    notification.refresh_from_db()
    # the second worker's claim stands: nobody else can claim it and send it a third time
    assert notification.state == NotificationState.SENDING
    assert notification.claimed_at == takeover_at and notification.attempts == 2
    assert send_notification(notification.pk, now=takeover_at) == "skipped"
    assert NotificationAttempt.objects.filter(notification=notification).count() == 1


def test_a_hung_send_is_stopped_before_the_periodic_check_would_send_it_again():
    """EMAIL_TIMEOUT and the webhook's timeout bound each network operation, not a whole
    send: the task's time limits do, inside STALE_SENDING_S, after which the notification is
    put back to pending and another worker would send it while the hung one still could."""
    from monitoring.tasks import send_notification_task

    soft_s, hard_s = send_notification_task.soft_time_limit, send_notification_task.time_limit
    assert soft_s is not None and hard_s is not None
    assert soft_s < hard_s < notifications.STALE_SENDING_S


def test_a_send_interrupted_by_the_soft_time_limit_is_retried(recording):
    from celery.exceptions import SoftTimeLimitExceeded

    notification = Notification.objects.create(
        alarm=hr_alarm(recording), recipient="nurse@example.org", transport=Transport.EMAIL
    )
    with mock.patch.object(
        notifications.EmailTransport, "send", side_effect=SoftTimeLimitExceeded()
    ):
        assert send_notification(notification.pk) == "retry"
    notification.refresh_from_db()
    assert notification.state == NotificationState.PENDING and notification.claimed_at is None
    assert "SoftTimeLimitExceeded" in notification.last_error


def test_a_patient_name_with_a_line_break_does_not_stop_the_email(recording, locmem):
    # forms keep the line break of a name pasted from another system; in the subject it
    # made every try fail (BadHeaderError) until the message was given up
    Patient.objects.filter(pk=recording.patient_id).update(name="Anna\r\nSmith")
    notification = Notification.objects.create(
        alarm=hr_alarm(recording), recipient="nurse@example.org", transport=Transport.EMAIL
    )
    with mock.patch.object(notifications, "alarm_strip", return_value=None):
        assert send_notification(notification.pk) == "sent"
    [message] = locmem
    assert "Anna Smith (A 1)" in message.subject and "\n" not in message.subject


# --- Flapping technical alarms -------------------------------------------------------------


def leads(recording, off: bool, at: datetime) -> list:
    condition = Condition(AlarmKind.LEADS_OFF, off, message="Leads off on DEV-001")
    return apply_conditions(recording.patient, recording, [condition], at)


def test_a_flapping_technical_alarm_is_sent_once_per_period_and_shown_every_time(
    recording, settings
):
    """A loose electrode flaps every few seconds: one message per TECHNICAL_RENOTIFY_S, not
    one per flap (the review's probe: 20 changes, 10 emails); each flap is still an alarm the
    stations show, naming the one that was sent."""
    settings.TECHNICAL_RENOTIFY_S = 600
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    start = timezone.now()
    raised = []
    for flap in range(10):
        at = start + timedelta(seconds=20 * flap)
        [change] = leads(recording, True, at)
        raised.append(change.alarm)
        leads(recording, False, at + timedelta(seconds=10))
    first, *repeats = raised
    assert Notification.objects.filter(alarm=first).count() == 1
    assert not Notification.objects.filter(alarm__in=repeats).exists()
    assert {alarm.details.get("repeat_of") for alarm in repeats} == {first.pk}
    # the repair leaves the repeats alone: not sent on purpose
    [change] = leads(recording, True, start + timedelta(seconds=300))
    assert notifications.repair_unnotified_alarms() == []
    leads(recording, False, start + timedelta(seconds=310))

    # a period after the one sent, the next is sent again (counted from it, not the repeats)
    [change] = leads(recording, True, start + timedelta(seconds=601))
    assert "repeat_of" not in change.alarm.details
    assert Notification.objects.filter(alarm=change.alarm).count() == 1


def test_a_physiological_alarm_is_sent_every_time_and_other_kinds_count_apart(recording):
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    start = timezone.now()
    sent = []
    for run in range(3):
        [change] = vt(recording, True, start + timedelta(seconds=30 * run))
        sent.append(change.alarm)
        vt(recording, False, start + timedelta(seconds=30 * run + 10))
    [leads_off] = leads(recording, True, start + timedelta(seconds=100))
    assert Notification.objects.filter(alarm__in=[*sent, leads_off.alarm]).count() == 4


def test_a_repeat_still_open_after_its_period_is_sent_and_an_acknowledged_alarm_is_not(
    recording, settings
):
    """A loose electrode fixed, then off again for hours: the repeat is held back only while
    the alarm it repeats is recent, then the nurse hears of it. An alarm someone has
    acknowledged needs nobody told."""
    settings.TECHNICAL_RENOTIFY_S = 600
    AlarmRecipient.objects.create(patient=recording.patient, address="nurse@example.org")
    start = timezone.now() - timedelta(seconds=100)
    leads(recording, True, start)
    leads(recording, False, start + timedelta(seconds=30))
    [repeat] = leads(recording, True, start + timedelta(seconds=60))  # and it stays off
    assert "repeat_of" in repeat.alarm.details
    assert notifications.repair_unnotified_alarms() == []  # 40 s old: its period runs
    Alarm.objects.filter(pk=repeat.alarm.pk).update(
        raised_at=timezone.now() - timedelta(seconds=601)
    )
    assert notifications.repair_unnotified_alarms() == [repeat.alarm.pk]
    assert Notification.objects.filter(alarm=repeat.alarm, escalation=False).count() == 1

    acknowledged = Alarm.objects.create(
        patient=recording.patient,
        kind=AlarmKind.PAUSE,
        priority="critical",
        state="acknowledged",
        acknowledged_at=timezone.now(),
    )
    assert notifications.repair_unnotified_alarms() == []
    assert not Notification.objects.filter(alarm=acknowledged).exists()


@pytest.mark.django_db(transaction=True)
def test_two_checks_claiming_one_escalation_at_once_claim_it_once():
    """On PostgreSQL a claim that waited on another's lock must see that claim: an UPDATE that
    joins another table is run by Django as "WHERE id IN (subquery)", which PostgreSQL does
    not re-check after the wait, so both claimed (the review's two-connection probe)."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite runs one writer at a time)")
    patient = Patient.objects.create(mrn="RACE-1", name="Race")
    chief(patient)
    raised_at = timezone.now() - timedelta(seconds=600)
    alarm = Alarm.objects.create(patient=patient, kind=AlarmKind.VT, priority="critical")
    Alarm.objects.filter(pk=alarm.pk).update(raised_at=raised_at)
    first_holds_its_claim = threading.Event()
    second_waits = threading.Event()
    claimed = {}

    def slow_schedule(alarm, escalation=False):
        if not first_holds_its_claim.is_set():  # the first check: hold its lock
            first_holds_its_claim.set()
            assert second_waits.wait(10)
        return []

    def check(name: str) -> None:
        try:
            claimed[name] = escalate_unacknowledged(timezone.now())
        finally:
            connection.close()

    with mock.patch.object(notifications, "schedule_notifications", slow_schedule):
        first = threading.Thread(target=check, args=("first",))
        first.start()
        assert first_holds_its_claim.wait(10)
        second = threading.Thread(target=check, args=("second",))
        second.start()
        # the second claim is really waiting on the first's lock: a race, not a sequence
        deadline = time.monotonic() + 10
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the second claim never waited on the first")
        second_waits.set()
        first.join(20)
        second.join(20)
    assert claimed == {"first": [alarm.pk], "second": []}
