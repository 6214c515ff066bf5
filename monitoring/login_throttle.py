"""Password guessing: after too many failed logins an account (or an address) waits.

``ThrottledModelBackend`` wraps Django's ``ModelBackend``, so the rule holds wherever a
password is checked: the login page, the admin's login, any ``authenticate()``. It counts
failures three ways, each within ``LOGIN_LOCKOUT_S`` of its first failure:

- per user name from one client address (``LOGIN_FAILURES_PER_USER``): past it, that account
  is refused from that address. Kept per address so that a stranger guessing at a known user
  name locks out only themselves, not the clinicians at the station.
- per client address (``LOGIN_FAILURES_PER_ADDRESS``): past it, that address is refused.
- per user name from any address (``LOGIN_FAILURES_PER_ACCOUNT``): past it, that account is
  refused from every address it has not logged in from before, so that guesses spread over
  many addresses (a botnet) are held too, while the station the clinicians use every day
  stays open. A successful login marks its address known for that account for
  ``KNOWN_ADDRESS_S`` (renewed at each login). It does not clear this count, which would
  give the guessers a fresh allowance each time the owner logs in.

What this does not do: guessers still get ``LOGIN_FAILURES_PER_ACCOUNT`` tries per window
(9,600 a day at the defaults); one who shares a known address (the hospital's NAT) is held
only by the per-address counts; a stranger who keeps guessing keeps the owner off new
addresses (a new workstation, a changed DHCP lease, home); and the marks live in the
same cache, so a restart of the in-memory one forgets them, counts and marks alike (it holds
up to a million entries before it drops the oldest: at Django's default of 300, a flood from
400 addresses dropped an account's lock).

Past a limit even the right password is refused, unchecked, until the window has passed, and
the login forms say so.

The counts and marks live in the ``login`` cache: Redis when ``REDIS_URL`` is set, so that
every server process sees every failure, else the process's own memory (one process: the quick
start). While Redis cannot be reached a login is checked uncounted and the error logged:
locking every clinician out of the station would do more harm than a guesser's few minutes.
"""

import logging

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import caches
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

# How long a successful login keeps its address known to the account-wide limit: long enough
# to outlast a clinician's weeks off, short enough that an address handed on (DHCP) loses it.
KNOWN_ADDRESS_S = 30 * 24 * 3600


def client_address(request) -> str:
    """The client's address as the API throttles take it: ``REMOTE_ADDR``, or with
    ``NUM_PROXIES`` set the address the last proxy saw (never a client's own
    X-Forwarded-For, which it can write itself)."""
    if request is None:
        return "unknown"
    return BaseThrottle().get_ident(request) or "unknown"


def _user_key(address: str, username: str) -> str:
    return f"login-failures:user:{username.casefold()}:{address}"


def _account_key(username: str) -> str:
    return f"login-failures:account:{username.casefold()}"


def _known_key(address: str, username: str) -> str:
    return f"login-known:{username.casefold()}:{address}"


def _keys(address: str, username: str | None) -> list[tuple[str, int]]:
    """(cache key, limit) of each count that applies to this attempt."""
    keys = [(f"login-failures:address:{address}", settings.LOGIN_FAILURES_PER_ADDRESS)]
    if username:
        keys.append((_user_key(address, username), settings.LOGIN_FAILURES_PER_USER))
        keys.append((_account_key(username), settings.LOGIN_FAILURES_PER_ACCOUNT))
    return keys


def is_locked_out(request, username: str | None) -> bool:
    address = client_address(request)
    counted = _keys(address, username)
    known = _known_key(address, username) if username else None
    try:
        # one round trip to Redis: the counts, and whether this address is known for the account
        values = caches["login"].get_many([key for key, _ in counted] + ([known] if known else []))
    except redis.RedisError:
        logger.exception("failed-login counts unreadable (Redis): login checked uncounted")
        return False
    if known and values.get(known):
        # an address the account logged in from before: guesses from elsewhere don't lock it
        counted = [(key, limit) for key, limit in counted if key != _account_key(username)]
    return any((values.get(key) or 0) >= limit for key, limit in counted)


def record_failure(request, username: str | None) -> None:
    counts = caches["login"]
    try:
        for key, _ in _keys(client_address(request), username):
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


def record_success(request, username: str) -> None:
    """Clear the account's count from this address and mark the address known for it. The
    account-wide count stays: the owner logging in must not give the guessers a fresh allowance."""
    address = client_address(request)
    counts = caches["login"]
    try:
        counts.delete(_user_key(address, username))
        counts.set(_known_key(address, username), 1, timeout=KNOWN_ADDRESS_S)
    except redis.RedisError:
        logger.exception("successful login not recorded (Redis unreachable)")


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
            record_success(request, username)
        return user
