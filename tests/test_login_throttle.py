"""Password guessing: an account, or an address, that failed too often waits (login page,
admin login and any authenticate() alike)."""

import pytest
import redis
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(settings):
    settings.LOGIN_FAILURES_PER_USER = 3
    settings.LOGIN_FAILURES_PER_ADDRESS = 5
    settings.LOGIN_FAILURES_PER_ACCOUNT = 6
    settings.LOGIN_LOCKOUT_S = 900
    return settings


def log_in(client, username, password, url="/login/"):
    return client.post(url, {"username": username, "password": password})


def test_an_account_that_failed_too_often_is_refused_even_the_right_password(
    client, clinician, staff_user, limits
):
    for _ in range(2):
        wrong = log_in(client, "clinician", "wrong")
        assert wrong.status_code == 200 and "Please enter a correct" in wrong.content.decode()
    # the failure that reaches the limit already says so
    assert "Too many failed logins" in log_in(client, "clinician", "wrong").content.decode()
    refused = log_in(client, "clinician", "pw-clinician-1")
    assert refused.status_code == 200  # the form again, not a redirect
    assert "Too many failed logins" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    # other accounts are not locked by it, nor is the admin's login a way round it
    assert log_in(Client(), "staff", "pw-staff-1").status_code == 302
    # a stranger guessing at a user name locks only themselves out, not the station
    at_the_station = Client(REMOTE_ADDR="10.0.0.8")
    assert log_in(at_the_station, "clinician", "pw-clinician-1").status_code == 302
    admin = log_in(client, "clinician", "pw-clinician-1", url="/admin/login/?next=/admin/")
    assert "Too many failed logins" in admin.content.decode()


def test_the_lock_ends_when_its_window_has_passed(client, clinician, limits):
    import time

    # counted from the first failure. 3 s, not 1: on a loaded machine four logins took over
    # a second once, and the window had passed before the lock could be seen.
    limits.LOGIN_LOCKOUT_S = 3
    for _ in range(3):
        log_in(client, "clinician", "wrong")
    locked = log_in(client, "clinician", "pw-clinician-1")
    assert "Too many failed logins" in locked.content.decode()
    time.sleep(3.3)
    assert log_in(client, "clinician", "pw-clinician-1").status_code == 302


def test_a_successful_login_clears_the_accounts_count(client, clinician, limits):
    for _ in range(2):
        log_in(client, "clinician", "wrong")
    assert log_in(client, "clinician", "pw-clinician-1").status_code == 302
    client.logout()
    for _ in range(2):
        log_in(client, "clinician", "wrong")
    assert log_in(client, "clinician", "pw-clinician-1").status_code == 302


def test_an_address_guessing_many_accounts_is_refused(client, clinician, limits):
    for number in range(5):  # one failure each: no account reaches its own limit
        log_in(client, f"guess-{number}", "wrong")
    refused = log_in(client, "clinician", "pw-clinician-1")
    assert "Too many failed logins" in refused.content.decode()
    other_address = Client(REMOTE_ADDR="10.0.0.7")
    assert log_in(other_address, "clinician", "pw-clinician-1").status_code == 302
    # a forged X-Forwarded-For is not another address
    forged = client.post(
        "/login/",
        {"username": "clinician", "password": "pw-clinician-1"},
        HTTP_X_FORWARDED_FOR="10.9.9.9",
    )
    assert forged.status_code == 200


def test_every_server_process_counts_the_same_failures(clinician, limits, redis_url, tmp_path):
    """With REDIS_URL the counts live in Redis: failures another server process saw lock
    the account here too (in each process's memory, N processes let N times the guesses)."""
    import os
    import subprocess
    import sys

    from django.test import RequestFactory

    from monitoring.login_throttle import is_locked_out

    script = (
        "import django; django.setup()\n"
        "from django.test import RequestFactory\n"
        "from monitoring.login_throttle import record_failure\n"
        "request = RequestFactory().post('/login/', REMOTE_ADDR='10.1.2.3')\n"
        "for _ in range(3): record_failure(request, 'clinician')\n"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="cardiospike.settings", REDIS_URL=redis_url)
    env["SQLITE_PATH"] = str(tmp_path / "unused.sqlite3")  # the child needs no database
    env.pop("DATABASE_URL", None)
    env.update(LOGIN_FAILURES_PER_USER="3", LOGIN_LOCKOUT_S="900")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)

    request = RequestFactory().post("/login/", REMOTE_ADDR="10.1.2.3")
    assert is_locked_out(request, "clinician")
    elsewhere = RequestFactory().post("/login/", REMOTE_ADDR="10.1.2.4")
    assert not is_locked_out(elsewhere, "clinician")


def test_a_login_goes_through_uncounted_while_redis_is_down(client, clinician, limits, caplog):
    """Locking every clinician out because Redis is down would do more harm than a guesser's
    few minutes: the password is checked, uncounted, and the error logged."""
    from django.core.cache import caches

    limits.CACHES = {
        **limits.CACHES,
        "login": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        },
    }
    assert caches["login"].__class__.__name__ == "RedisCache"
    for _ in range(4):
        wrong = log_in(client, "clinician", "wrong")
        assert "Please enter a correct" in wrong.content.decode()
    assert log_in(client, "clinician", "pw-clinician-1").status_code == 302
    assert "failed login not counted (Redis unreachable)" in caplog.text
    assert "successful login not recorded (Redis unreachable)" in caplog.text


def test_a_count_that_expires_under_the_increment_gets_its_window_again(redis_url, limits):
    """Django's RedisCache.incr checks the key exists, then INCRs: a key that expired in
    between comes back as 1 with no expiry, which would lock the address out for good."""
    from django.core.cache import caches
    from django.test import RequestFactory

    from monitoring.login_throttle import record_failure

    counts = caches["login"]
    assert counts.__class__.__name__ == "RedisCache"  # REDIS_URL is set (redis_url fixture)
    request = RequestFactory().post("/login/", REMOTE_ADDR="10.3.3.3")
    key = "login-failures:address:10.3.3.3"
    counts.set(key, 1, timeout=60)
    real_incr = counts.incr

    def incr_after_expiry(name, delta=1, version=None):
        if name == key:
            counts.delete(key)  # expired just after exists(), before INCR
            raw = redis.Redis.from_url(redis_url)
            value = raw.incr(counts.make_and_validate_key(key))  # INCR recreates it, no expiry
            raw.close()
            return value
        return real_incr(name, delta, version)

    counts.incr = incr_after_expiry
    try:
        record_failure(request, None)
    finally:
        del counts.incr
    raw = redis.Redis.from_url(redis_url)
    ttl = raw.ttl(counts.make_and_validate_key(key))
    raw.close()
    assert 0 < ttl <= limits.LOGIN_LOCKOUT_S


def guess_from_many_addresses(username, count):
    """One wrong password from each of ``count`` addresses, as a botnet spreads its guesses
    (each address stays far below its own limits)."""
    for number in range(count):
        wrong = log_in(Client(REMOTE_ADDR=f"203.0.113.{number}"), username, "wrong")
        assert wrong.status_code == 200


def test_guesses_spread_over_many_addresses_lock_the_account_out_of_new_addresses_only(
    clinician, staff_user, limits
):
    station = Client(REMOTE_ADDR="10.0.0.8")  # the ward's station, where the account logs in
    assert log_in(station, "clinician", "pw-clinician-1").status_code == 302
    station.logout()
    guess_from_many_addresses("clinician", 5)  # one short of the account-wide 6
    # below the limit a new address still gets in; its login does not reset the count
    laptop = Client(REMOTE_ADDR="198.51.100.9")
    assert log_in(laptop, "clinician", "pw-clinician-1").status_code == 302
    laptop.logout()
    # the failure that reaches the limit already says so
    sixth = log_in(Client(REMOTE_ADDR="203.0.113.99"), "clinician", "wrong")
    assert "Too many failed logins" in sixth.content.decode()

    new_address = Client(REMOTE_ADDR="198.51.100.1")
    refused = log_in(new_address, "clinician", "pw-clinician-1")
    assert refused.status_code == 200  # the form again, not a redirect
    assert "Too many failed logins" in refused.content.decode()
    assert "_auth_user_id" not in new_address.session
    admin = log_in(new_address, "clinician", "pw-clinician-1", url="/admin/login/?next=/admin/")
    assert "Too many failed logins" in admin.content.decode()
    # a guessing address is not let in by the right password either
    guesser = log_in(Client(REMOTE_ADDR="203.0.113.0"), "clinician", "pw-clinician-1")
    assert "Too many failed logins" in guesser.content.decode()

    # the addresses the account logged in from before still get in: the strangers cannot
    # lock the station out
    assert log_in(station, "clinician", "pw-clinician-1").status_code == 302
    assert log_in(laptop, "clinician", "pw-clinician-1").status_code == 302
    # other accounts are not locked by it
    assert log_in(Client(REMOTE_ADDR="198.51.100.1"), "staff", "pw-staff-1").status_code == 302


def test_the_account_wide_lock_ends_when_its_window_has_passed(client, clinician, limits):
    import time

    from django.test import RequestFactory

    from monitoring.login_throttle import record_failure

    limits.LOGIN_LOCKOUT_S = 3  # counted from the first failure (3 s: see the test above)
    for number in range(6):  # straight to the counts: six logins take long on a loaded machine
        record_failure(
            RequestFactory().post("/login/", REMOTE_ADDR=f"203.0.113.{number}"), "clinician"
        )
    new_address = Client(REMOTE_ADDR="198.51.100.1")
    locked = log_in(new_address, "clinician", "pw-clinician-1")
    assert "Too many failed logins" in locked.content.decode()
    time.sleep(3.3)
    assert log_in(new_address, "clinician", "pw-clinician-1").status_code == 302


def test_the_account_wide_count_and_known_addresses_live_in_redis(limits, redis_url):
    """Every server process sees the same account-wide count and known addresses; the count
    has its window and the mark its own, longer, lifetime."""
    from django.core.cache import caches
    from django.test import RequestFactory

    from monitoring.login_throttle import (
        KNOWN_ADDRESS_S,
        is_locked_out,
        record_failure,
        record_success,
    )

    counts = caches["login"]
    assert counts.__class__.__name__ == "RedisCache"  # REDIS_URL is set (redis_url fixture)
    station = RequestFactory().post("/login/", REMOTE_ADDR="10.4.4.4")
    record_success(station, "Clinician")  # user names are counted case-folded
    for number in range(6):
        record_failure(
            RequestFactory().post("/login/", REMOTE_ADDR=f"10.5.5.{number}"), "clinician"
        )
    assert is_locked_out(RequestFactory().post("/login/", REMOTE_ADDR="10.6.6.6"), "clinician")
    assert not is_locked_out(station, "clinician")

    raw = redis.Redis.from_url(redis_url)
    count_ttl = raw.ttl(counts.make_and_validate_key("login-failures:account:clinician"))
    mark_ttl = raw.ttl(counts.make_and_validate_key("login-known:clinician:10.4.4.4"))
    raw.close()
    assert 0 < count_ttl <= limits.LOGIN_LOCKOUT_S
    assert limits.LOGIN_LOCKOUT_S < mark_ttl <= KNOWN_ADDRESS_S


def test_a_flood_of_addresses_does_not_push_the_known_addresses_out_of_the_memory_cache(
    clinician, limits
):
    # without Redis the counts and marks live in the process's memory cache; with Django's
    # default of 300 entries, a flood from 400 addresses culled the oldest: the account's
    # count (its lock gone) and the station's mark
    from django.conf import settings as product
    from django.core.cache import caches
    from django.test import override_settings

    in_memory = {"default": product.CACHES["default"], "login": product.LOGIN_CACHE_IN_MEMORY}
    with override_settings(CACHES=in_memory):
        caches["login"].clear()
        station = Client(REMOTE_ADDR="10.0.0.8")
        assert log_in(station, "clinician", "pw-clinician-1").status_code == 302
        station.logout()
        guess_from_many_addresses("clinician", 6)  # the account-wide limit: locked elsewhere
        # then a flood of guesses at other names, three keys an address
        for number in range(400):
            address = f"198.18.{number // 256}.{number % 256}"
            assert log_in(Client(REMOTE_ADDR=address), f"user{number}", "x").status_code == 200
        # the account's count is still there (a new address is refused) and so is the
        # station's mark (the station gets in)
        refused = log_in(Client(REMOTE_ADDR="198.51.100.1"), "clinician", "pw-clinician-1")
        assert "Too many failed logins" in refused.content.decode()
        assert log_in(station, "clinician", "pw-clinician-1").status_code == 302
        caches["login"].clear()
