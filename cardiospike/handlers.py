"""An ASGI handler that runs Django's synchronous request path in one thread hand-off.

Django's own ``ASGIHandler`` builds an async middleware chain and wraps every request in a
``ThreadSensitiveContext``. Our views are synchronous (DRF has no async views) and WhiteNoise
is a sync-only middleware, so each request crossed between the event loop and a sync thread
three times, in a thread started and joined for that request alone, with a database
connection opened and closed for it. Under load that was most of daphne's time (py-spy on
POST /predict): 145 requests/s at 8 clients. This handler builds the chain the WSGI way and
runs each request in a long-lived request thread that keeps its database connection
(CONN_MAX_AGE): about 300-350 requests/s (bench/predict_http.py). Websockets are not
affected: Channels consumers are routed around this handler in ``asgi.py``.

Requests run in two lanes, each a pool of long-lived threads:

- the **device lane** (``DEVICE_REQUEST_THREADS``, 2): the device protocol (``/api/device/``)
  and ``/health``. Nothing a person does in the pages can delay a device's samples or the
  load balancer's health check. Before the lanes, a clinician's download of a 12-hour
  recording's CSV zip (a minute of work in the view) held the one request thread: a device's
  chunk waited 64 s and the server raised "no data from the device" and e-mailed it.
- the **page lane** (``REQUEST_THREADS``, 4): everything else. One thread per process measured
  best for ``/predict`` throughput (8 threads: 279 requests/s; 2: 252; 1: 300-350; the
  threads mostly trade the GIL), but then one slow page (an export, an upload's parse) made
  every other page of that process wait for it.

Streaming responses (the CSV export, ``FileResponse`` downloads, WhiteNoise's static files)
are read in a thread of their own, a block at a time. (daphne buffers what it is sent without
waiting for the client, so a slow client's download is read at the database's pace and held
by daphne; a proxy in front, which buffers too, takes it off the server's hands.) Django's own
ASGI path reads a synchronous stream whole into memory, on asgiref's one shared sync thread
(``sync_to_async(list)``): a 12-hour CSV (458 MB) took 2 GB and 47 s there, and every request
waited behind it, because Django sends each request's ``request_started`` signal through that
thread. Websocket consumers' database calls use that thread too.
"""

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections, connections

# Paths served by the device lane: the device protocol and the health check.
DEVICE_LANE_PREFIXES = ("/api/device/", "/health")
# What a streamed response's thread reads before handing it to the event loop: large enough
# that a 458-MB export is a few thousand hand-offs, small enough to keep memory flat.
STREAM_BLOCK_BYTES = 256 * 1024


def read_block(parts: Iterator[bytes]) -> bytes | None:
    """The next ``STREAM_BLOCK_BYTES`` or so of a streamed response; None at its end."""
    block: list[bytes] = []
    size = 0
    for part in parts:
        block.append(part)
        size += len(part)
        if size >= STREAM_BLOCK_BYTES:
            break
    return b"".join(block) if block else None


async def stream_in_own_thread(parts: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A synchronous stream read in a thread of its own. One thread for the whole stream: a
    generator that reads the database (``signal_csv_lines``) keeps its connection and cursor
    in the thread that opened them. The thread closes its connection when the stream ends."""
    loop = asyncio.get_running_loop()
    thread = ThreadPoolExecutor(1, thread_name_prefix="django-stream")
    try:
        while (block := await loop.run_in_executor(thread, read_block, parts)) is not None:
            if block:
                yield block
    finally:
        # queued after any read still running (a client that left mid-stream)
        thread.submit(connections.close_all)
        thread.shutdown(wait=False)


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.executor = ThreadPoolExecutor(
            settings.REQUEST_THREADS, thread_name_prefix="django-request"
        )
        self.device_executor = ThreadPoolExecutor(
            settings.DEVICE_REQUEST_THREADS, thread_name_prefix="django-device"
        )

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}")
        await self.handle(scope, receive, send)

    async def get_response_async(self, request):
        lane = self.device_executor if in_device_lane(request.path) else self.executor
        return await sync_to_async(
            self.get_response_in_thread, thread_sensitive=False, executor=lane
        )(request)

    async def send_response(self, response, send):
        if response.streaming and not response.is_async:
            response.streaming_content = stream_in_own_thread(response.streaming_content)
        await super().send_response(response, send)

    def get_response_in_thread(self, request):
        # What Django's request_started/request_finished receivers do, done in the thread
        # that owns the connection: drop it if it is broken or past CONN_MAX_AGE.
        close_old_connections()
        try:
            return self.get_response(request)
        finally:
            close_old_connections()


def in_device_lane(path: str) -> bool:
    return path.startswith(DEVICE_LANE_PREFIXES)
