"""Test settings: production settings (DEBUG off) with test secrets."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault(
    "TOKEN_PEPPERS", "t2:test-pepper-two-0123456789abcdefghijklmnop,t1:test-pepper-one-0123456789abcdefghijklmnop"
)
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("WEBHOOK_ALLOW_LOOPBACK", "1")  # the tests' receivers listen on 127.0.0.1


def _test_signing_keys() -> str:
    """Two RS256 keys (current first) under var/, made once, to test rotation."""
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    folder = Path(__file__).resolve().parent.parent / "var"
    folder.mkdir(exist_ok=True)
    entries = []
    for kid in ("test-2", "test-1"):
        path = folder / f"{kid}.pem"
        if not path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        entries.append(f"{kid}:{path}")
    return ",".join(entries)


os.environ.setdefault("JWT_SIGNING_KEYS", _test_signing_keys())

from iam.settings import *

STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"
# Serve static files straight from the app folders (no collectstatic in tests).
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

PASSWORD_HASHERS = ["tests.hashers.FastArgon2PasswordHasher", *PASSWORD_HASHERS]

# A file, not memory, so a subprocess (the README test) can share the test
# database: it inherits the name through the environment. One file per run,
# so two runs at once do not write into each other's database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    os.environ.setdefault("IAM_TEST_SQLITE", str(BASE_DIR / "var" / f"test-{os.getpid()}.sqlite3"))
    DATABASES["default"]["TEST"] = {"NAME": os.environ["IAM_TEST_SQLITE"]}

# Live-server threads must not keep connections open past a test (PostgreSQL
# cannot drop the test database while one is open).
DATABASES["default"]["CONN_MAX_AGE"] = 0
