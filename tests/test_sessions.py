"""Sessions end after SESSION_IDLE_S without activity (monitoring/sessions.py); a signed-in
request, and an open live view or central station at its access recheck, renew them once less
than half of the age is left.

Time passes by moving a session row's expiry back (what the clock would do), with a small age
(SESSION_COOKIE_AGE, which SESSION_IDLE_S sets): no test sleeps.
"""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from monitoring import consumers
from monitoring.consumers import CLOSE_UNAUTHENTICATED
from monitoring.sessions import SessionStore
from tests.test_live import RECEIVE_TIMEOUT_S, close_code, connect, drain

pytestmark = pytest.mark.django_db(transaction=True)

AGE_S = 600


@pytest.fixture(autouse=True)
def small_age(settings):
    settings.SESSION_COOKIE_AGE = AGE_S


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def session_key(client: Client) -> str:
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def expires_in_s(key: str) -> float:
    """Seconds the session row has left (negative: expired)."""
    expire_date = Session.objects.get(session_key=key).expire_date
    return (expire_date - timezone.now()).total_seconds()


def time_passes(key: str, seconds: float) -> None:
    """As if ``seconds`` went by with no activity: the row's expiry comes that much closer."""
    Session.objects.filter(session_key=key).update(
        expire_date=F("expire_date") - timedelta(seconds=seconds)
    )


def test_the_default_is_12_hours_in_a_browser_session_cookie():
    # (SESSION_COOKIE_AGE follows SESSION_IDLE_S: tests/test_settings.py; here it is AGE_S)
    assert django_settings.SESSION_IDLE_S == 43200
    assert django_settings.SESSION_ENGINE == "monitoring.sessions"
    # the row decides; a cookie with a Max-Age would outlive or undercut it
    assert django_settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True


def test_a_login_lasts_the_idle_age_and_then_ends(clinician):
    client = Client()
    response = client.post(
        reverse("login"), {"username": "clinician", "password": "pw-clinician-1"}
    )
    assert response.status_code == 302
    cookie = response.cookies[django_settings.SESSION_COOKIE_NAME]
    assert cookie["max-age"] == "" and cookie["expires"] == ""  # until the browser closes
    key = cookie.value
    assert AGE_S - 5 < expires_in_s(key) <= AGE_S
    assert client.get(reverse("home")).status_code == 200

    time_passes(key, AGE_S + 1)  # idle for the whole age
    response = client.get(reverse("home"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_a_request_renews_a_session_with_less_than_half_its_age_left(clinician):
    client = signed_in(clinician)
    key = session_key(client)
    # active now and then: each request in the second half of the age renews it, so the login
    # outlives its first age by far
    for _ in range(3):
        time_passes(key, AGE_S * 0.7)
        assert client.get(reverse("home")).status_code == 200
        assert AGE_S - 5 < expires_in_s(key) <= AGE_S
    # ... until the user is idle for the whole age
    time_passes(key, AGE_S + 1)
    assert client.get(reverse("home")).status_code == 302


def test_a_request_with_more_than_half_left_writes_nothing(clinician):
    """The cost of the sliding expiry: no write on most requests (SESSION_SAVE_EVERY_REQUEST
    would rewrite the row and send a cookie on every one)."""
    client = signed_in(clinician)
    key = session_key(client)
    time_passes(key, AGE_S * 0.3)
    before = Session.objects.get(session_key=key).expire_date
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("home"))
    assert response.status_code == 200
    assert Session.objects.get(session_key=key).expire_date == before
    writes = [query["sql"] for query in queries if not query["sql"].startswith("SELECT")]
    assert not [sql for sql in writes if "django_session" in sql]
    assert django_settings.SESSION_COOKIE_NAME not in response.cookies


def test_a_renewal_moves_the_expiry_alone():
    """A socket's recheck reads the session, then renews it: what a request wrote in between
    must stay (a renewal that saved the session it had read would write it back without)."""
    store = SessionStore()
    store["user"] = "clinician"
    store.save()
    time_passes(store.session_key, AGE_S * 0.7)
    recheck = SessionStore(store.session_key)
    assert recheck["user"] == "clinician"  # read, as user_now reads it
    request = SessionStore(store.session_key)
    request["note"] = "kept"
    request.save()
    assert recheck.renew_if_due()
    assert SessionStore(store.session_key).load() == {"user": "clinician", "note": "kept"}
    assert AGE_S - 5 < expires_in_s(store.session_key) <= AGE_S


def test_a_renewal_never_brings_back_a_session_that_ended():
    store = SessionStore()
    store["anything"] = 1
    store.save()
    time_passes(store.session_key, AGE_S + 1)
    store.stored_expire_date = timezone.now() - timedelta(seconds=1)
    assert store.renewal_due()
    assert store.renew_expiry() is False
    assert expires_in_s(store.session_key) < 0


# --- Open live pages ---------------------------------------------------------------------


def new_session() -> str:
    store = SessionStore()
    store["anything"] = 1
    store.save()
    return store.session_key


def test_the_periodic_cleanup_deletes_expired_sessions_and_keeps_live_ones():
    from monitoring.tasks import clear_expired_sessions_task

    live, nearly_idle, expired = new_session(), new_session(), new_session()
    time_passes(nearly_idle, AGE_S - 30)
    time_passes(expired, AGE_S + 1)
    with CaptureQueriesContext(connection) as queries:
        clear_expired_sessions_task()
    remaining = set(Session.objects.values_list("session_key", flat=True))
    assert remaining == {live, nearly_idle}
    # bounded work however many rows expired: one DELETE on the indexed expire_date
    statements = [query["sql"].split()[0] for query in queries]
    assert [sql for sql in statements if sql not in ("BEGIN", "COMMIT")] == ["DELETE"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path, renews",
    [("patient", True), ("station", True), ("status", False)],
)
async def test_an_open_live_page_renews_its_session(clinician, patient, path, renews, monkeypatch):
    """The live view and the station renew at their recheck, so a wall display never signs
    itself out; the top bar's status socket (on every page) does not."""
    client = await database_sync_to_async(signed_in)(clinician)
    key = session_key(client)
    session = await database_sync_to_async(lambda: client.session)()
    address = {
        "patient": f"/ws/patients/{patient.pk}/",
        "station": "/ws/station/",
        "status": "/ws/status/",
    }[path]
    socket, connected, _ = await connect(address, clinician, session=session)
    assert connected
    await drain(socket)
    monkeypatch.setattr(consumers, "LIVE_RECHECK_S", 0.0)

    # more than half left: the recheck passes and writes nothing
    await database_sync_to_async(time_passes)(key, AGE_S * 0.3)
    before = await database_sync_to_async(expires_in_s)(key)
    await socket.send_json_to({"type": "ping", "id": 1})
    assert await socket.receive_json_from(timeout=RECEIVE_TIMEOUT_S) == {"type": "pong", "id": 1}
    assert await database_sync_to_async(expires_in_s)(key) <= before

    # less than half left, no request: the page's ping renews it (or not)
    await database_sync_to_async(time_passes)(key, AGE_S * 0.4)
    await socket.send_json_to({"type": "ping", "id": 2})
    assert await socket.receive_json_from(timeout=RECEIVE_TIMEOUT_S) == {"type": "pong", "id": 2}
    left_s = await database_sync_to_async(expires_in_s)(key)
    if renews:
        assert AGE_S - 5 < left_s <= AGE_S
    else:
        assert left_s < AGE_S * 0.31
    await socket.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["patient", "station"])
async def test_a_session_that_expired_idle_closes_the_socket(clinician, patient, path, monkeypatch):
    """A page whose connection was lost for the whole age (so no renewal) comes back to a
    session that ended: the socket closes with 4401, and the session stays ended."""
    client = await database_sync_to_async(signed_in)(clinician)
    key = session_key(client)
    session = await database_sync_to_async(lambda: client.session)()
    address = f"/ws/patients/{patient.pk}/" if path == "patient" else "/ws/station/"
    socket, connected, _ = await connect(address, clinician, session=session)
    assert connected
    await drain(socket)
    monkeypatch.setattr(consumers, "LIVE_RECHECK_S", 0.0)
    await database_sync_to_async(time_passes)(key, AGE_S + 1)
    await socket.send_json_to({"type": "ping", "id": 1})
    assert await close_code(socket) == CLOSE_UNAUTHENTICATED
    assert await database_sync_to_async(expires_in_s)(key) < 0
    await socket.disconnect()
