"""Tally settings: one module, configured from the environment.

With nothing set it runs locally on a SQLite file, the in-memory channel
layer and eager Celery. Production sets DATABASE_URL, REDIS_URL, SECRET_KEY,
ALLOWED_HOSTS and DEBUG=0. Every variable is listed in the README.
"""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from usage_site.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", default=True)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    # A development-only key: sessions signed with it are worthless anywhere else.
    SECRET_KEY = "django-insecure-tally-local-development-only-key-do-not-deploy"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "csp",
    "axes",
    "ninja",
    "template_partials",
    "auditlog",  # before accounts: accounts/admin.py replaces the LogEntry admin auditlog registers
    "accounts",
    "metering",
    "dashboards",
]

# WhiteNoise last, not second as its docs suggest: it is the one middleware that cannot run
# async, and under ASGI Django runs those below a sync-only one in async mode, each of their
# process_request/process_response calls a hop to a thread and back. Last, the whole chain runs
# in the request's thread: a request with no database work went from 520 to 720 a second (two
# daphne, 4 clients), a 40-point OTLP export from 98 to 105. Static files pass the others first.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # after authentication, as its docs ask
    # Sync-only like WhiteNoise, and beside it, so it adds no hop: the chain above WhiteNoise runs
    # in one thread already (see above).
    "accounts.audit.AuditActorMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
]

ROOT_URLCONF = "usage_site.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "usage_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# Database: PostgreSQL (psycopg 3) in production, a SQLite file by default.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", True):
        # Under ASGI every request runs its sync view in a thread of its own, so a kept connection
        # (CONN_MAX_AGE) is never reused and a new one costs each request ~10 ms (bench/otlp.py);
        # kept ones pile up until max_connections. A pool per process lends each request one of
        # DB_POOL_SIZE connections, checked before lending (CONN_HEALTH_CHECKS), so a restarted
        # server's broken connections are replaced, not handed out.
        DATABASES["default"] |= {"CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": True}
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": env_int("DB_POOL_SIZE", 10),
            "timeout": 10,
        }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # The dashboards' queries take milliseconds; PostgreSQL's JIT spent 10-50 ms compiling
        # each of the larger ones for nothing (bench/queries.py on 10M records). Raw reads count
        # distinct conversations and sessions that the planner underestimates 10x: with the
        # default 4MB work_mem, 30 days' distinct conversations (570,000) spilled a parallel hash
        # aggregate to disk for minutes; with 64MB it takes 2 s. A rollup rebuild stages the
        # day's records in temporary tables (13 MB on the busiest day): temp_buffers of 64MB
        # keeps them in memory (allocated only as used). The rollups and indexes a dashboard reads
        # are in memory, not on a disk where random reads cost 4x sequential ones: at the default
        # random_page_cost a manager's session count hashed all 200,000 sessions (20 ms) instead of
        # looking up its 1,900 by key (7 ms), and their Analytics page took 420 ms, 330 with 1.1.
        work_mem = env_str("DB_WORK_MEM", "64MB")
        DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
            f"-c jit=off -c work_mem={work_mem} -c temp_buffers=64MB -c random_page_cost=1.1"
        )
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "tally.sqlite3",
            # A file, not memory, so a browser test's server process sees the test data.
            "TEST": {"NAME": BASE_DIR / "test_tally.sqlite3"},
            "OPTIONS": {"timeout": 20},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Covering indexes (INCLUDE) speed up PostgreSQL; SQLite, the embedded default, ignores them.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"

# Sign-in throttling (django-axes) on the login page and the admin's: AXES_FAILURE_LIMIT wrong
# passwords for one email from one address lock that pair out for AXES_COOLOFF_TIME (a 429
# page that says so and for how long); a success resets the count. The pair, not the email alone, so
# a stranger cannot lock a colleague out from elsewhere. Admins unlock early in the admin
# (Axes > Access attempts) or with `manage.py axes_reset_username <email>`.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_FORM_FIELD = "username"  # the login forms' field (USERNAME_FIELD, its default, is "email")
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.views.locked_out"
AXES_SENSITIVE_PARAMETERS = ["password"]
AXES_VERBOSE = False  # no banner on every process start
LOGOUT_REDIRECT_URL = "login"

# The audit log (DESIGN §14, django-auditlog): every change to these models is recorded with who
# (the signed-in user; empty for management commands), when, and each field's before -> after,
# readable and never editable in the admin (accounts/admin.py). One list, here above the apps, so
# accounts need not know metering's models; budgets join it with one line when they exist. Left
# out: API key secrets (the hash), and what ingestion writes on every request (last_used_at: it
# is written with update(), which logs nothing, and excluded should it ever be a save()).
# Memberships' teams are recorded when set on a membership (its page, an org's or user's inline,
# create_user); the members inline on a team's page writes the link rows directly, which Django
# sends no signal for, so those changes are not recorded yet.
# auditlog's record of a creation or deletion also lists reverse relations, as "accounts.Team.None":
# those are excluded by name.
AUDITLOG_INCLUDE_TRACKING_MODELS = [
    {"model": "accounts.Organization", "exclude_fields": ["teams", "memberships", "api_keys", "tags"]},
    "accounts.Team",
    {"model": "accounts.Membership", "m2m_fields": ["teams"]},
    {"model": "accounts.ApiKey", "exclude_fields": ["secret_hash", "last_used_at", "otlp_stats"]},
    "metering.ModelPrice",
]
# A relation is recorded by name ("team: Platform → Web") as it read then, not by id: readable
# without a lookup per row, and still after the row is gone.
AUDITLOG_USE_FK_STRING_REPRESENTATION = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# daphne serves no static files: WhiteNoise does, from the finders while DEBUG
# (no collectstatic needed in development) and from STATIC_ROOT otherwise.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Redis: the channel layer for Live Mode and the Celery broker. Without it,
# Live Mode uses the in-process layer and Celery runs tasks eagerly.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout None: redis-py 8's 5 s default kills idle consumers (DESIGN §11).
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "rebuild-dirty-rollups": {"task": "metering.tasks.rebuild_dirty_days", "schedule": 60.0},
    "forget-idle-otlp-streams": {"task": "metering.tasks.forget_idle_otlp_streams", "schedule": 24 * 3600.0},
}

# Money: every cost column uses these, and metering.pricing quantises to them.
# 10 decimal places keep one token of the cheapest listed model exact.
MONEY_MAX_DIGITS = 22
MONEY_DECIMAL_PLACES = 10

# The APIs. Ingest bodies are capped at 5 MB (DESIGN §5); Django must let
# that much through for the API to answer 413 itself above it.
API_MAX_BODY_BYTES = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES + 1024
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 600)

# Production hardening; all on when DEBUG is off (see `manage.py check --deploy`).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes speak plain HTTP to the process
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
# Pages send the token from the template (hx-headers in base.html); no script reads the cookie.
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", default=False) else None
# The client address the sign-in throttle counts by: the proxy's X-Forwarded-For only behind
# one, else a client could name a new address with every guess.
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if env_bool("BEHIND_PROXY", default=False) else ["REMOTE_ADDR"]
)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Content-Security-Policy (django-csp) on every answer: scripts, styles, images, fonts and
# connections (fetch, the Live Mode websocket) from this origin only, never inline scripts or
# eval (our templates have none; data reaches scripts through json_script and data- attributes).
# Style attributes are allowed (style-src-attr): the team colours and bar widths are set in
# them; <style> elements are not (htmx's own is off: includeIndicatorStyles in base.html).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
