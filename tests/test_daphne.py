"""A real daphne process serving HTTP and websockets on the test database."""

import asyncio
import json
import urllib.error
import urllib.request

import pytest
import websockets
import websockets.exceptions  # not loaded by `import websockets` alone

from tests.conftest import free_port, start_process, stop_process, wait_until

pytestmark = pytest.mark.services


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local server)
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def daphne_process(module_service_env, tmp_path_factory):
    """One daphne for all the tests of a module: starting one (the project's imports) takes
    seconds, most of a test's own time. The database is emptied under it between tests (ids
    are not reused) and each test logs in anew; what daphne keeps in memory (its cache when
    there is no Redis: throttle and failed-login counts) outlives a test, so a test that
    relies on it being empty needs a daphne of its own. A module that needs another
    environment overrides ``module_service_env``. Its log: ``daphne_process.log_path``.

    Not waited for here: ``daphne_server`` waits, so that a test's fixtures listed before it
    (a browser) start while daphne does."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("daphne") / "daphne.log"
    process = start_process(
        ["daphne", "-b", "127.0.0.1", "-p", str(port), "cardiospike.asgi:application"],
        module_service_env,
        log_path,
    )
    process.base = f"127.0.0.1:{port}"
    process.log_path = log_path
    yield process
    # Daphne waits on SIGTERM for its open connections' applications to close (a browser's
    # websocket holds one open): 5-11 s per module, for nothing the tests read. What daphne
    # did is in the database and its log already.
    stop_process(process, grace_s=2)


@pytest.fixture
def daphne_server(daphne_process, transactional_db):
    """``host:port`` of the module's daphne, serving this test's (committed) data."""
    wait_until(
        lambda: http_ok(f"http://{daphne_process.base}/health"),
        timeout_s=60,
        what="daphne to serve /health",
        process=daphne_process,
        log_path=daphne_process.log_path,
    )
    return daphne_process.base


async def open_status_socket(base: str, cookie: str | None, origin: str | None = None):
    headers = {"Cookie": cookie} if cookie else {}
    return await websockets.connect(
        f"ws://{base}/ws/status/", origin=origin or f"http://{base}", additional_headers=headers
    )


def test_it_serves_health_and_authenticated_websockets(daphne_server, client, clinician):
    from django.utils import timezone

    from monitoring.models import Heartbeat

    # as if the alarm check had just run (no beat and no in-server loop run here, and /health
    # says "degraded" when the check has not run)
    Heartbeat.objects.create(
        name="monitoring.tasks.check_devices_task", completed_at=timezone.now()
    )

    def health_status() -> str:
        with urllib.request.urlopen(f"http://{daphne_server}/health", timeout=5) as response:  # noqa: S310
            assert response.status == 200
            return json.load(response)["status"]

    # the public answer is reused for up to PUBLIC_REPORT_MAX_AGE_S (1 s): the fixture's own
    # poll, before the heartbeat above, may still be the one served
    wait_until(lambda: health_status() == "ok", timeout_s=5, what="/health to say ok")

    client.force_login(clinician)  # a real session row, which daphne reads from the database
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    async def talk():
        async with await open_status_socket(daphne_server, cookie) as socket:
            hello = json.loads(await asyncio.wait_for(socket.recv(), 10))
            await socket.send(json.dumps({"type": "ping", "id": 1}))
            pong = json.loads(await asyncio.wait_for(socket.recv(), 10))
            return hello, pong

    hello, pong = asyncio.run(talk())
    assert hello == {"type": "hello", "user": "clinician"}
    assert pong == {"type": "pong", "id": 1}


def test_it_refuses_an_anonymous_websocket_over_the_network(daphne_server):
    async def attempt(cookie):
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await open_status_socket(daphne_server, cookie)
        return refused.value.response.status_code

    assert asyncio.run(attempt(None)) == 403
    assert asyncio.run(attempt("sessionid=forged-session-key")) == 403


def test_it_refuses_a_page_of_another_port_with_a_real_session(daphne_server, client, clinician):
    """Another port on the same host is the same site (the session cookie goes along) but
    another origin: refused as Django's CSRF check would refuse its POST."""
    client.force_login(clinician)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    host, port = daphne_server.rsplit(":", 1)

    async def attempt(origin):
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await open_status_socket(daphne_server, cookie, origin)
        return refused.value.response.status_code

    assert asyncio.run(attempt(f"http://{host}:{int(port) + 1}")) == 403
    assert asyncio.run(attempt(f"https://{daphne_server}")) == 403


def test_it_serves_predict_through_the_asgi_handler(daphne_server, clinician):
    from monitoring.models import ApiToken

    _, key = ApiToken.issue(clinician)

    def post(body: bytes) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"http://{daphne_server}/predict",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Token {key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    for _ in range(3):  # the request thread and its database connection are reused
        status, body = post(json.dumps({"ecg": [0.0] * 499 + [1.0]}).encode())
        assert status == 200 and body["prediction"] in ("Normal", "Arrhythmia")
    status, body = post(b'{"ecg": [1, 2')
    assert status == 400 and "malformed JSON" in body["detail"]
