"""Websocket security: which pages may open a socket (cardiospike/asgi.py,
``SameOriginWebsocket``), and what a hostile or broken frame does to a consumer
(monitoring/consumers.py: ``MAX_FRAME_BYTES``, groups left however a consumer ends).

The sockets here go through the whole websocket application, with the session cookie a browser
would send, as daphne hands them over.
"""

import logging

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.middleware.csrf import CsrfViewMiddleware
from django.test import Client, RequestFactory

from cardiospike.asgi import application, handshake_request, origin_allowed
from monitoring import consumers, live
from monitoring.consumers import CLOSE_TOO_BIG, MAX_FRAME_BYTES, PatientLiveConsumer

pytestmark = pytest.mark.django_db(transaction=True)

RECEIVE_TIMEOUT_S = 5.0
HOST = "localhost:8000"


def logged_in_cookie(user) -> str:
    """A real session of ``user``: the cookie value a browser would send."""
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


async def open_socket(path, origin, cookie, host=HOST, headers=(), scheme=None):
    """A handshake as a browser sends it: Host, Origin (None: none) and the session cookie."""
    sent = [(b"host", host.encode())]
    if origin is not None:
        sent.append((b"origin", origin.encode()))
    if cookie is not None:
        sent.append((b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    sent += [(name.encode(), value.encode()) for name, value in headers]
    communicator = WebsocketCommunicator(application, path, headers=sent)
    if scheme is not None:
        communicator.scope["scheme"] = scheme
    connected, _ = await communicator.connect()
    return communicator, connected


async def drain(communicator, quiet_s: float = 0.3) -> list[dict]:
    """Every message until none arrives for ``quiet_s``."""
    messages = []
    while not await communicator.receive_nothing(timeout=quiet_s):
        messages.append(await communicator.receive_json_from())
    return messages


async def close_code(communicator) -> int | None:
    """The code of the next close (messages before it skipped)."""
    while True:
        output = await communicator.receive_output(timeout=RECEIVE_TIMEOUT_S)
        if output["type"] == "websocket.close":
            return output.get("code")


@pytest.fixture(autouse=True)
def _in_memory_layer_for_handshakes(settings):
    """These tests check who may open a socket, not the channel layer: they run on the
    in-memory one. On Redis (a run with REDIS_URL) the refused sockets' consumers are
    cancelled at the test loop's end in channels_redis's blocking receive, and once in a full
    suite that cancellation hung the teardown on a Redis read until the 300-s pytest timeout;
    the Redis layer is exercised through real daphne processes in test_daphne.py,
    test_live_socket_browser.py and test_streaming_faults.py."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def in_memory_layer(settings):
    """The in-memory channel layer (even where the run has REDIS_URL), whose ``groups`` show
    which channels each group holds."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return get_channel_layer()


def members(layer, group: str) -> set[str]:
    return set(layer.groups.get(group, {}))


# --- Origin --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_page_on_another_port_of_the_same_host_gets_no_socket(clinician, patient, caplog):
    """http://localhost:31337 is the same site as http://localhost:8000 (the Lax session cookie
    goes along) but another origin: it got the patient's hello before."""
    cookie = await database_sync_to_async(logged_in_cookie)(clinician)
    path = f"/ws/patients/{patient.pk}/"
    with caplog.at_level(logging.WARNING, logger="cardiospike.asgi"):
        for origin in ("http://localhost:31337", "http://localhost", "https://localhost:8000"):
            socket, connected = await open_socket(path, origin, cookie)
            assert not connected, origin
    assert "origin 'http://localhost:31337'" in caplog.text

    socket, connected = await open_socket(path, f"http://{HOST}", cookie)
    assert connected
    hello = await socket.receive_json_from(timeout=RECEIVE_TIMEOUT_S)
    assert hello["type"] == "hello" and hello["patient"]["mrn"] == patient.mrn
    await socket.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("origin", [None, "null", "http://evil.example.com"])
async def test_no_origin_a_null_one_or_a_foreign_one_gets_no_socket(clinician, origin):
    cookie = await database_sync_to_async(logged_in_cookie)(clinician)
    _, connected = await open_socket("/ws/status/", origin, cookie)
    assert not connected


@pytest.mark.asyncio
async def test_a_wildcard_allowed_host_admits_no_other_subdomain(clinician, settings):
    settings.ALLOWED_HOSTS = [".example.org"]
    cookie = await database_sync_to_async(logged_in_cookie)(clinician)
    host = "monitor.example.org"
    for origin in ("http://uploads.example.org:8080", "http://uploads.example.org"):
        _, connected = await open_socket("/ws/status/", origin, cookie, host=host)
        assert not connected, origin
    socket, connected = await open_socket("/ws/status/", f"http://{host}", cookie, host=host)
    assert connected
    await socket.disconnect()
    # the Host itself must be allowed, as for any page (a rebound DNS name is not)
    _, connected = await open_socket(
        "/ws/status/", "http://rebound.test", cookie, host="rebound.test"
    )
    assert not connected


@pytest.mark.asyncio
async def test_a_csrf_trusted_origin_is_admitted_exactly_or_by_its_wildcard(clinician, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://monitor.example.org", "https://*.wards.example.org"]
    cookie = await database_sync_to_async(logged_in_cookie)(clinician)
    for origin, admitted in [
        ("https://monitor.example.org", True),
        ("https://icu.wards.example.org", True),
        ("https://wards.example.org", True),
        ("http://monitor.example.org", False),  # another scheme
        ("https://monitor.example.org:8443", False),  # another port
        ("http://icu.wards.example.org", False),
        ("https://icu.wards.example.org:8443", False),
        ("https://uploads.example.org", False),
    ]:
        socket, connected = await open_socket("/ws/status/", origin, cookie)
        assert connected is admitted, origin
        if connected:
            await socket.disconnect()


@pytest.mark.asyncio
async def test_https_behind_the_proxy_is_the_origin_when_django_trusts_the_proxy(
    clinician, settings
):
    """Behind a TLS proxy daphne sees plain ws (its websocket scope has no scheme at all):
    X-Forwarded-Proto says https once TRUST_X_FORWARDED_PROTO sets SECURE_PROXY_SSL_HEADER,
    and X-Forwarded-Host names the host once USE_X_FORWARDED_HOST is on, as for pages."""
    settings.ALLOWED_HOSTS = ["monitor.example.org"]
    cookie = await database_sync_to_async(logged_in_cookie)(clinician)
    origin = "https://monitor.example.org"
    host = "monitor.example.org"
    forwarded = [("x-forwarded-proto", "https")]

    _, connected = await open_socket("/ws/status/", origin, cookie, host=host, headers=forwarded)
    assert not connected  # the proxy's header is not trusted yet: the socket is http
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    socket, connected = await open_socket(
        "/ws/status/", origin, cookie, host=host, headers=forwarded
    )
    assert connected
    await socket.disconnect()
    # now the plain-http origin is the wrong one
    _, connected = await open_socket(
        "/ws/status/", f"http://{host}", cookie, host=host, headers=forwarded
    )
    assert not connected

    proxied = [*forwarded, ("x-forwarded-host", host)]
    _, connected = await open_socket("/ws/status/", origin, cookie, host=HOST, headers=proxied)
    assert not connected  # Host is localhost:8000 until USE_X_FORWARDED_HOST
    settings.USE_X_FORWARDED_HOST = True
    socket, connected = await open_socket("/ws/status/", origin, cookie, host=HOST, headers=proxied)
    assert connected
    await socket.disconnect()


@pytest.mark.asyncio
async def test_a_wss_scope_has_the_https_origin(clinician):
    """An ASGI server that terminates TLS itself says wss in the scope."""
    cookie = await database_sync_to_async(logged_in_cookie)(clinician)
    socket, connected = await open_socket("/ws/status/", f"https://{HOST}", cookie, scheme="wss")
    assert connected
    await socket.disconnect()
    _, connected = await open_socket("/ws/status/", f"http://{HOST}", cookie, scheme="wss")
    assert not connected


CASES = [
    # (settings, Host, Origin, more headers)
    ({}, HOST, f"http://{HOST}", {}),
    ({}, HOST, "http://localhost:31337", {}),
    ({}, HOST, f"https://{HOST}", {}),
    ({}, HOST, "http://LOCALHOST:8000", {}),
    ({}, "evil.test", "http://evil.test", {}),
    ({"ALLOWED_HOSTS": [".example.org"]}, "a.example.org", "http://b.example.org", {}),
    ({"ALLOWED_HOSTS": [".example.org"]}, "a.example.org", "http://a.example.org", {}),
    ({"CSRF_TRUSTED_ORIGINS": ["https://*.example.org"]}, HOST, "https://x.example.org", {}),
    ({"CSRF_TRUSTED_ORIGINS": ["https://*.example.org"]}, HOST, "https://x.example.org:1", {}),
    ({"CSRF_TRUSTED_ORIGINS": ["https://*.example.org"]}, HOST, "http://x.example.org", {}),
    ({"CSRF_TRUSTED_ORIGINS": ["https://m.example.org"]}, HOST, "https://m.example.org", {}),
    (
        {"SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https")},
        HOST,
        f"https://{HOST}",
        {"x-forwarded-proto": "https"},
    ),
    (
        {"SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https")},
        HOST,
        f"http://{HOST}",
        {"x-forwarded-proto": "https"},
    ),
    ({}, HOST, f"https://{HOST}", {"x-forwarded-proto": "https"}),
    (
        {"USE_X_FORWARDED_HOST": True},
        HOST,
        "http://127.0.0.1",
        {"x-forwarded-host": "127.0.0.1"},
    ),
]


@pytest.mark.parametrize(("overrides", "host", "origin", "headers"), CASES)
def test_the_websocket_admits_exactly_the_origins_djangos_csrf_check_admits(
    settings, overrides, host, origin, headers
):
    for name, value in overrides.items():
        setattr(settings, name, value)
    # Django's own decision for a POST (CsrfViewMiddleware's origin step)
    meta = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    post = RequestFactory().post("/logout/", HTTP_HOST=host, HTTP_ORIGIN=origin, **meta)
    django_says = CsrfViewMiddleware(lambda request: None)._origin_verified(post)
    scope = {
        "type": "websocket",
        "path": "/ws/status/",
        "headers": [
            (b"host", host.encode()),
            (b"origin", origin.encode()),
            *[(name.encode(), value.encode()) for name, value in headers.items()],
        ],
    }
    assert origin_allowed(handshake_request(scope)) is django_says


# --- Frames and groups -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_deeply_nested_frame_gets_an_error_and_the_socket_goes_on(clinician, patient):
    """Under the size limit, 1000 brackets are still too deep for the JSON parser
    (RecursionError, which killed the consumer)."""
    cookie = await database_sync_to_async(logged_in_cookie)(clinician)
    frame = "[" * 1000
    assert len(frame) <= MAX_FRAME_BYTES
    for path in ("/ws/status/", f"/ws/patients/{patient.pk}/", "/ws/station/"):
        socket, connected = await open_socket(path, f"http://{HOST}", cookie)
        assert connected
        await drain(socket)
        await socket.send_to(text_data=frame)
        assert await socket.receive_json_from(timeout=RECEIVE_TIMEOUT_S) == {
            "type": "error",
            "error": "malformed JSON: nested too deep",
        }
        await socket.send_json_to({"type": "ping", "id": 3})
        assert await socket.receive_json_from(timeout=RECEIVE_TIMEOUT_S) == {
            "type": "pong",
            "id": 3,
        }
        await socket.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["nested text", "long text", "binary"])
async def test_a_frame_over_the_limit_closes_the_socket_and_leaves_every_group(
    clinician, patient, other_patient, in_memory_layer, kind, caplog
):
    await database_sync_to_async(other_patient.clinicians.add)(clinician)
    groups = [live.patient_group(patient.pk), live.patient_group(other_patient.pk)]
    cookie = await database_sync_to_async(logged_in_cookie)(clinician)
    station, connected = await open_socket("/ws/station/", f"http://{HOST}", cookie)
    assert connected
    await drain(station)
    assert all(len(members(in_memory_layer, group)) == 1 for group in groups)

    frame = {
        "nested text": "[" * 1100,  # the review's frame, which killed the consumer
        "long text": '{"type": "ping", "id": "%s"}' % ("\u00e9" * 500),  # 1,026 bytes in UTF-8
        "binary": b"\0" * (MAX_FRAME_BYTES + 1),
    }[kind]
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
    with caplog.at_level(logging.WARNING, logger="monitoring.consumers"):
        if isinstance(frame, bytes):
            await station.send_to(bytes_data=frame)
        else:
            await station.send_to(text_data=frame)
        assert await close_code(station) == CLOSE_TOO_BIG
    assert f"a {size}-byte frame, over MAX_FRAME_BYTES ({MAX_FRAME_BYTES})" in caplog.text
    assert all(members(in_memory_layer, group) == set() for group in groups)
    await station.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["patient", "station"])
async def test_a_consumer_killed_by_an_exception_leaves_its_groups(
    clinician, patient, in_memory_layer, path, monkeypatch
):
    """Channels leaves groups only on a clean disconnect: a consumer that died stayed in every
    patient's group for a day, and every live message was queued for it."""
    group = live.patient_group(patient.pk)
    cookie = await database_sync_to_async(logged_in_cookie)(clinician)
    address = f"/ws/patients/{patient.pk}/" if path == "patient" else "/ws/station/"
    socket, connected = await open_socket(address, f"http://{HOST}", cookie)
    assert connected
    await drain(socket)
    assert len(members(in_memory_layer, group)) == 1

    async def broken(self, event):
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(consumers.StationConsumer, "live_status", broken)
    monkeypatch.setattr(PatientLiveConsumer, "live_status", broken)
    message = {"type": "status", "hr_bpm": 70.0, "rhythm": None, "alarm": None}
    await in_memory_layer.group_send(
        group, {"type": "live.status", "patient": patient.pk, "message": message}
    )
    with pytest.raises(RuntimeError, match="a bug in a handler"):
        await socket.receive_output(timeout=RECEIVE_TIMEOUT_S)
    assert members(in_memory_layer, group) == set()
    # nothing more is queued for the dead socket
    await in_memory_layer.group_send(
        group, {"type": "live.status", "patient": patient.pk, "message": message}
    )
    assert sum(queue.qsize() for queue in in_memory_layer.channels.values()) == 0


@pytest.mark.asyncio
async def test_a_closed_socket_leaves_its_groups(clinician, patient, in_memory_layer):
    group = live.patient_group(patient.pk)
    cookie = await database_sync_to_async(logged_in_cookie)(clinician)
    socket, connected = await open_socket(f"/ws/patients/{patient.pk}/", f"http://{HOST}", cookie)
    assert connected
    await drain(socket)
    assert len(members(in_memory_layer, group)) == 1
    await socket.disconnect()
    assert members(in_memory_layer, group) == set()
