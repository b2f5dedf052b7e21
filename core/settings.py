"""Gavel settings. Every knob comes from the environment through core.env; only URLs differ
between a laptop and production. Embedded defaults: SQLite (WAL) under var/ and the private
Redis that deploy/launch.py starts (it exports REDIS_URL, or leaves it in var/redis.url)."""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_choice, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("GAVEL_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    # Development only: a random key kept under var/, never committed. Production sets
    # SECRET_KEY (one value for every node); `check --deploy` warns without it (core/checks.py).
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def _redis_url() -> str:
    url = env_str("REDIS_URL")
    if url:
        return url
    # The launcher leaves the embedded server's URL here so that management commands run
    # beside `make run` talk to the same Redis.
    path = VAR_DIR / "redis.url"
    if path.exists():
        return path.read_text().strip()
    raise ImproperlyConfigured(
        "REDIS_URL is not set and no embedded Redis is running: "
        "use `make run` / `make test`, or set REDIS_URL=redis://host:port/db"
    )


SECRET_KEY = _secret_key()
SECRET_KEY_FROM_ENV = bool(env_str("SECRET_KEY"))
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# HTTPS=1 for a deployment that browsers reach only over https (directly or through a proxy
# that terminates TLS). Off by default so that `make run` works on plain http://localhost.
# docs/security.md lists what each switch does.
HTTPS = env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
# A load balancer's health check and Prometheus talk plain HTTP to the node itself.
SECURE_REDIRECT_EXEMPT = [r"^api/health$", r"^metrics$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
# HSTS is only sent over https; a year, with subdomains and preload, unless told otherwise.
SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", True)
# Behind a TLS-terminating proxy the node sees plain HTTP; the proxy says https in
# X-Forwarded-Proto. Trust it only where every request comes through a proxy that sets it
# (and overwrites a client's own), or anyone could claim https.
if env_bool("TRUST_X_FORWARDED_PROTO", HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "channels",
    "core",
    "auctions",
    "tasks",
    "realtime",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.JsonErrorsMiddleware",
]

ROOT_URLCONF = "core.urls"
ASGI_APPLICATION = "core.asgi.application"
AUTH_USER_MODEL = "core.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_db_url = env_str("DATABASE_URL")
# DB_POOL_MAX > 0: a psycopg connection pool of that size per process instead of one persistent
# connection per thread. Web processes use it (core/asgi.py): under ASGI each request's sync code
# may run on another thread, so per-thread connections either pile up or, closed after every
# request, cost a new PostgreSQL backend per bid. Workers keep their one persistent connection.
DB_POOL_MAX = env_int("DB_POOL_MAX", 0, minimum=0)
if _db_url:
    _pooled = DB_POOL_MAX > 0 and _db_url.split(":", 1)[0] in {"postgres", "postgresql", "pgsql"}
    DATABASES = {"default": dj_database_url.parse(
        _db_url, conn_max_age=0 if _pooled else env_int("DB_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=not _pooled)}
    if _pooled:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1, "max_size": DB_POOL_MAX, "timeout": env_float("DB_POOL_TIMEOUT_S", 10.0)}
    # The hot statements (core.sql.cursor) are prepared on their second run in each connection,
    # so PostgreSQL stops parsing and planning them on every call. Off (false) behind a pooler
    # that hands one session's statements to several server connections (PgBouncer's
    # transaction mode before 1.21); the ORM's own queries are never prepared.
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
            1 if env_bool("DB_PREPARED_STATEMENTS", True) else None)
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "gavel.sqlite3"),
            # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN
            # so two writers queue on busy_timeout instead of deadlocking on lock upgrade.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            "TEST": {"NAME": str(VAR_DIR / "test.sqlite3")},
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 30}
    )
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    DATABASES["default"].setdefault("TEST", {}).setdefault("NAME", str(VAR_DIR / "test.sqlite3"))
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise serves from finders too; it warns if this is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/login/"

# --- Redis, Celery, Channels -------------------------------------------------------------
REDIS_URL = _redis_url()

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_CREATE_MISSING_QUEUES = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Well above any task's run time: a bid batch takes milliseconds.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 600, minimum=60),
    "priority_steps": [0],
    "health_check_interval": 10,
}
CELERY_BEAT_SCHEDULER = "tasks.beat_scheduler:Scheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"

def _channels_prefix() -> str:
    """Redis pub/sub ignores the database number: two deployments (or test runs) on one Redis
    server but different databases would hear each other's groups. The prefix carries the
    database, unless CHANNELS_PREFIX names one."""
    from urllib.parse import urlsplit

    db = (urlsplit(REDIS_URL).path or "/0").strip("/") or "0"
    return env_str("CHANNELS_PREFIX") or f"gavel{db}"


CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "realtime.layer.BoundedPubSubChannelLayer",
        # Messages buffered for a web process's hub (one channel per process, realtime.hub)
        # before it counts as overflowed and its sockets refill from the event log.
        "CONFIG": {
            "hosts": [{"address": REDIS_URL}],
            "prefix": _channels_prefix(),
            "capacity": env_int("WS_LAYER_BUFFER_MESSAGES", 10000, minimum=10),
        },
    }
}
# Frames buffered per socket while its client is not reading; past that it is closed with 1013
# (try again later) and resumes from its last seq.
WS_BUFFER_MESSAGES = env_int("WS_BUFFER_MESSAGES", 200, minimum=10)
# How often each web process checks its sockets against the event log (finds lost last events).
WS_AUDIT_S = env_float("WS_AUDIT_S", 5.0)

# --- Gavel ---------------------------------------------------------------------------------
SIGNUP_BONUS = env_int("SIGNUP_BONUS", 1000, minimum=0)
ACCESS_TOKEN_TTL = env_int("ACCESS_TOKEN_TTL", 3600, minimum=1)
# How long a web process keeps a token's user (active or not) before reading it again: a user
# deactivated in another process is refused there within this. 0 reads it on every request.
TOKEN_USER_CACHE_S = env_float("TOKEN_USER_CACHE_S", 1.0)
MAX_EXTENSION = env_int("MAX_EXTENSION", 600, minimum=0)  # seconds past the planned end
BID_RATE_PER_SECOND = env_float("BID_RATE_PER_SECOND", 20.0)
BID_RATE_BURST = env_int("BID_RATE_BURST", 40, minimum=1)
BID_BATCH_SIZE = env_int("BID_BATCH_SIZE", 500, minimum=1)
# A bid still queued after this long has lost its doorbell: the sweep rings again.
BID_SWEEP_AFTER_S = env_float("BID_SWEEP_AFTER_S", 2.0)
# How long a rung doorbell suppresses further rings of the same auction (tasks.doorbell.ring).
DOORBELL_TTL_S = env_float("DOORBELL_TTL_S", 2.0)
# Bid workers heartbeat every second; one silent for this long loses its auctions.
BID_WORKER_TIMEOUT_S = env_float("BID_WORKER_TIMEOUT_S", 4.0)
# A worker's PostgreSQL sessions (tasks/connections.py): a lock wait longer than this fails and
# the task retries (well under BID_WORKER_TIMEOUT_S, so a waiting worker keeps heartbeating);
# a transaction left idle this long (its worker stalled) is ended by PostgreSQL.
WORKER_LOCK_TIMEOUT_MS = env_int("WORKER_LOCK_TIMEOUT_MS", 1000, minimum=1)
WORKER_IDLE_IN_TRANSACTION_S = env_float("WORKER_IDLE_IN_TRANSACTION_S", 5.0)
# Timers due within this horizon get an ETA task so they fire on time, not on the next tick.
TIMER_ARM_AHEAD_S = env_float("TIMER_ARM_AHEAD_S", 2.5)
METRICS_TOKEN = env_str("METRICS_TOKEN")
# /metrics sums every balance (the ledger invariant) at most this often, for all nodes together.
METRICS_LEDGER_CHECK_S = env_float("METRICS_LEDGER_CHECK_S", 30.0)

# plain: for a terminal; json: one object per line with the structured fields (core/logs.py).
LOG_FORMAT = env_choice("LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"()": "core.logs.PlainFormatter"}, "json": {"()": "core.logs.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY is empty")
