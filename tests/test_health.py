import pytest
from django.db import connection
from django.test import override_settings

import inference
from monitoring import health
from monitoring.health import redacted

pytestmark = pytest.mark.django_db

CLOSED_REDIS_URL = "redis://:s3cret@127.0.0.1:1/0"  # nothing listens on port 1


def test_it_is_public_and_ok_when_every_part_answers(client, settings):
    response = client.get("/health")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert set(body["checks"]) == {"database", "broker", "channel_layer", "models"}
    assert body["checks"]["database"]["vendor"] == connection.vendor
    expected_broker = "redis" if settings.REDIS_URL else "eager"
    assert body["checks"]["broker"]["mode"] == expected_broker
    shipped = [f"{card['name']}@{card['version']}" for card in inference.list_models()]
    assert shipped, "the repository ships at least one model"
    assert body["checks"]["models"]["loaded"] == shipped
    assert response["Cache-Control"].startswith("max-age=0")


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
    assert public.json()["checks"]["broker"] == {"ok": False, "mode": "redis"}
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
    assert response.json()["checks"]["database"] == {"ok": False, "vendor": "postgresql"}
