from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

import inference
from monitoring import health
from monitoring.health import redacted
from monitoring.models import (
    Alarm,
    Heartbeat,
    Notification,
    NotificationState,
)

pytestmark = pytest.mark.django_db

CLOSED_REDIS_URL = "redis://:s3cret@127.0.0.1:1/0"  # nothing listens on port 1
ALARM_CHECK = "monitoring.tasks.check_devices_task"


@pytest.fixture
def alarm_check_ran():
    """The periodic alarm check completed a moment ago."""
    return Heartbeat.objects.create(name=ALARM_CHECK, completed_at=timezone.now())


def test_it_is_public_and_ok_when_every_part_answers(client, settings, alarm_check_ran):
    response = client.get("/health")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == [] and body["degraded"] == []
    assert set(body["checks"]) == {
        "database",
        "broker",
        "channel_layer",
        "models",
        "periodic",
        "notifications",
    }
    # whether each check passed; which services and model versions run is for staff
    assert all(check == {"ok": True} for check in body["checks"].values()), body["checks"]
    assert response["Cache-Control"].startswith("max-age=0")


def test_staff_see_what_runs(client, settings, staff_user, alarm_check_ran):
    client.force_login(staff_user)
    body = client.get("/health").json()
    assert body["checks"]["database"]["vendor"] == connection.vendor
    expected_broker = "redis" if settings.REDIS_URL else "eager"
    assert body["checks"]["broker"]["mode"] == expected_broker
    shipped = [f"{card['name']}@{card['version']}" for card in inference.list_models()]
    assert shipped, "the repository ships at least one model"
    assert body["checks"]["models"]["loaded"] == shipped


def test_it_probes_the_real_redis_of_the_test_run(client, staff_user, redis_url):
    client.force_login(staff_user)
    body = client.get("/health").json()
    assert body["checks"]["broker"] == {"ok": True, "mode": "redis", "url": redacted(redis_url)}
    assert body["checks"]["channel_layer"]["backend"] == "RedisChannelLayer"


def test_it_answers_503_naming_redis_when_redis_is_down(client, staff_user, caplog):
    closed_layer = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [CLOSED_REDIS_URL]},
        }
    }
    with override_settings(
        REDIS_URL=CLOSED_REDIS_URL,
        CELERY_BROKER_URL=CLOSED_REDIS_URL,
        CELERY_TASK_ALWAYS_EAGER=False,
        CHANNEL_LAYERS=closed_layer,
    ):
        public = client.get("/health")
        client.force_login(staff_user)
        response = client.get("/health")
    # anyone (a load balancer) learns that Redis is down, not where it is or why
    assert public.status_code == 503
    assert public.json()["failing"] == ["broker", "channel_layer"]
    assert public.json()["checks"]["broker"] == {"ok": False}
    assert "127.0.0.1" not in public.content.decode()
    # staff, and the server log, read the errors
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["failing"] == ["broker", "channel_layer"]
    assert body["checks"]["database"]["ok"] is True
    assert "Redis" in body["checks"]["broker"]["error"]
    assert "127.0.0.1:1" in body["checks"]["broker"]["error"]
    assert "127.0.0.1:1" in body["checks"]["channel_layer"]["error"]
    assert "s3cret" not in response.content.decode()  # the password is never shown
    assert "127.0.0.1:1" in caplog.text and "s3cret" not in caplog.text


def test_it_answers_503_naming_a_broken_model_card(client, staff_user, monkeypatch, tmp_path):
    from inference.registry import list_models

    (tmp_path / "beats.json").write_text('{"name": "beats", "version": "1", "weights": "x.pt"}')
    monkeypatch.setattr("inference.list_models", lambda: list_models(tmp_path))
    client.force_login(staff_user)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["failing"] == ["models"]
    assert "x.pt not found" in response.json()["checks"]["models"]["error"]


def test_it_accepts_only_get(client):
    assert client.post("/health").status_code == 405


def test_it_redacts_passwords_from_service_urls():
    assert redacted("redis://:pw@cache:6380/2") == "redis://cache:6380/2"
    assert redacted("postgres://user:pw@db/cs") == "postgres://db/cs"


def test_a_staff_session_gets_the_public_answer_when_the_database_is_down(
    client, staff_user, monkeypatch
):
    from django.db import OperationalError

    client.force_login(staff_user)

    def database_down(request):
        raise OperationalError("could not connect to server")

    # the session's user is read from the database; the checks find it down too
    monkeypatch.setattr("django.contrib.auth.get_user", database_down)
    monkeypatch.setitem(
        health.CHECKS,
        "database",
        lambda: {"ok": False, "vendor": "postgresql", "error": "database: connection refused"},
    )
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"ok": False}


# --- the alarm path: degraded, not failing ------------------------------------------------


def notification(recording, state=NotificationState.PENDING, due_s_ago=0.0, **fields):
    alarm, _ = Alarm.objects.get_or_create(
        patient=recording.patient,
        kind="VT",
        defaults={"recording": recording, "priority": "critical"},
    )
    return Notification.objects.create(
        alarm=alarm,
        recipient=f"nurse{alarm.notifications.count()}@example.org",
        transport="email",
        state=state,
        next_attempt_at=timezone.now() - timedelta(seconds=due_s_ago),
        **fields,
    )


def staff_health(client, staff_user) -> dict:
    client.force_login(staff_user)
    response = client.get("/health")
    assert response.status_code == 200, response.json()
    return response.json()


def test_an_alarm_check_that_never_ran_degrades_the_status_but_not_the_http_answer(
    client, staff_user
):
    public = client.get("/health")
    # a load balancer keeps the server (200); anyone sees which part, not its details
    assert public.status_code == 200
    assert public.json()["status"] == "degraded"
    assert public.json()["failing"] == [] and public.json()["degraded"] == ["periodic"]
    assert public.json()["checks"]["periodic"] == {"ok": False}
    periodic = staff_health(client, staff_user)["checks"]["periodic"]
    assert periodic["ok"] is False and periodic["last_completed_at"] is None
    assert "never completed" in periodic["error"]


def test_a_stale_heartbeat_degrades_and_a_fresh_one_does_not(client, staff_user, settings):
    settings.ALARM_CHECK_S = 30.0  # late after 3 periods: 90 s
    beat = Heartbeat.objects.create(
        name=ALARM_CHECK, completed_at=timezone.now() - timedelta(seconds=100)
    )
    body = staff_health(client, staff_user)
    assert body["status"] == "degraded" and body["degraded"] == ["periodic"]
    periodic = body["checks"]["periodic"]
    assert periodic["late_after_s"] == 90.0 and periodic["age_s"] >= 100
    assert periodic["last_completed_at"] == beat.completed_at.isoformat()
    assert "last completed 10" in periodic["error"]

    Heartbeat.objects.filter(pk=beat.pk).update(completed_at=timezone.now() - timedelta(seconds=80))
    body = staff_health(client, staff_user)
    assert body["status"] == "ok" and body["checks"]["periodic"]["ok"] is True


@pytest.mark.parametrize("state", [NotificationState.PENDING, NotificationState.SENDING])
def test_a_notification_stuck_past_its_due_time_degrades(
    client, staff_user, recording, alarm_check_ran, state
):
    late_s = health.NOTIFICATION_LATE_S
    notification(recording, state=state, due_s_ago=late_s - 30)  # late, not yet stuck
    notification(recording, due_s_ago=-600)  # a retry due later is not late at all
    notifications = staff_health(client, staff_user)["checks"]["notifications"]
    assert notifications["ok"] is True and notifications["oldest_overdue_s"] >= late_s - 30

    stuck = notification(recording, state=state, due_s_ago=late_s + 60)
    client.logout()
    public = client.get("/health").json()
    assert public["status"] == "degraded" and public["degraded"] == ["notifications"]
    assert public["checks"]["notifications"] == {"ok": False}
    body = staff_health(client, staff_user)
    notifications = body["checks"]["notifications"]
    assert notifications["ok"] is False and notifications["oldest_overdue_s"] >= late_s + 60
    assert notifications["failed_24h"] == 0
    assert "past its due time" in notifications["error"]

    Notification.objects.filter(pk=stuck.pk).update(state=NotificationState.SENT)
    assert staff_health(client, staff_user)["status"] == "ok"


def test_notifications_failed_in_the_last_24_hours_degrade(
    client, staff_user, recording, alarm_check_ran
):
    # a notification given up keeps the time it gave up in next_attempt_at
    notification(recording, state=NotificationState.FAILED, due_s_ago=25 * 3600)
    assert staff_health(client, staff_user)["checks"]["notifications"]["failed_24h"] == 0

    for minutes in (50, 20):
        notification(recording, state=NotificationState.FAILED, due_s_ago=minutes * 60)
    notification(recording, due_s_ago=-60)  # failed once, will try again
    body = staff_health(client, staff_user)
    assert body["status"] == "degraded" and body["degraded"] == ["notifications"]
    notifications = body["checks"]["notifications"]
    assert notifications["failed_24h"] == 2 and notifications["oldest_overdue_s"] == 0.0
    assert "2 notification(s) failed" in notifications["error"]


def test_a_failing_server_part_is_an_error_whatever_the_alarm_path_says(client, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "models", lambda: {"ok": False, "error": "models: x"})
    response = client.get("/health")  # no heartbeat either
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["failing"] == ["models"] and body["degraded"] == ["periodic"]


# --- a flood of anonymous calls -----------------------------------------------------------


@pytest.fixture
def check_calls(monkeypatch) -> list:
    """Every check, counted: the names of the checks run, in order."""
    calls = []
    for checks in (health.CHECKS, health.DELIVERY_CHECKS):
        for name, check in list(checks.items()):

            def counted(name=name, check=check):
                calls.append(name)
                return check()

            monkeypatch.setitem(checks, name, counted)
    return calls


def test_a_flood_of_anonymous_calls_runs_the_checks_once(client, check_calls, alarm_check_ran):
    answers = [client.get("/health") for _ in range(20)]
    assert {response.status_code for response in answers} == {200}
    assert all(response.json() == answers[0].json() for response in answers)
    assert check_calls.count("database") == 1 and check_calls.count("broker") == 1
    assert check_calls.count("channel_layer") == 1


def test_the_public_answer_is_reused_only_for_a_second(client, check_calls, monkeypatch):
    from django.core.cache import cache

    stored = {}

    def remember(key, value, timeout):
        stored[key] = timeout

    monkeypatch.setattr(cache, "set", remember)  # nothing is kept: each call runs them
    client.get("/health")
    client.get("/health")
    assert check_calls.count("database") == 2
    assert stored == {health.PUBLIC_REPORT_CACHE_KEY: health.PUBLIC_REPORT_MAX_AGE_S}
    assert 0 < health.PUBLIC_REPORT_MAX_AGE_S <= 2


def test_staff_read_fresh_figures_every_time(client, staff_user, check_calls, alarm_check_ran):
    client.get("/health")  # an anonymous call: its answer is kept for a second
    client.force_login(staff_user)
    first = client.get("/health").json()
    Heartbeat.objects.filter(name=ALARM_CHECK).delete()  # the alarm check stops
    second = client.get("/health").json()
    assert check_calls.count("database") == 3
    assert first["status"] == "ok" and first["checks"]["database"]["vendor"]
    assert (
        second["status"] == "degraded"
        and "never completed" in (second["checks"]["periodic"]["error"])
    )


def test_a_kept_answer_is_still_the_public_one(client, staff_user, check_calls):
    client.get("/health")  # kept
    client.force_login(staff_user)
    client.get("/health")  # staff: fresh, and not kept for anyone else
    client.logout()
    body = client.get("/health").json()
    assert all(set(check) == {"ok"} for check in body["checks"].values()), body["checks"]
    assert check_calls.count("database") == 2
