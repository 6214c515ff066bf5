"""ASGI entry point: daphne serves HTTP and websockets from this one application.

daphne cardiospike.asgi:application
"""

import io
import json
import logging
import os
from urllib.parse import urlsplit

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cardiospike.settings")

# Django must be set up before anything imports models (consumers, auth middleware).
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402
from django.core.exceptions import DisallowedHost  # noqa: E402
from django.core.handlers.asgi import ASGIRequest  # noqa: E402
from django.template.loader import render_to_string  # noqa: E402
from django.utils.http import is_same_domain  # noqa: E402

import cardiospike.daphne_requests  # noqa: E402, F401 (Twisted leaves POST bodies to Django)
from cardiospike.handlers import SyncChainASGIHandler  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import WebsocketDenier  # noqa: E402

from monitoring.context_processors import site  # noqa: E402
from monitoring.routing import websocket_urlpatterns  # noqa: E402

logger = logging.getLogger(__name__)


class RequestBodyLimit:
    """ASGI middleware: a body over ``REQUEST_MAX_BYTES`` is answered 413 before the app reads it.

    Django's handler copies the whole body into a temporary file before any view runs, so a
    view's own limit (uploads, /predict) came after a 96 MiB body had been read. A declared
    Content-Length over the limit is refused at once; a body without one (chunked) is counted
    as it arrives, and once past the limit the app is told the client left (Django then stops
    reading and answers nothing) and the 413 is sent here. daphne itself still receives the
    whole body before it calls the application: the proxy's own limit (``client_max_body_size``
    in nginx) stops it on the network.

    The API answers JSON, as every API refusal does; a page (an upload form posted by a
    browser) gets a small HTML page that says the limit and what to do.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        limit = settings.REQUEST_MAX_BYTES
        declared = content_length(scope)
        if declared is not None and declared > limit:
            await too_large(send, scope, limit, declared)
            return
        received = 0
        over = False
        started = False

        async def limited_receive():
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, tracked_send)
        if over and not started:
            await too_large(send, scope, limit)


def content_length(scope) -> int | None:
    """The declared body length, or None without one (or with one that is not a number:
    the app answers that itself)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return None


# Paths that answer JSON: the REST API, the seed's /predict, /health. Everything else is a
# page for a browser, to which a JSON body would be shown raw.
JSON_PATH_PREFIXES = ("/api/", "/predict", "/health")


async def too_large(send, scope, limit: int, declared: int | None = None) -> None:
    """413: JSON ``{"detail": ...}`` on the API, a page elsewhere."""
    what = "request body" if declared is None else f"request body of {declared} bytes"
    if scope.get("path", "").startswith(JSON_PATH_PREFIXES):
        content_type = b"application/json"
        body = json.dumps(
            {"detail": f"{what} exceeds the {limit}-byte limit (REQUEST_MAX_BYTES)"}
        ).encode()
    else:
        content_type = b"text/html; charset=utf-8"
        body = too_large_page(limit, declared).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def too_large_page(limit: int, declared: int | None) -> str:
    """413.html: standalone, as 500.html, with the site's name and research notice only (no
    request, user or database: this answers before Django has a request)."""
    context = site(None) | {
        "limit_mib": mib(limit),
        "upload_mib": mib(settings.UPLOAD_MAX_BYTES),
        "size_mib": None if declared is None else mib(declared),
    }
    return render_to_string("413.html", context)


def mib(n_bytes: int) -> str:
    """Bytes as MiB for people: "65", "95.4", "0.00095"."""
    value = n_bytes / 2**20
    return f"{value:,.1f}".removesuffix(".0") if value >= 1 else f"{value:.2g}"


class SameOriginWebsocket:
    """ASGI middleware: a websocket handshake passes only from an origin that Django's CSRF
    check accepts for a POST; any other is refused (daphne answers HTTP 403).

    The handshake carries the session cookie, and websockets have no CORS: the Origin header
    is all that tells a page of this site from another page that opens a socket with the
    user's cookie. SameSite=Lax does not help here, as it stops only cross-*site* requests,
    and ``http://localhost:31337`` or ``https://uploads.example.org`` are the same site as the
    server. Channels' AllowedHostsOriginValidator compared only the Origin's host name with
    ALLOWED_HOSTS, so any port, any scheme and, with a wildcard entry there, any subdomain
    passed. This accepts exactly what ``CsrfViewMiddleware`` does:

    - the handshake's own ``scheme://host[:port]``, host and scheme read by Django's rules
      (``get_host``: ALLOWED_HOSTS, USE_X_FORWARDED_HOST; ``is_secure``:
      SECURE_PROXY_SSL_HEADER, set by ``TRUST_X_FORWARDED_PROTO``, else the scope's ws/wss);
    - an entry of CSRF_TRUSTED_ORIGINS, exactly, or under its ``https://*.example.org`` form.

    No Origin, or ``null`` (a sandboxed frame, a file), is refused: browsers always send one
    with a handshake, and the socket is for them only.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        request = handshake_request(scope)
        if origin_allowed(request):
            return await self.app(scope, receive, send)
        logger.warning(
            "websocket %s refused: origin %r, host %r",
            scope.get("path"),
            request.META.get("HTTP_ORIGIN"),
            request.META.get("HTTP_HOST"),
        )
        return await WebsocketDenier()(scope, receive, send)


def handshake_request(scope) -> ASGIRequest:
    """The websocket handshake as the Django request it would be over HTTP (its headers in
    META as Django puts them), to ask it Django's own questions: host, scheme."""
    # A websocket scope's scheme is ws or wss; daphne gives none (ASGI's default: ws), even
    # behind --proxy-headers, so behind a TLS proxy only SECURE_PROXY_SSL_HEADER says https.
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    return ASGIRequest({**scope, "method": "GET", "scheme": scheme}, io.BytesIO())


def origin_allowed(request) -> bool:
    """CsrfViewMiddleware's origin check (``_origin_verified``), for a handshake."""
    origin = request.META.get("HTTP_ORIGIN")
    if origin is None or origin == "null":
        return False
    try:
        if origin == f"{request.scheme}://{request.get_host()}":
            return True
    except DisallowedHost:
        pass  # a Host outside ALLOWED_HOSTS: only a trusted origin may pass
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if origin in [entry for entry in trusted if "*" not in entry]:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    # "https://*.example.org" admits https://example.org and its subdomains, on that port only
    wildcards = [urlsplit(entry) for entry in trusted if "*" in entry]
    return any(
        entry.scheme == parsed.scheme and is_same_domain(parsed.netloc, entry.netloc.lstrip("*"))
        for entry in wildcards
    )


application = ProtocolTypeRouter(
    {
        "http": RequestBodyLimit(django_asgi_app),
        # Origin checked as Django's CSRF check does (no cross-origin websocket hijacking),
        # then the Django session resolves scope["user"]; consumers refuse anonymous users
        # themselves.
        "websocket": SameOriginWebsocket(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

if settings.PERIODIC_IN_SERVER:
    # no broker, so no celery beat: the server runs its schedule (monitoring/periodic.py),
    # from daphne's start (daphne has no ASGI lifespan; its reactor's first turn starts it)
    from monitoring.periodic import ScheduleInServer

    application = ScheduleInServer(application)
    application.start_with_daphne()
