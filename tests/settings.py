"""Test settings: production settings (DEBUG off) with test secrets."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault(
    "TOKEN_PEPPERS", "t2:test-pepper-two-0123456789abcdefghijklmnop,t1:test-pepper-one-0123456789abcdefghijklmnop"
)
os.environ.setdefault("DEBUG", "0")

from iam.settings import *

STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"
# Serve static files straight from the app folders (no collectstatic in tests).
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

PASSWORD_HASHERS = ["tests.hashers.FastArgon2PasswordHasher", *PASSWORD_HASHERS]

# A file, not memory, so a subprocess (the README test) can share the test database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test.sqlite3")}
