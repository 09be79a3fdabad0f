"""Site settings.

Every environment variable the service reads is read here and nowhere else;
the README lists them. Apps read their own knobs from ``django.conf.settings``.
"""

import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _env_positive_int(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    if not value.strip().isdigit() or int(value) < 1:
        raise ImproperlyConfigured(f"{name} must be a whole number of at least 1.")
    return int(value)


DEBUG = _env_bool("DEBUG")

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"


def _parse_peppers(raw: str) -> dict[str, bytes]:
    """Parse ``id:secret,id:secret``; the first entry is the current pepper."""
    peppers: dict[str, bytes] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        pepper_id, sep, secret = item.partition(":")
        if not sep or not pepper_id or len(secret) < 32:
            raise ImproperlyConfigured(
                "TOKEN_PEPPERS must be 'id:secret' pairs separated by commas, each secret at least 32 characters."
            )
        if len(pepper_id) > 16:
            raise ImproperlyConfigured("A TOKEN_PEPPERS id is at most 16 characters.")
        peppers[pepper_id] = secret.encode()
    return peppers


# Keyed hashing of tokens: HMAC-SHA256 with a server-side pepper that never
# reaches the database, so a stolen dump alone cannot verify guessed tokens.
TOKEN_PEPPERS = _parse_peppers(os.environ.get("TOKEN_PEPPERS", ""))
if not TOKEN_PEPPERS:
    if not DEBUG:
        raise ImproperlyConfigured("TOKEN_PEPPERS must be set when DEBUG is off.")
    TOKEN_PEPPERS = {"dev": b"insecure-development-pepper-do-not-use-in-production"}


def _dev_signing_key() -> str:
    """A development-only RS256 key, made once and kept under var/."""
    path = BASE_DIR / "var" / "dev-jwt-signing-key.pem"
    if not path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
    return f"dev:{path}"


def _parse_signing_keys(raw: str) -> dict[str, str]:
    """Parse ``kid:/path/to/key.pem,…`` (current key first) into {kid: PEM text}."""
    keys: dict[str, str] = {}
    for item in raw.split(","):
        kid, sep, path = item.strip().partition(":")
        if not item.strip():
            continue
        if not sep or not kid or not path:
            raise ImproperlyConfigured("JWT_SIGNING_KEYS must be 'kid:/path/to/private-key.pem' pairs.")
        keys[kid] = Path(path).read_text()
    return keys


# RS256 keys that sign exchanged access tokens (RFC 8693); the first signs,
# all are published in the JWKS so tokens signed before a rotation verify.
JWT_SIGNING_KEYS = _parse_signing_keys(os.environ.get("JWT_SIGNING_KEYS", ""))
if not JWT_SIGNING_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured("JWT_SIGNING_KEYS must be set when DEBUG is off.")
    JWT_SIGNING_KEYS = _parse_signing_keys(_dev_signing_key())

PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
REDIS_URL = os.environ.get("REDIS_URL", "")

INSTALLED_APPS = [
    "iam.apps.IamAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "iam",
    "tenants",
    "tokens",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outermost with the other headers, so the answers of the middleware
    # below (a bad Host's 400, a NUL byte's 400, static files) carry them too.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.SecurityHeadersMiddleware",
    # A database outage in a view answers 503 with Retry-After, not 500.
    "core.middleware.DatabaseUnavailableMiddleware",
    "core.middleware.RejectNullBytesMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
# Django's default storage; the console holds back what a change it rolls back said.
MESSAGE_STORAGE = "core.messages.HoldingStorage"

ROOT_URLCONF = "iam.urls"
WSGI_APPLICATION = "iam.wsgi.application"
ASGI_APPLICATION = "iam.asgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent requests must wait their turn, never fail with "database is
    # locked": a transaction takes the write lock when it begins (IMMEDIATE),
    # not when it first writes (a deferred transaction that read first cannot
    # wait for the lock: SQLite refuses it at once), and waits up to 20 s for
    # it. WAL lets readers go on while one writes. A page cache of 64 MiB a
    # connection (SQLite's default is 2 MiB) keeps the indexes a token lookup
    # walks in memory once the token table has grown.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=20,
        transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;",
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and not _env_bool("DATABASE_JIT"):
    # PostgreSQL's JIT compiles the plan of any query it thinks costly: close to
    # a second for the console's counts, a loss for every query this service runs.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Authentication's token lookup (tokens.lookup) has seven joins: PostgreSQL
    # takes longer to plan it than to run it, so it runs as a prepared statement.
    # Only cursors that bind on the server prepare, and only the lookup uses one.
    # DATABASE_PREPARED_STATEMENTS=0 behind a pooler that cannot keep them.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        0 if _env_bool("DATABASE_PREPARED_STATEMENTS", default=True) else None
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "iam.User"
AUTHENTICATION_BACKENDS = ["iam.backends.UsernameOrEmailBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery: with Redis it is the broker; without it tasks run in-process, so the
# embedded default needs nothing but Python.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
# A task is acknowledged when it finishes, so a worker killed mid-task leaves
# it for another; tasks are idempotent, so running one twice is harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task a killed worker had taken is delivered again after this many seconds:
# longer than any task runs (the sweeps take seconds at a million tokens) and
# than the longest retry delay (300 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 600}
# Publishing must not hang a web request when Redis is down.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE = {
    "flush-usage": {"task": "tokens.tasks.flush_usage", "schedule": 30.0},
    # Changes a process could not broadcast to the token caches (see tokens.authcache).
    "relay-invalidations": {"task": "tokens.tasks.relay_invalidations", "schedule": 5.0},
    "expiry-reminders": {"task": "tokens.tasks.sweep_expiry_reminders", "schedule": 15 * 60.0},
    "housekeeping": {"task": "tokens.tasks.housekeeping", "schedule": 60 * 60.0},
    "webhook-deliveries": {"task": "tokens.tasks.sweep_webhook_deliveries", "schedule": 60.0},
    "inactive-marks": {"task": "tokens.tasks.reconcile_inactive_marks", "schedule": 60 * 60.0},
    "idle-tokens": {"task": "tokens.tasks.sweep_idle_tokens", "schedule": 60 * 60.0},
    # Hourly, each approver at most once a day: a request made in the morning is seen that morning.
    "approval-digests": {"task": "tokens.tasks.send_approval_digests", "schedule": 60 * 60.0},
    "admin-digests": {
        "task": "tokens.tasks.send_admin_digests",
        "schedule": crontab(hour=7, minute=0, day_of_week="mon"),
    },
}
# The dashboard computes its figures per request below this many tokens; above,
# it reads per-tenant figures that beat refreshes every DASHBOARD_REFRESH_SECONDS.
DASHBOARD_LIVE_LIMIT = int(os.environ.get("DASHBOARD_LIVE_LIMIT", "20000"))
DASHBOARD_REFRESH_SECONDS = int(os.environ.get("DASHBOARD_REFRESH_SECONDS", "300"))
CELERY_BEAT_SCHEDULE["dashboard-figures"] = {
    "task": "tokens.tasks.refresh_dashboard_figures",
    "schedule": float(DASHBOARD_REFRESH_SECONDS),
}
AUDIT_RETENTION_DAYS = int(os.environ.get("AUDIT_RETENTION_DAYS", "730"))
# The gateway (GET /auth/forward) reads the client's address from X-Forwarded-For
# only when the request comes from one of these proxies (CIDR ranges).
GATEWAY_TRUSTED_PROXIES = _env_list("GATEWAY_TRUSTED_PROXIES", "127.0.0.1/32,::1/128")
# Webhooks: HTTPS to public addresses only; plain HTTP to loopback only with
# this on (development, tests). Deliveries done are kept this many days.
WEBHOOK_ALLOW_LOOPBACK = _env_bool("WEBHOOK_ALLOW_LOOPBACK")
WEBHOOK_TIMEOUT_SECONDS = _env_positive_int("WEBHOOK_TIMEOUT_SECONDS", 10)
WEBHOOK_DELIVERY_RETENTION_DAYS = _env_positive_int("WEBHOOK_DELIVERY_RETENTION_DAYS", 30)

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "core.mail.ConsoleEmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "iam@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tokens.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.StrictLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.api.schema.Schema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "IAM with personal access tokens",
    "DESCRIPTION": "Personal access tokens, embedding (ToolJet-compatible), management and OAuth 2.0 token "
    "exchange (Logto-compatible). Every error of the /api endpoints has the shape "
    '{"error": {"code", "message", "fields"?}}; the /oauth endpoints answer with RFC 6749 errors.',
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # PATCH bodies are validated in full (a rename needs its name): no "Patched" all-optional variants.
    "COMPONENT_SPLIT_PATCH": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

# Token policy.
TOKEN_LAST_USED_WRITE_INTERVAL_SECONDS = 60
AUTH_FAILURES_PER_MINUTE_PER_IP = int(os.environ.get("AUTH_FAILURES_PER_MINUTE_PER_IP", "30"))
TOKEN_CREATIONS_PER_MINUTE = 10
# Failed sign-ins (iam.signin): per client address and per username tried,
# in fixed windows; past either the sign-in page answers 429 without checking
# the password.
SIGN_IN_FAILURES_PER_IP = _env_positive_int("SIGN_IN_FAILURES_PER_IP", 50)
SIGN_IN_FAILURES_PER_USERNAME = _env_positive_int("SIGN_IN_FAILURES_PER_USERNAME", 10)
SIGN_IN_WINDOW_SECONDS = _env_positive_int("SIGN_IN_WINDOW_SECONDS", 900)
# Creating, regenerating, widening or extending a token in the browser asks for
# the password again once the session's sign-in is older than this (sudo mode).
REAUTHENTICATION_SECONDS = _env_positive_int("REAUTHENTICATION_SECONDS", 600)
LEAK_REPORTS_PER_MINUTE = 10  # per client address
# Authenticated tokens are cached in each process (only with Redis, which
# carries the invalidations): at most this long, and this many per process.
# 0 seconds turns the cache off.
TOKEN_CACHE_SECONDS = int(os.environ.get("TOKEN_CACHE_SECONDS", "30"))
TOKEN_CACHE_SIZE = int(os.environ.get("TOKEN_CACHE_SIZE", "10000"))

# Security headers. Cookies are Secure in production (DEBUG off).
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
if _env_bool("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "tokens:list"
LOGOUT_REDIRECT_URL = "login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
