"""Settings for the benchmarks: the test secrets, plus the peer libraries'
apps, on a database of the benchmark's own (BENCH_DATABASE_URL)."""

import os

import dj_database_url

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework.authtoken", "knox", "rest_framework_api_key"]  # noqa: F405
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'bench.sqlite3'}"),  # noqa: F405
        conn_max_age=600,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The page cache iam/settings.py gives its connections.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "init_command": "PRAGMA cache_size=-65536;"}
else:
    DATABASES["default"]["OPTIONS"] = {"options": "-c jit=off", "prepare_threshold": 0}  # as iam/settings.py
# The Argon2 peer must pay Argon2's real cost.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
ROOT_URLCONF = "benchmarks.urls"
REST_KNOX = {"AUTO_REFRESH": False}
LOGGING = {"version": 1, "disable_existing_loggers": True, "root": {"level": "ERROR"}}
# scale.py drives the real views with Django's test client.
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405
