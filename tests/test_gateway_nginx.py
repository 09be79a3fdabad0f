"""The gateway behind Debian's real nginx, configured with the README's snippet as written:
nginx's ``auth_request`` asks the service before every request to a small application on loopback."""

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from django.conf import settings

from iam.tenancy import application_route_rules_set, application_update
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db(transaction=True)

NGINX = "/usr/sbin/nginx"
README = Path(settings.BASE_DIR, "README.md").read_text()
RULES = [
    {"method": "GET", "path": "/orders/**", "permissions": ["orders.read"]},
    {"method": "POST", "path": "/orders/**", "permissions": ["orders.write"]},
    {"method": "*", "path": "/health", "permissions": []},
    {"method": "*", "path": "/admin/**", "permissions": ["settings.manage"]},
]


def readme_server_block() -> str:
    (block,) = [block for block in re.findall(r"```nginx\n(.*?)```", README, re.S) if "auth_request" in block]
    return block


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Application(BaseHTTPRequestHandler):
    """The protected application: answers with what it received, and remembers it."""

    seen: list[dict] = []

    def _answer(self):
        self.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items())})
        body = json.dumps(self.seen[-1]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream():
    Application.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Application)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def nginx_config(folder: Path, port: int, service: str, upstream: int, slug: str, extra: str = "") -> Path:
    """A whole nginx.conf around the README's server block (listening on ``port``, asking the
    service at ``service`` about application ``slug``, passing to ``upstream``); also the benchmark's."""
    server = (
        readme_server_block()
        .replace("listen 8080;", f"listen 127.0.0.1:{port};")
        .replace("http://127.0.0.1:9000", f"http://127.0.0.1:{upstream}")
        .replace("http://127.0.0.1:8000", f"http://{service}")
        .replace("X-IAM-Application crm;", f"X-IAM-Application {slug};")
    )
    assert f"127.0.0.1:{port}" in server and service in server and slug in server, "the README's snippet changed"
    folder.chmod(0o755)
    temp = "".join(
        f"{kind}_temp_path {folder}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = folder / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log warn;\n"
        + "events { worker_connections 256; }\n"
        + f"http {{\naccess_log off;\n{temp}{server}\n{extra}}}\n"
    )
    return conf


@pytest.fixture
def nginx(live_server, upstream, world, tmp_path):
    """nginx with the README's server block, pointed at the live service and the application."""
    if not os.access(NGINX, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail("nginx is missing: scripts/ensure-services.sh installs it")
        pytest.skip("nginx is not installed (make services)")
    port = free_port()
    conf = nginx_config(tmp_path, port, live_server.url.removeprefix("http://"), upstream, world.application.slug)
    command = [NGINX, "-p", str(tmp_path), "-c", str(conf)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(tmp_path / "proxy", ignore_errors=True)


@pytest.fixture
def configured(world, app_admin):
    application_update(application=world.application, changes={"gateway_default": "deny"}, actor=app_admin)
    application_route_rules_set(application=world.application, rules=RULES, actor=app_admin)


def call(nginx: str, method: str, path: str, token: str | None = None, **headers) -> requests.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    # A prepared request keeps the path exactly as written (no client-side dot-segment removal).
    session = requests.Session()
    request = requests.Request(method, nginx + "/", headers=headers).prepare()
    request.url = nginx + path
    return session.send(request, timeout=10)


def test_a_valid_token_reaches_the_application_with_who_is_asking(nginx, configured, world, other_world):
    issued = world.issue(roles=("reader",))
    forged = {
        "X-Auth-User": "mallory",
        "X-Auth-Permissions": "orders.read orders.write settings.manage",
        "X-Auth-Token-Id": "1",
        "X-IAM-Application": other_world.application.slug,
        "X-Forwarded-Host": "elsewhere.example",
    }
    response = call(nginx, "GET", "/orders/7?page=2", issued.plaintext, **forged)
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["path"] == "/orders/7?page=2"
    assert seen["headers"]["X-Auth-User"] == world.user.username
    assert seen["headers"]["X-Auth-User-Id"] == str(world.user.pk)
    assert seen["headers"]["X-Auth-Email"] == world.user.email
    assert seen["headers"]["X-Auth-Tenant"] == world.tenant.slug
    assert seen["headers"]["X-Auth-Token-Id"] == str(issued.token.pk)
    assert seen["headers"]["X-Auth-Permissions"] == "orders.read"
    assert call(nginx, "GET", "/health", issued.plaintext).status_code == 200


def test_what_the_token_may_not_do_never_reaches_the_application(nginx, configured, world, other_world):
    reader = world.issue(roles=("reader",)).plaintext
    assert call(nginx, "POST", "/orders", reader).status_code == 403  # orders.write is missing
    assert call(nginx, "GET", "/reports", reader).status_code == 403  # no rule: the default denies
    for dodge in ("/health/..%2Fadmin", "/health/../admin/users", "//admin", "/%61dmin"):
        assert call(nginx, "GET", dodge, reader).status_code == 403, dodge
    # The client's own X-Forwarded-Uri is replaced by nginx; its X-Original-URI contradicts it: refused.
    assert call(nginx, "GET", "/admin", reader, **{"X-Forwarded-Uri": "/health"}).status_code == 403
    assert call(nginx, "GET", "/admin", reader, **{"X-Original-URI": "/health"}).status_code == 500
    assert call(nginx, "GET", "/orders/1", other_world.issue(roles=("reader",)).plaintext).status_code == 403

    missing = call(nginx, "GET", "/orders/1")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="iam"'  # the gateway's challenge, passed on
    bad = call(nginx, "GET", "/orders/1", "pat_" + "x" * 40)
    assert bad.status_code == 401 and bad.headers["WWW-Authenticate"].startswith('Bearer realm="iam"')
    assert Application.seen == []


def test_a_revoked_token_is_refused_on_the_very_next_request(nginx, configured, world):
    issued = world.issue(roles=("reader",))
    assert call(nginx, "GET", "/orders/1", issued.plaintext).status_code == 200
    token_revoke(token=issued.token, actor=None, actor_label="test")
    assert call(nginx, "GET", "/orders/1", issued.plaintext).status_code == 401
    assert len(Application.seen) == 1
