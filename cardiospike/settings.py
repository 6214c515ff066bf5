"""CardioSpike settings: the one place that reads the environment.

Every setting has an embedded default so that a fresh checkout runs alone: SQLite, Celery
tasks run eagerly in process, the in-memory channel layer, email printed to the console.
DEBUG alone defaults to off (production): scripts/quickstart and the tests turn it on.
Setting ``DATABASE_URL`` and ``REDIS_URL`` moves the same code onto PostgreSQL, a Celery
worker pool and the Redis channel layer. See ``docs/configuration.md`` for every variable.
"""

import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    # an empty value (DEBUG=) counts as unset: it takes the default, as it reads
    value = (os.getenv(name, "").strip() or default).lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: expected one of true/false/1/0/yes/no/on/off")


def envint(name: str, default: str) -> int:
    value = os.getenv(name, default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected an integer") from None


def envfloat(name: str, default: str) -> float:
    value = os.getenv(name, default)
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a number") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


# --- Core -------------------------------------------------------------------------------

# Off unless the environment turns it on: a deployment that forgets the variable runs as
# production (no detailed error pages, secure cookies, collected static files, no demo data)
# rather than in development mode. scripts/quickstart and the test run set DEBUG=true.
DEBUG = envbool("DEBUG", "false")

# Only good for development: a production run (DEBUG off) refuses to start with it.
DEVELOPMENT_SECRET_KEY = "cardiospike-development-only-secret-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = os.getenv("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
# A weak key is refused: fewer than 32 characters, fewer than 5 different ones (40 x "a"
# passed a length-only rule), or the prefix of a key startproject generated. Django's own
# check (security.W009, run by `check --deploy`, a warning) also asks for 50 characters; a key
# of 32-49 is only warned about there, as our rule said 32 until 2026-12-07 and a stricter one
# would stop an upgraded server, its workers and so its alarms.
SECRET_KEY_MIN_LENGTH = 32
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5
SECRET_KEY_INSECURE_PREFIX = "django-insecure-"  # noqa: S105 (a prefix refused)
if not DEBUG and (
    SECRET_KEY == DEVELOPMENT_SECRET_KEY
    or len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH
    or len(set(SECRET_KEY)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
    or SECRET_KEY.startswith(SECRET_KEY_INSECURE_PREFIX)
):
    # Also what a developer sees who runs manage.py, daphne or celery with no environment:
    # both ways out are named.
    raise ImproperlyConfigured(
        "DEBUG is off (the default) but SECRET_KEY is unset, the development default, or weak "
        f"(shorter than {SECRET_KEY_MIN_LENGTH} characters, fewer than "
        f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} different characters, or starting with "
        f"'{SECRET_KEY_INSECURE_PREFIX}'; Django's check security.W009 asks for 50 characters). "
        "For development on "
        "this machine, set DEBUG=true (scripts/quickstart does). For production, set SECRET_KEY "
        "to a long random value, e.g. the output of "
        '`python -c "import secrets; print(secrets.token_urlsafe(50))"`.'
    )

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

SITE_NAME = "CardioSpike"
RESEARCH_DISCLAIMER = (
    "Research software, not a medical device. Not for diagnosis, treatment or patient "
    "monitoring decisions."
)

INSTALLED_APPS = [
    # daphne first: `manage.py runserver` then serves ASGI (HTTP + websockets).
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Early, so that redirects and refusals from the middleware below carry it too.
    "monitoring.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Below SessionMiddleware (it needs request.session): sliding expiry, SESSION_IDLE_S.
    "monitoring.middleware.SessionRenewalMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Login is the default for every view; public ones opt out explicitly.
    "monitoring.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cardiospike.urls"
WSGI_APPLICATION = "cardiospike.wsgi.application"
ASGI_APPLICATION = "cardiospike.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Ahead of every app's templates, whatever the order of INSTALLED_APPS: monitoring's
        # overrides of the admin's, DRF's and drf-spectacular's templates (admin/base_site.html,
        # rest_framework/api.html, drf_spectacular/swagger_ui.html) carry the research notice,
        # and with APP_DIRS alone those apps, listed first, would win.
        "DIRS": [BASE_DIR / "monitoring" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "monitoring.context_processors.site",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------

DATABASE_URL = os.getenv("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", "60"), conn_health_checks=True
        )
    }
else:
    SQLITE_PATH = Path(os.getenv("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            # A file, not :memory:, so that the processes the tests start (a Celery worker,
            # daphne) see the rows the test wrote.
            "TEST": {"NAME": str(SQLITE_PATH.with_name(SQLITE_PATH.stem + "-test.sqlite3"))},
            # Waiting for a lock beats failing with "database is locked" when the web
            # process and a task write at the same moment. IMMEDIATE takes the write lock
            # when a transaction begins: a deferred transaction that reads first and then
            # wants to write cannot wait for the lock and fails at once.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
            "CONN_MAX_AGE": envint("DB_CONN_MAX_AGE", "60"),
            "CONN_HEALTH_CHECKS": True,
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and channel layer ----------------------------------------------

REDIS_URL = os.getenv("REDIS_URL", "")

CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Acknowledged after it runs: a task whose whole worker dies (the machine, the main process) is
# delivered again. One whose pool process is killed (out of memory, kill -9) is acknowledged
# all the same and lost: task_reject_on_worker_lost stays off, since a task that kills its
# process every time would then be delivered again for ever. Each kind of work recovers on
# its own instead: the periodic sweep queues lagging stream analyses again and fails upload
# analyses left pending (UPLOAD_ANALYSIS_STALE_S), notifications are retried when due.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_RESULT_EXPIRES = 3600
# One deployment's workers and beat share a queue; tests give theirs a queue of their own.
CELERY_TASK_DEFAULT_QUEUE = os.getenv("CELERY_QUEUE", "celery")

# Publishing a task must fail fast when Redis is down: the web process queues analyses after
# each device chunk, and a chunk must be stored and acknowledged whatever the broker does
# (the periodic sweep queues what was missed). Workers reconnect on their own terms.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
    "socket_connect_timeout": 1,
}

# Live views (monitoring/live.py): a channel (one websocket) holds at most this many messages
# it has not taken yet; a group send skips a channel that is full (channels_redis and the
# in-memory layer both drop, for that channel only, and never wait), so a stalled browser loses
# its own live messages and never delays anyone else's. The layers' own default, 100, is under
# a second for a central station watching 50 patients (about 3 messages per patient per second:
# samples, beats, status); ours, 1000, lets a busy consumer fall several seconds behind before
# it loses anything, at a few MB of Redis per stalled channel until its expiry (60 s).
CHANNEL_CAPACITY = envint("CHANNEL_CAPACITY", "1000")
# How often an open websocket's access is checked again (monitoring/consumers.py): a user
# signed out, unassigned or deactivated stops receiving within it.
LIVE_RECHECK_S = envfloat("LIVE_RECHECK_S", "10")

if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5-s socket timeout by default, the same 5 s that
                # channels_redis blocks in BZPOPMIN waiting for a message: a consumer of a
                # quiet channel then died now and then with "Timeout reading" (websocket
                # closed 1011; seen in bench/ws_fanout.py). The read timeout must exceed it.
                # Its pool also refuses (MaxConnectionsError, 1011 again) past 100 connections
                # in use at once instead of waiting, which 100 browsers connecting together
                # reach: Redis takes 10000 clients, so a process may hold up to 1000.
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 15,
                        "socket_connect_timeout": 2,
                        "max_connections": 1000,
                    }
                ],
                "prefix": "cardiospike",
                "capacity": CHANNEL_CAPACITY,
            },
        }
    }
else:
    # No broker: tasks run inline in the process that queues them, and their exceptions
    # propagate to the caller instead of disappearing into a result nobody reads.
    CELERY_BROKER_URL = "memory://"
    CELERY_RESULT_BACKEND = None
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_CAPACITY},
        }
    }

# --- Device streams (docs/device-protocol.md, monitoring/streaming.py) -------------------

# A live recording without a chunk for this long is closed (the periodic sweep does it).
DEVICE_SILENCE_CLOSE_S = envfloat("DEVICE_SILENCE_CLOSE_S", "300")
# A gap in a stream is final (the analysis goes past it) once the chunk after it is this old.
# The firmware and the simulator send oldest first, so a chunk they can still deliver stands
# behind later stored ones for a retry (1 s) and at most a backoff step (8 s) or so: 20 s covers
# that with margin and bounds the live analysis' stall (docs/architecture.md, "Gaps"). A chunk
# that comes later still is analysed afterwards (monitoring/backfill.py).
DEVICE_GAP_WAIT_S = envfloat("DEVICE_GAP_WAIT_S", "20")
# Requests per device; counted per server process (local memory, so ingest keeps working
# while Redis is down): with P processes a device may reach P times the rate.
DEVICE_THROTTLE_RATE = os.getenv("DEVICE_THROTTLE_RATE", "1200/min")
# How far a device's samples may run ahead of the wall clock since its recording opened
# (monitoring.ingest.check_not_ahead_of_time): a buffer sent late, a replay at --speed.
DEVICE_MAX_AHEAD_S = envfloat("DEVICE_MAX_AHEAD_S", "600")
# An analysis claim older than this belongs to a dead worker, and the sweep takes it over.
STREAM_STALE_S = envfloat("STREAM_STALE_S", "60")
STREAM_SWEEP_S = envfloat("STREAM_SWEEP_S", "15")
# One analysis round reads at most this much signal, so a backlog commits in steps.
STREAM_MAX_ROUND_S = envfloat("STREAM_MAX_ROUND_S", "120")

# --- Alarms and notifications (docs/alarms.md) -------------------------------------------

# A device recording without a chunk for this long raises the technical "device offline" alarm.
DEVICE_OFFLINE_S = envfloat("DEVICE_OFFLINE_S", "30")
# A device assigned to an admitted patient that has sent them nothing for this long since it
# was assigned (a new device never switched on, a swap whose new device stays silent, a move
# whose device never reconnects) raises "device offline" for the patient too. Longer than
# DEVICE_OFFLINE_S: the device is often assigned before it is put on and joins the Wi-Fi.
DEVICE_NO_DATA_AFTER_ASSIGN_S = envfloat("DEVICE_NO_DATA_AFTER_ASSIGN_S", "60")
# A device's battery charge (its chunks' battery_pct) at or below this raises BATTERY_LOW, a
# technical alarm, which resolves at DEVICE_BATTERY_RESOLVE_PCT or more (monitoring/alarms.py).
DEVICE_BATTERY_LOW_PCT = envint("DEVICE_BATTERY_LOW_PCT", "15")
DEVICE_BATTERY_RESOLVE_PCT = envint("DEVICE_BATTERY_RESOLVE_PCT", "20")
if not 0 <= DEVICE_BATTERY_LOW_PCT < DEVICE_BATTERY_RESOLVE_PCT <= 100:
    raise ImproperlyConfigured(
        f"DEVICE_BATTERY_LOW_PCT ({DEVICE_BATTERY_LOW_PCT}) must be below "
        f"DEVICE_BATTERY_RESOLVE_PCT ({DEVICE_BATTERY_RESOLVE_PCT}), both 0-100"
    )
if DEVICE_OFFLINE_S >= DEVICE_SILENCE_CLOSE_S:
    # the periodic check watches live recordings: one closed for silence before its device
    # counted as offline would never raise the alarm
    raise ImproperlyConfigured(
        f"DEVICE_OFFLINE_S ({DEVICE_OFFLINE_S:g} s) must be shorter than DEVICE_SILENCE_CLOSE_S "
        f"({DEVICE_SILENCE_CLOSE_S:g} s): a recording closed for silence first would never "
        "raise the device-offline alarm"
    )
# An alarm nobody acknowledged this long after it was raised goes to the escalation list (once).
ALARM_ESCALATION_S = envfloat("ALARM_ESCALATION_S", "120")
# A technical alarm (device offline, leads off) raised again this soon after the last one of
# its kind that was sent, for the same patient, is shown but not sent again: a loose electrode
# or a device at the edge of Wi-Fi would otherwise email the ward at every flap.
TECHNICAL_RENOTIFY_S = envfloat("TECHNICAL_RENOTIFY_S", "600")
# Period of the alarm check (celery beat): device offline, escalation, notification retries.
ALARM_CHECK_S = envfloat("ALARM_CHECK_S", "10")
# A failed notification is tried again after ALARM_RETRY_BASE_S, then twice as long each time
# (at most ALARM_RETRY_MAX_S between tries), until NOTIFY_GIVE_UP_S after it was created: long
# enough to outlast a mail server's outage, short enough that a message hours late is not sent.
ALARM_RETRY_BASE_S = envfloat("ALARM_RETRY_BASE_S", "30")
ALARM_RETRY_MAX_S = envfloat("ALARM_RETRY_MAX_S", "300")
NOTIFY_GIVE_UP_S = envfloat("NOTIFY_GIVE_UP_S", "21600")
# Webhooks go to public addresses only (monitoring/webhooks.py): any staff member sets their
# URLs, and the worker would otherwise POST patients' names to the server itself or to internal
# services (loopback, link-local such as cloud metadata, private, reserved). Networks listed here
# (comma-separated, "10.20.0.15/32,fd00:20::/64") are allowed all the same: an on-site pager
# gateway. A list of networks rather than an on/off switch, so that allowing the gateway does
# not open the rest of the hospital's network.
WEBHOOK_ALLOWED_NETWORKS = envlist("WEBHOOK_ALLOWED_NETWORKS", "")
for _network in WEBHOOK_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"WEBHOOK_ALLOWED_NETWORKS: {_network!r} is not a network; expected addresses or "
            'networks separated by commas, e.g. "10.20.0.15/32,fd00:20::/64"'
        ) from None

# Without a broker nothing runs CELERY_BEAT_SCHEDULE; on, the server (daphne) runs it as a
# task of its own event loop (each task in a worker thread), so that its alarms also reach the
# in-memory channel layer and so the open pages (monitoring/periodic.py). The quick start
# turns it on; with REDIS_URL it is ignored (run celery beat).
PERIODIC_IN_SERVER = envbool("PERIODIC_IN_SERVER", "false") and not REDIS_URL
# Expired sessions (SESSION_IDLE_S) are deleted this often; they sign nobody in meanwhile, so
# an hour is soon enough, and each run is one DELETE on an indexed column.
SESSION_CLEAR_S = 3600
# Each run expires after its own period: beat goes on queueing while the workers are down, and
# an hour's backlog of sweeps and checks would otherwise run back to back when they return,
# ahead of the analyses queued behind them; the next run does the same work on fresher data.
CELERY_BEAT_SCHEDULE = {
    "sweep-streams": {
        "task": "monitoring.tasks.sweep_streams_task",
        "schedule": STREAM_SWEEP_S,
        "options": {"expires": STREAM_SWEEP_S},
    },
    "check-alarms": {
        "task": "monitoring.tasks.check_devices_task",
        "schedule": ALARM_CHECK_S,
        "options": {"expires": ALARM_CHECK_S},
    },
    "clear-expired-sessions": {
        "task": "monitoring.tasks.clear_expired_sessions_task",
        "schedule": SESSION_CLEAR_S,
        "options": {"expires": SESSION_CLEAR_S},
    },
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- HTTPS behind a reverse proxy (docs/configuration.md) --------------------------------

# A proxy that terminates TLS talks plain HTTP to daphne: without this (or daphne's
# --proxy-headers) Django takes every request for http://, builds http:// links and refuses
# HTTPS form posts as cross-origin (CSRF 403). Only for a proxy that sets the header itself,
# overwriting what the client sent.
if envbool("TRUST_X_FORWARDED_PROTO", "false"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "false")
# Probes that ask daphne directly (plain HTTP, no proxy header) still get /health, not a 301.
SECURE_REDIRECT_EXEMPT = [r"^health/?$"]
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", "0")
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "false")
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "false")
# Proxies in front of the server that append to X-Forwarded-For, for the client address of
# the API throttles (DRF). 0: the connection's address (REMOTE_ADDR), which daphne's
# --proxy-headers already takes from the proxy; any other value trusts that many entries from
# the right of the header, and a client that reaches the server around them can forge it.
NUM_PROXIES = envint("NUM_PROXIES", "0")

# --- Content Security Policy (docs/configuration.md) -------------------------------------

# Browsers run only the site's own script files and styles, so that markup slipped into a
# page cannot run script; no inline <script>, on*= handler or style= attribute works. 'self'
# covers the pages' ws:// and wss:// websockets (CSP Level 3). data: images: the icons in
# Swagger UI's CSS; blob: images: Swagger UI showing a PNG an API call returned (a strip).
DEFAULT_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Empty counts as unset (a blank line in an env file must not drop the policy); "off": no
# header, for a proxy that sets its own.
CONTENT_SECURITY_POLICY = os.getenv("CONTENT_SECURITY_POLICY", "").strip()
if not CONTENT_SECURITY_POLICY:
    CONTENT_SECURITY_POLICY = DEFAULT_CONTENT_SECURITY_POLICY
elif CONTENT_SECURITY_POLICY.lower() == "off":
    CONTENT_SECURITY_POLICY = ""
# Sources added to the policy under a path prefix: {prefix: {directive: [sources]}}.
CONTENT_SECURITY_POLICY_EXCEPTIONS = {
    # DRF's browsable API (an /api/ address opened in a browser) styles its pages partly
    # inline, in its own templates (a <style> for code highlighting, style= attributes on the
    # "Extra Actions" menu and on forms); its scripts are files, so script-src stays strict
    "/api/": {"style-src": ["'unsafe-inline'"]},
}

# Error reports (the DEBUG 500 page, error emails) hide the passwords inside service URLs.
DEFAULT_EXCEPTION_REPORTER_FILTER = "cardiospike.debug.CredentialsSafeExceptionReporterFilter"

# --- Authentication ---------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # not a rule: Django's hook for a changed password, which revokes the user's API keys
    {"NAME": "monitoring.authentication.RevokeApiTokensOnPasswordChange"},
]

# Password guessing (monitoring.login_throttle): past a count of failed logins within
# LOGIN_LOCKOUT_S of the first, the account from that address, the client address, or (past
# the account-wide count, guesses spread over many addresses) the account from every address
# it has not logged in from before, waits the rest of it.
AUTHENTICATION_BACKENDS = ["monitoring.login_throttle.ThrottledModelBackend"]
LOGIN_FAILURES_PER_USER = envint("LOGIN_FAILURES_PER_USER", "10")
LOGIN_FAILURES_PER_ADDRESS = envint("LOGIN_FAILURES_PER_ADDRESS", "50")
LOGIN_FAILURES_PER_ACCOUNT = envint("LOGIN_FAILURES_PER_ACCOUNT", "100")
LOGIN_LOCKOUT_S = envint("LOGIN_LOCKOUT_S", "900")
for _name, _value in (
    ("LOGIN_FAILURES_PER_USER", LOGIN_FAILURES_PER_USER),
    ("LOGIN_FAILURES_PER_ADDRESS", LOGIN_FAILURES_PER_ADDRESS),
    ("LOGIN_FAILURES_PER_ACCOUNT", LOGIN_FAILURES_PER_ACCOUNT),
    ("LOGIN_LOCKOUT_S", LOGIN_LOCKOUT_S),
):
    if _value < 1:
        # a limit of 0 refuses every login, the right password included
        raise ImproperlyConfigured(f"{_name}={_value}: expected a whole number from 1")
if LOGIN_FAILURES_PER_ACCOUNT <= LOGIN_FAILURES_PER_USER:
    raise ImproperlyConfigured(
        f"LOGIN_FAILURES_PER_ACCOUNT ({LOGIN_FAILURES_PER_ACCOUNT}) must be above "
        f"LOGIN_FAILURES_PER_USER ({LOGIN_FAILURES_PER_USER}): else a stranger guessing from one "
        "address would lock the account out of every address it has not logged in from before"
    )

# Caches. "default" (DRF's throttles) stays in each process's memory: a device's chunk must be
# stored whatever Redis does, and a throttle counted per process only lets N processes take
# N times the rate. The failed-login counts ("login") must hold across every server process,
# or N daphne processes would let a guesser try N times as many passwords: with REDIS_URL they
# live in Redis (their own key prefix; short timeouts, and login_throttle lets a login through
# uncounted, logged, while Redis is down, rather than lock every clinician out).
LOGIN_CACHE_IN_MEMORY = {
    "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
    "LOCATION": "login-failures",
    # Not the default 300 entries, past which the cache drops the oldest: a flood of guesses
    # from many addresses (three keys each) dropped the counts that lock an account, and the
    # marks of the addresses it logged in from (tests/test_login_throttle.py).
    "OPTIONS": {"MAX_ENTRIES": 1_000_000},
}
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "login": LOGIN_CACHE_IN_MEMORY,
}
if REDIS_URL:
    CACHES["login"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cardiospike-login",
        "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
    }

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# A session with no activity for this long ends (monitoring/sessions.py): a login left on a
# shared ward computer ends within a shift, not after Django's two weeks. A signed-in request
# renews it once less than half is left, and so does an open live page or central station at
# its access recheck, so a wall display never signs itself out while showing patients.
SESSION_IDLE_S = envint("SESSION_IDLE_S", "43200")
# The open pages renew at a recheck, which comes within LIVE_RECHECK_S plus a ping (10 s): well
# inside half the age with these bounds. Over a month is no idle timeout (and a far date breaks
# the expiry arithmetic).
SESSION_IDLE_MIN_S = max(60.0, 4 * LIVE_RECHECK_S)
SESSION_IDLE_MAX_S = 30 * 24 * 3600
if not SESSION_IDLE_MIN_S <= SESSION_IDLE_S <= SESSION_IDLE_MAX_S:
    raise ImproperlyConfigured(
        f"SESSION_IDLE_S={SESSION_IDLE_S}: expected seconds from {SESSION_IDLE_MIN_S:g} (at least "
        f"60 s and 4 x LIVE_RECHECK_S, so that an open live page renews its session in time) to "
        f"{SESSION_IDLE_MAX_S} (30 days), e.g. 43200 for 12 hours"
    )
SESSION_ENGINE = "monitoring.sessions"
SESSION_COOKIE_AGE = SESSION_IDLE_S
# The cookie carries no expiry of its own; the session row's decides. A cookie with a Max-Age is
# renewed only by HTTP answers, and a station that makes no request for SESSION_IDLE_S (its
# socket keeps the row alive) would lose it in the browser, and be signed out at its next
# reconnect. Closing the browser also ends the login, which suits a shared computer.
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
# With DEBUG off the session and CSRF cookies travel over HTTPS only: a production server is
# reached through a TLS proxy (README, "Running on PostgreSQL, Redis and Celery workers").
# Over plain HTTP the browser drops them and every login fails with CSRF 403; a trusted LAN
# without TLS sets SESSION_COOKIE_SECURE=false.
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", "false" if DEBUG else "true")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# A refused form gets a page in the site's layout (with the research notice), not Django's bare one.
CSRF_FAILURE_VIEW = "monitoring.views.csrf_failure"

# --- REST API ---------------------------------------------------------------------------

REST_FRAMEWORK = {
    # Token first: DRF takes the first class's WWW-Authenticate header, which turns an
    # anonymous request's answer into 401 (a script can tell "log in") instead of 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "monitoring.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "monitoring.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # DRF's parsers, with JSON nested too deeply for Python's decoder a 400, not a 500
    "DEFAULT_PARSER_CLASSES": [
        "monitoring.api.errors.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # DRF's handler, plus Django's SuspiciousOperation (too many files or fields: 400) and
    # RequestDataTooBig (413) as JSON, and errors in JSON on views that answer other formats
    "EXCEPTION_HANDLER": "monitoring.api.errors.exception_handler",
    # Unset, DRF would take a client's own X-Forwarded-For as its address, and a client that
    # changes it on each request would never be throttled.
    "NUM_PROXIES": NUM_PROXIES,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "CardioSpike API",
    "DESCRIPTION": "ECG arrhythmia monitoring. " + RESEARCH_DISCLAIMER,
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI and Redoc from the drf-spectacular-sidecar package: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Request bodies get their own components ("...Request"), so that an uploaded file is
    # documented as binary rather than as the URL a response would give
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Internationalization ---------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.getenv("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = Path(os.getenv("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "frontend" / "static"]
# Development serves straight from the app and frontend folders; production serves the
# collected, hashed and compressed copies (run `manage.py collectstatic`).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Email ------------------------------------------------------------------------------

EMAIL_BACKEND = os.getenv("EMAIL_BACKEND", "")
EMAIL_HOST = os.getenv("EMAIL_HOST", "")
if not DEBUG and not (EMAIL_BACKEND or EMAIL_HOST or os.getenv("EMAIL_FILE_PATH")):
    # The fallback below, the console, is for development: in production a worker "sent" each
    # alarm email to its own stdout, marked the alarm notified, and nothing said so (/health,
    # check --deploy, the log). Production names where alarm emails go, or that they go nowhere.
    raise ImproperlyConfigured(
        "DEBUG is off but no email server is set: alarm emails would only be printed on the "
        "worker's console and counted as sent. Set EMAIL_HOST to your SMTP server (with "
        "EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD and EMAIL_USE_TLS or EMAIL_USE_SSL as "
        "it needs, and DEFAULT_FROM_EMAIL), or say on purpose where the emails go: "
        "EMAIL_FILE_PATH=<folder> (a file per message) or EMAIL_BACKEND=<a Django email backend>, "
        "e.g. django.core.mail.backends.dummy.EmailBackend for none at all (alarms then reach "
        "only webhook recipients). See docs/configuration.md."
    )
if not EMAIL_BACKEND:
    if EMAIL_HOST:
        EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    elif os.getenv("EMAIL_FILE_PATH"):
        EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    else:
        EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
EMAIL_FILE_PATH = os.getenv("EMAIL_FILE_PATH", str(BASE_DIR / "sent-emails"))
EMAIL_PORT = envint("EMAIL_PORT", "25")
EMAIL_HOST_USER = os.getenv("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.getenv("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "false")
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", "false")
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", "10")
DEFAULT_FROM_EMAIL = os.getenv("DEFAULT_FROM_EMAIL", "CardioSpike <cardiospike@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Where users reach this server, for the links in alarm emails (no trailing slash): an email
# has no request to take the host from. Empty (development only): the links are paths, which
# no mail client can open, so production refuses to start without it.
SITE_URL = os.getenv("SITE_URL", "").strip().rstrip("/")
if SITE_URL:
    _scheme, _, _rest = SITE_URL.partition("://")
    if _scheme not in ("http", "https") or not _rest.split("/")[0]:
        raise ImproperlyConfigured(
            f"SITE_URL={os.getenv('SITE_URL')!r}: expected the address users type, with http:// or "
            "https:// and the host, e.g. https://monitor.example.org"
        )
elif not DEBUG:
    raise ImproperlyConfigured(
        "DEBUG is off but SITE_URL is unset: the links in alarm emails (live view, review, "
        "acknowledge) would be bare paths such as /patients/2/live/, which no mail client can "
        "open. Set SITE_URL to the address users type, e.g. https://monitor.example.org"
    )

# --- CardioSpike ------------------------------------------------------------------------

# Where the PhysioNet databases live (MIT-BIH, vfdb, nstdb, PTB-XL); see shared/data/README.
CARDIOSPIKE_DATA_DIR = Path(
    os.getenv("CARDIOSPIKE_DATA_DIR", str(BASE_DIR.parent / "shared" / "data"))
)

# POST /predict: limits of one request, and whether callers without an account may use it
# (then throttled per IP address at PREDICT_ANON_RATE).
PREDICT_MAX_SAMPLES = envint("PREDICT_MAX_SAMPLES", "150000")  # 10 min at 250 Hz
PREDICT_MAX_BODY_BYTES = envint("PREDICT_MAX_BODY_BYTES", str(4 * 1024 * 1024))
PREDICT_ALLOW_ANONYMOUS = envbool("PREDICT_ALLOW_ANONYMOUS", "false")
PREDICT_ANON_RATE = os.getenv("PREDICT_ANON_RATE", "60/min")
PREDICT_MAX_EXPLAIN_S = envint("PREDICT_MAX_EXPLAIN_S", "60")
# Torch threads per server or worker process. One: a web process gets its parallelism from
# concurrent requests, and torch's own threads spin against them (a 0.2 ms window took 15 ms
# with the default on a busy 2-core machine).
TORCH_THREADS = envint("TORCH_THREADS", "1")
# Threads that run HTTP requests in each server process: pages and the API (REQUEST_THREADS),
# and, apart, the device protocol and /health, so that no page can delay a device's samples
# (cardiospike/handlers.py says why).
REQUEST_THREADS = envint("REQUEST_THREADS", "4")
# 2: /health's Redis checks each wait up to their 2-s timeout when Redis hangs rather than
# refuses, and must not hold up a device's chunk behind them
DEVICE_REQUEST_THREADS = envint("DEVICE_REQUEST_THREADS", "2")
for _name, _threads in (
    ("REQUEST_THREADS", REQUEST_THREADS),
    ("DEVICE_REQUEST_THREADS", DEVICE_REQUEST_THREADS),
):
    if _threads < 1:
        raise ImproperlyConfigured(f"{_name}={_threads}: a server process needs at least 1")
# Uploaded recordings (WFDB, CSV): larger uploads are answered 413 before they are read.
UPLOAD_MAX_BYTES = envint("UPLOAD_MAX_BYTES", str(64 * 1024 * 1024))
# An upload's analysis still pending this long after it was queued lost its worker: the
# periodic sweep marks it failed ("Analyse again"), and the page offers the retry at once. A
# 24-hour recording takes seconds to analyse, the largest upload minutes at most
# (docs/upload.md); the rest is room for a queue busy with other analyses.
UPLOAD_ANALYSIS_STALE_S = envfloat("UPLOAD_ANALYSIS_STALE_S", "1800")
# Django refuses bigger bodies before any view runs; keep it above the /predict limit so the
# view can answer 413 with its own message.
DATA_UPLOAD_MAX_MEMORY_SIZE = PREDICT_MAX_BODY_BYTES + 1024 * 1024
# Any request body larger than this is answered 413 by cardiospike/asgi.py before Django reads
# it (by its Content-Length, or as a chunked body grows past it). The largest legitimate body
# is an upload or a /predict request (device chunks are at most 640 KiB); the margin lets their
# views answer a slightly larger one with their own message.
LARGEST_BODY_BYTES = max(UPLOAD_MAX_BYTES, PREDICT_MAX_BODY_BYTES)
REQUEST_MAX_BYTES = envint("REQUEST_MAX_BYTES", str(LARGEST_BODY_BYTES + 1024 * 1024))
if REQUEST_MAX_BYTES < LARGEST_BODY_BYTES:
    raise ImproperlyConfigured(
        f"REQUEST_MAX_BYTES={REQUEST_MAX_BYTES} is below UPLOAD_MAX_BYTES or "
        f"PREDICT_MAX_BODY_BYTES ({LARGEST_BODY_BYTES}): uploads that size would be refused."
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
