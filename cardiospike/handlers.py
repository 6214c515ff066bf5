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

One request thread per process (``REQUEST_THREADS``) measured best: with two or more, the
threads mostly trade the GIL (8 threads: 279 requests/s; 2: 252; 1: 300-350). Requests of
one process then run one at a time, as in a sync WSGI worker; run more processes (with
Redis) to serve more at once. Websocket consumers' database calls use asgiref's own sync
thread, so a slow HTTP request does not hold them up.
"""

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections

# As many threads as a threaded WSGI server would run for a small site; the GIL and two
# cores bound the useful number, and each thread holds one database connection.


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.executor = ThreadPoolExecutor(
            settings.REQUEST_THREADS, thread_name_prefix="django-request"
        )

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}")
        await self.handle(scope, receive, send)

    async def get_response_async(self, request):
        return await sync_to_async(
            self.get_response_in_thread, thread_sensitive=False, executor=self.executor
        )(request)

    def get_response_in_thread(self, request):
        # What Django's request_started/request_finished receivers do, done in the thread
        # that owns the connection: drop it if it is broken or past CONN_MAX_AGE.
        close_old_connections()
        try:
            return self.get_response(request)
        finally:
            close_old_connections()
