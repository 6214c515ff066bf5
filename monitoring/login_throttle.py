"""Password guessing: after too many failed logins an account (or an address) waits.

``ThrottledModelBackend`` wraps Django's ``ModelBackend``, so the rule holds wherever a
password is checked: the login page, the admin's login, any ``authenticate()``. It counts
failures per user name from one client address, and per client address; past either limit,
even the right password is refused from that address until the window has passed, and the
login forms say so. The account's count is kept per address so that a stranger guessing at
a known user name locks out only themselves, not the clinicians at the station.

The counts live in the ``login`` cache: Redis when ``REDIS_URL`` is set, so that every server
process sees every failure, else the process's own memory (one process: the quick start).
While Redis cannot be reached a login is checked uncounted and the error logged: locking every
clinician out of the station would do more harm than a guesser's few minutes.
"""

import logging

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import caches
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)


def client_address(request) -> str:
    """The client's address as the API throttles take it: ``REMOTE_ADDR``, or with
    ``NUM_PROXIES`` set the address the last proxy saw (never a client's own
    X-Forwarded-For, which it can write itself)."""
    if request is None:
        return "unknown"
    return BaseThrottle().get_ident(request) or "unknown"


def _user_key(address: str, username: str) -> str:
    return f"login-failures:user:{username.casefold()}:{address}"


def _keys(request, username: str | None) -> list[tuple[str, int]]:
    """(cache key, limit) of each count that applies to this attempt."""
    address = client_address(request)
    keys = [(f"login-failures:address:{address}", settings.LOGIN_FAILURES_PER_ADDRESS)]
    if username:
        keys.append((_user_key(address, username), settings.LOGIN_FAILURES_PER_USER))
    return keys


def is_locked_out(request, username: str | None) -> bool:
    counts = caches["login"]
    try:
        return any((counts.get(key) or 0) >= limit for key, limit in _keys(request, username))
    except redis.RedisError:
        logger.exception("failed-login counts unreadable (Redis): login checked uncounted")
        return False


def record_failure(request, username: str | None) -> None:
    counts = caches["login"]
    try:
        for key, _ in _keys(request, username):
            # add() starts the window at the first failure; incr() keeps it (the count
            # expires LOGIN_LOCKOUT_S after the first failure, not after the last)
            if not counts.add(key, 1, timeout=settings.LOGIN_LOCKOUT_S):
                try:
                    # Redis: a key that expired between Django's exists() and INCR comes
                    # back as 1 with no expiry, which would lock the address out for good
                    if counts.incr(key) == 1:
                        counts.touch(key, timeout=settings.LOGIN_LOCKOUT_S)
                except ValueError:  # expired between add and incr (memory cache)
                    counts.add(key, 1, timeout=settings.LOGIN_LOCKOUT_S)
    except redis.RedisError:
        logger.exception("failed login not counted (Redis unreachable)")


def clear_failures(request, username: str) -> None:
    try:
        caches["login"].delete(_user_key(client_address(request), username))
    except redis.RedisError:
        logger.exception("failed-login count not cleared (Redis unreachable)")


LOCKED_OUT_MESSAGE = (
    "Too many failed logins for this account or from this address: wait {minutes} minutes, "
    "then try again."
)


def locked_out_message() -> str:
    return LOCKED_OUT_MESSAGE.format(minutes=max(1, round(settings.LOGIN_LOCKOUT_S / 60)))


class ThrottledModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if is_locked_out(request, username):
            return None
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            record_failure(request, username)
        else:
            clear_failures(request, username)
        return user
