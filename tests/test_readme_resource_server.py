"""The README's resource-server check runs as written: it accepts a real exchanged access token
and refuses one for another audience, a forged type and a token past its expiry."""

import re
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.tokens.api.test_oauth import exchange
from tokens.oauth import oauth_client_create
from tokens.signing import _signing_keys

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(settings.BASE_DIR, "README.md").read_text()


def checker_source() -> str:
    (block,) = [block for block in re.findall(r"```python\n(.*?)```", README, re.S) if "resource server" in block]
    return block


def run(script: Path, token: str, issuer: str, audience: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), token],
        env={"ISSUER": issuer, "AUDIENCE": audience, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_readme_resource_server_check_accepts_real_tokens_and_refuses_the_rest(
    live_server, world, tmp_path, settings
):
    settings.PUBLIC_URL = live_server.url  # the issuer the check discovers the keys from
    script = tmp_path / "check.py"
    script.write_text(checker_source())
    client = oauth_client_create(application=world.application, name="backend", actor=None, token_exchange=True)
    pat = world.issue("resource server", roles=("reader",)).plaintext
    access_token = exchange(APIClient(), client, pat).json()["access_token"]
    audience = f"urn:iam:application:{world.application.pk}"

    accepted = run(script, access_token, live_server.url, audience)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.split() == [str(world.user.pk), "orders.read"]

    assert run(script, access_token, live_server.url, "urn:iam:application:someone-else").returncode != 0
    claims = jwt.decode(access_token, options={"verify_signature": False})
    kid, key = _signing_keys()[0]
    untyped = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
    assert run(script, untyped, live_server.url, audience).returncode != 0
    expired = jwt.encode(
        {**claims, "exp": claims["iat"] - 60}, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"}
    )
    assert run(script, expired, live_server.url, audience).returncode != 0
