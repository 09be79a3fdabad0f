"""The README's django-oauth-toolkit resource server runs as written: its settings and its view, in a
separate Django process (DOT's models are not ours to install here), validate this service's tokens
through /oauth/introspect on a live server, with DOT's own code judging the answers."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.factories import RoleFactory, grant
from tests.tokens.api.test_oauth import exchange
from tokens.oauth import oauth_client_create
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(settings.BASE_DIR, "README.md").read_text()

# A minimal Django project around the README's two blocks: the settings block runs with the
# project's own INSTALLED_APPS defined first (it adds oauth2_provider), the view is routed at
# /orders, and requests go through Django's test client. Commands on stdin, one answer a line:
# "get <token>" answers {"status", "body"}; "ttl -" the seconds left to the longest-lived answer DOT
# cached; "age <seconds>" moves the expiry of every cached answer back by that much, as if the
# time had passed.
HARNESS = """
import json
import sys
from datetime import timedelta

import django
from django.conf import settings

project = {"INSTALLED_APPS": ["django.contrib.auth", "django.contrib.contenttypes"]}
exec(open(sys.argv[1]).read(), project)
if sys.argv[3] == "dot-default-audience-check":
    del project["OAUTH2_PROVIDER"]["RESOURCE_SERVER_TOKEN_RESOURCE_VALIDATOR"]
elif sys.argv[3] == "no-caching":
    project["OAUTH2_PROVIDER"]["RESOURCE_SERVER_TOKEN_CACHING_SECONDS"] = 0
settings.configure(
    SECRET_KEY="a resource server",
    ALLOWED_HOSTS=["testserver"],
    USE_TZ=True,
    ROOT_URLCONF="__main__",
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    **{name: value for name, value in project.items() if name.isupper()},
)
django.setup()

from django.core.management import call_command
from django.db.models import F
from django.test import Client
from django.urls import path
from django.utils import timezone
from oauth2_provider.models import AccessToken

call_command("migrate", verbosity=0)
views = {}
exec(open(sys.argv[2]).read(), views)
urlpatterns = [path("orders", views["Orders"].as_view())]
client = Client()
print(json.dumps({"caching_seconds": project["OAUTH2_PROVIDER"]["RESOURCE_SERVER_TOKEN_CACHING_SECONDS"]}), flush=True)
for line in sys.stdin:
    command, argument = line.split()
    if command == "get":
        response = client.get("/orders", HTTP_AUTHORIZATION=f"Bearer {argument}")
        body = response.json() if response.headers.get("Content-Type") == "application/json" else None
        print(json.dumps({"status": response.status_code, "body": body}), flush=True)
    elif command == "ttl":
        expires = max(AccessToken.objects.values_list("expires", flat=True))
        print(json.dumps({"ttl": (expires - timezone.now()).total_seconds()}), flush=True)
    elif command == "age":
        aged = AccessToken.objects.update(expires=F("expires") - timedelta(seconds=int(argument)))
        print(json.dumps({"aged": aged}), flush=True)
"""


def readme_block(first_line: str) -> str:
    (block,) = [block for block in re.findall(r"```python\n(.*?)```", README, re.S) if block.startswith(first_line)]
    return block


class ResourceServer:
    """The README's DOT resource server, in its own process."""

    def __init__(self, tmp_path: Path, env: dict[str, str], mode: str = "as-written"):
        (tmp_path / "settings_block.py").write_text(readme_block("# settings.py of a Django application"))
        (tmp_path / "views_block.py").write_text(readme_block("# views.py"))
        (tmp_path / "harness.py").write_text(HARNESS)
        self.stderr = tmp_path / "stderr.txt"
        with self.stderr.open("w") as stderr:  # a file: a full pipe nobody reads would block the process
            self.process = subprocess.Popen(
                [sys.executable, "harness.py", "settings_block.py", "views_block.py", mode],
                cwd=tmp_path,
                env={"PATH": "/usr/bin:/bin", "NO_PROXY": "*", **env},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self.caching_seconds = self.read()["caching_seconds"]

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=30)
            raise AssertionError(self.stderr.read_text())
        return json.loads(line)

    def send(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()

    def get(self, token: str) -> dict:
        return self.send(f"get {token}")

    def close(self) -> None:
        self.process.stdin.close()  # the harness ends with its input
        self.process.wait(timeout=30)
        self.process.stdout.close()


@pytest.fixture
def setup(live_server, world, settings):
    settings.PUBLIC_URL = live_server.url  # the tokens' issuer and first audience
    orders = RoleFactory(application=world.application, code="orders", permissions=["crm.orders.read"])
    grant(world.user, orders)
    exchanging = oauth_client_create(application=world.application, name="crm backend", actor=None, token_exchange=True)
    introspecting = oauth_client_create(application=world.application, name="crm resource server", actor=None)
    env = {
        "IAM_URL": live_server.url,
        "IAM_APPLICATION_ID": str(world.application.pk),
        "IAM_CLIENT_ID": introspecting.client.client_id,
        "IAM_CLIENT_SECRET": introspecting.secret,
    }
    return world, exchanging, env


def test_the_readme_dot_resource_server_takes_our_tokens_and_drops_revoked_ones_after_its_cache(setup, tmp_path):
    world, client, env = setup
    pat = world.issue("dot resource server", roles=("orders",))
    access_token = exchange(APIClient(), client, pat.plaintext, scope="crm.orders.read").json()["access_token"]
    # An access token for this service's own API only (aud without the application): not for the application.
    own_api_only = exchange(APIClient(), client, pat.plaintext, resource=settings.PUBLIC_URL).json()["access_token"]
    without_permission = world.issue("reader only", roles=("reader",)).plaintext

    server = ResourceServer(tmp_path, env)
    try:
        assert server.caching_seconds == 30
        accepted = server.get(access_token)
        assert accepted == {"status": 200, "body": {"user": world.user.username, "scope": "crm.orders.read"}}
        assert server.get(pat.plaintext)["status"] == 200  # a PAT of the application, introspected as well
        assert server.get(own_api_only)["status"] == 401  # the README's audience check
        assert server.get(without_permission)["status"] == 403  # active, but no crm.orders.read
        assert server.get("pat_not-a-token")["status"] == 401

        token_revoke(token=pat.token, actor=None, actor_label="test")
        # DOT answers from its cache, for 30 seconds and not its default 10 hours: the latency the README warns of.
        assert server.get(access_token)["status"] == 200
        assert server.caching_seconds - 10 < server.send("ttl -")["ttl"] <= server.caching_seconds
        assert server.send(f"age {server.caching_seconds + 1}")["aged"] >= 2
        assert server.get(access_token)["status"] == 401
        assert server.get(pat.plaintext)["status"] == 401
    finally:
        server.close()


@pytest.mark.parametrize("mode", ["dot-default-audience-check", "no-caching"])
def test_what_the_readme_warns_of(setup, tmp_path, mode):
    """Why the README sets a validator: DOT's default audience check (RFC 8707, the request's URL
    starts with an aud) never matches the application's URN, though a PAT (no aud) passes it. Why
    not caching 0: DOT caches the answer until now, and the token is expired when it is checked."""
    world, client, env = setup
    pat = world.issue("dot default", roles=("orders",)).plaintext
    access_token = exchange(APIClient(), client, pat, scope="crm.orders.read").json()["access_token"]
    server = ResourceServer(tmp_path, env, mode=mode)
    try:
        assert server.get(access_token)["status"] == 401
        assert server.get(pat)["status"] == (200 if mode == "dot-default-audience-check" else 401)
    finally:
        server.close()
