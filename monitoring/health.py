"""Health checks of the parts the server depends on, for ``GET /health``.

Each check returns a dict with ``ok`` and details; a failing check names the part and the
error so an operator knows what to fix (e.g. "Redis at 127.0.0.1:6379: Connection refused").
Staff read the whole report; anyone else ``public_report`` (and the server log has it all).
"""

import asyncio
import time
import uuid
from urllib.parse import urlsplit

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

import inference

CHECK_TIMEOUT_S = 2.0


def redacted(url: str) -> str:
    """A service URL without its password, fit for a public health page."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def check_database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {"ok": False, "vendor": connection.vendor, "error": f"database: {exc}"}
    return {
        "ok": True,
        "vendor": connection.vendor,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def check_broker() -> dict:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"ok": True, "mode": "eager", "detail": "REDIS_URL unset: tasks run in process"}
    url = settings.CELERY_BROKER_URL
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=CHECK_TIMEOUT_S
        )
        client.ping()
        client.close()
    except Exception as exc:
        return {"ok": False, "mode": "redis", "error": f"Redis broker at {redacted(url)}: {exc}"}
    return {"ok": True, "mode": "redis", "url": redacted(url)}


async def _round_trip(layer) -> None:
    channel = await layer.new_channel()
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "health.check", "token": token})
    message = await layer.receive(channel)
    if message.get("token") != token:
        raise RuntimeError("channel layer returned a different message")


def check_channel_layer() -> dict:
    layer = get_channel_layer()
    backend = type(layer).__name__ if layer else None
    if layer is None:
        return {"ok": False, "backend": None, "error": "channel layer: CHANNEL_LAYERS not set"}

    async def probe():
        await asyncio.wait_for(_round_trip(layer), timeout=CHECK_TIMEOUT_S)

    try:
        async_to_sync(probe)()
    except Exception as exc:
        where = f" at {redacted(settings.REDIS_URL)}" if settings.REDIS_URL else ""
        reason = str(exc) or type(exc).__name__
        return {"ok": False, "backend": backend, "error": f"channel layer{where}: {reason}"}
    return {"ok": True, "backend": backend}


def check_models() -> dict:
    try:
        cards = inference.list_models()
    except Exception as exc:
        return {"ok": False, "loaded": [], "error": f"models: {exc}"}
    return {"ok": True, "loaded": [f"{card['name']}@{card['version']}" for card in cards]}


CHECKS = {
    "database": check_database,
    "broker": check_broker,
    "channel_layer": check_channel_layer,
    "models": check_models,
}


# What anyone may read of a check; its error and the service's address are for staff and the
# server log (an address and a driver's message tell an outsider about the network inside).
PUBLIC_KEYS = ("ok", "mode", "vendor", "backend", "latency_ms", "loaded")


def public_report(report: dict) -> dict:
    """``report`` without the checks' errors and addresses: status, failing parts, ok flags."""
    checks = {
        name: {key: value for key, value in result.items() if key in PUBLIC_KEYS}
        for name, result in report["checks"].items()
    }
    return {**report, "checks": checks}


def run_checks() -> dict:
    results = {name: check() for name, check in CHECKS.items()}
    failing = [name for name, result in results.items() if not result["ok"]]
    return {"status": "error" if failing else "ok", "failing": failing, "checks": results}
