"""A stalled browser on a real server (issue 6: "a slow or stalled browser never delays the
others"): daphne on the test database with the Redis channel layer, a device posting chunks in
real time, and two authenticated sockets on the same patient's stream, one of which never
reads. The reading one must get every sample with a p99 latency under 1 s, and /health must
keep answering.

tests/test_live.py checks the channel layer's side of it (a full channel drops its own
messages and never makes the sender wait); this checks the whole path: ingest in daphne's
request threads, the Redis layer, the consumers and daphne's sockets.
"""

import asyncio
import base64
import json
import os
import socket
import time
import uuid

import aiohttp
import numpy as np
import pytest
import websockets

from monitoring.protocol import Chunk, encode_json_chunk
from tests.conftest import require_redis_url
from tests.test_daphne import daphne_process, daphne_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.services

FS_HZ = 250.0
GAIN_ADC_PER_MV = 200.0
CHUNK_S = 0.2  # 50 samples
# 60 chunks in real time: a stalled socket's frames back up from the first one (its receive
# buffer is 4 kB), so a longer feed checks nothing more and costs its length in wall time.
SIGNAL_S = 12.0
CATCH_UP_S = 5.0  # after the last chunk, how long the reading socket may take to get it
HEALTH_EVERY_S = 1.0


@pytest.fixture(scope="module")
def module_service_env(module_service_env):
    """daphne's environment with the Redis of the test run (the channel layer and the broker
    ingest queues analyses to), on a Celery queue of its own that nobody works and that is
    deleted afterwards."""
    import redis

    redis_url = require_redis_url()
    queue = f"test-live-server-{uuid.uuid4().hex[:8]}"
    yield {
        **module_service_env,
        "REDIS_URL": redis_url,
        "CELERY_QUEUE": queue,
        "OMP_NUM_THREADS": "1",
    }
    connection = redis.Redis.from_url(redis_url)
    for key in connection.scan_iter(match=f"{queue}*"):
        connection.delete(key)


def open_stalled_socket(base: str, path: str, cookie: str) -> socket.socket:
    """A websocket that completes the handshake and then never reads, with a small receive
    buffer, so the server's writes to it back up at once."""
    host, port = base.split(":")
    sock = socket.socket()
    # before connect: the window the client advertises is fixed in the handshake
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {base}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://{base}\r\nCookie: {cookie}\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # byte by byte: the handshake only, no frame after it
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def signal_adc() -> np.ndarray:
    """A 1.2-Hz spike train on a slow sine, in ADC units (values that are easy to compare)."""
    t_s = np.arange(round(SIGNAL_S * FS_HZ)) / FS_HZ
    signal_mv = 0.2 * np.sin(2 * np.pi * 0.3 * t_s) + 1.0 * (np.mod(t_s, 1 / 1.2) < 0.04)
    return np.round(signal_mv * GAIN_ADC_PER_MV).astype(np.int16)


async def stream_and_watch(base: str, cookie: str, patient_id: int, token: str) -> dict:
    """Post the signal in real time while one socket reads and /health is polled."""
    adc = signal_adc()
    chunk_n = round(CHUNK_S * FS_HZ)
    sent_at: dict[int, float] = {}  # first_sample -> monotonic time its POST started
    received: list[tuple[float, dict]] = []
    health_s: list[float] = []
    done = asyncio.Event()

    reader = await websockets.connect(
        f"ws://{base}/ws/patients/{patient_id}/?since_s=0",
        origin=f"http://{base}",
        additional_headers={"Cookie": cookie},
        max_size=None,
    )

    async def read():
        async for frame in reader:
            received.append((time.monotonic(), json.loads(frame)))

    async def poll_health(http):
        while not done.is_set():
            started = time.monotonic()
            async with http.get(f"http://{base}/health") as response:
                assert response.status == 200
                await response.read()
            health_s.append(time.monotonic() - started)
            await asyncio.sleep(HEALTH_EVERY_S)

    async def post_chunks(http):
        headers = {"Authorization": f"Device {token}", "Content-Type": "application/json"}
        started = time.monotonic()
        for seq, first in enumerate(range(0, len(adc), chunk_n)):
            # real time: chunk ``seq`` leaves when its last sample would have been recorded
            await asyncio.sleep(max(0.0, started + (seq + 1) * CHUNK_S - time.monotonic()))
            chunk = Chunk(
                seq=seq,
                first_sample=first,
                fs_hz=FS_HZ,
                gain_adc_per_mv=GAIN_ADC_PER_MV,
                n_channels=1,
                samples=adc[first : first + chunk_n, None],
                session="stall001",
            )
            sent_at[first] = time.monotonic()
            async with http.post(
                f"http://{base}/api/device/v1/chunks/",
                data=encode_json_chunk(chunk),
                headers=headers,
            ) as response:
                assert response.status in (200, 201), await response.text()

    reading = asyncio.create_task(read())
    async with aiohttp.ClientSession() as http:
        health = asyncio.create_task(poll_health(http))
        await post_chunks(http)
        deadline = time.monotonic() + CATCH_UP_S
        while time.monotonic() < deadline and received_samples(received) < len(adc):
            await asyncio.sleep(0.1)
        done.set()
        await health
    await reader.close()
    await asyncio.wait_for(reading, 10)
    return {"adc": adc, "sent_at": sent_at, "received": received, "health_s": health_s}


def received_samples(received: list[tuple[float, dict]]) -> int:
    return sum(len(m["samples_mv"]) for _, m in received if m["type"] == "samples")


def test_a_stalled_browser_delays_nobody_on_a_real_server(
    daphne_server,  # noqa: F811
    client,
    clinician,
    patient,
    device_token,
):
    client.force_login(clinician)  # a real session row, which daphne reads from the database
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    stalled = open_stalled_socket(daphne_server, f"/ws/patients/{patient.pk}/?since_s=0", cookie)
    try:
        result = asyncio.run(stream_and_watch(daphne_server, cookie, patient.pk, device_token))
        # the stalled socket was sent to (its hello and live frames wait unread), not dropped
        pending = stalled.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        assert len(pending) > 1000
    finally:
        stalled.close()

    adc, sent_at, received = result["adc"], result["sent_at"], result["received"]
    samples = [(at, m) for at, m in received if m["type"] == "samples"]
    # every sample, once, with its value
    values = {}
    for _, message in samples:
        for offset, value in enumerate(message["samples_mv"]):
            assert values.setdefault(message["first_sample"] + offset, value) == value
    assert sorted(values) == list(range(len(adc)))
    got_mv = np.array([values[i] for i in range(len(adc))])
    assert np.max(np.abs(got_mv - adc / GAIN_ADC_PER_MV)) < 1e-3
    # latency from the device's POST to the reading browser
    latencies_s = np.array([at - sent_at[m["first_sample"]] for at, m in samples])
    assert len(latencies_s) == len(sent_at)
    p99_s = float(np.percentile(latencies_s, 99))
    print(  # noqa: T201 (the figures, for the record)
        f"{len(latencies_s)} chunks: latency p50 {np.median(latencies_s):.3f} s, "
        f"p99 {p99_s:.3f} s; /health max {max(result['health_s']):.3f} s"
    )
    assert p99_s < 1.0
    # the server stayed responsive throughout
    assert len(result["health_s"]) >= SIGNAL_S / HEALTH_EVERY_S / 2
    assert max(result["health_s"]) < 1.0
