"""The README's shell examples run as written against a live server."""

import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from iam.models import ServiceRole
from tests.factories import service_role

README = Path(settings.BASE_DIR, "README.md").read_text()


def shell_blocks_with(marker: str) -> list[str]:
    return [block for block in re.findall(r"```sh\n(.*?)```", README, re.S) if marker in block]


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def run_block(block: str, base_url: str) -> dict:
    script = (
        block.replace("http://127.0.0.1:8000", base_url)
        .replace(".venv/bin/python", sys.executable)
        .replace("python3 -c", f"{sys.executable} -c")
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    result = subprocess.run(
        ["/bin/bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=settings.BASE_DIR,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.django_db(transaction=True)
def test_every_readme_curl_example_works_as_written(live_server, settings):
    settings.PUBLIC_URL = live_server.url  # what make run's server calls itself
    for code in ServiceRole:
        service_role(code)  # restore the migration's rows after earlier flushes
    call_command("seed_demo", stdout=StringIO())
    blocks = shell_blocks_with("curl -s")
    assert len(blocks) >= 6
    results = {}
    for block in blocks:
        body = run_block(block, live_server.url)
        assert "error" not in body, (block, body)
        results[block.split("curl")[0]] = body
    by_marker = {
        marker: next(body for block, body in results.items() if marker in block)
        for marker in (
            '--app crm --name "my script"',
            "--role developer",
            "create_integration_credential",
            "ALICE_ID",
            "create_oauth_client",
            "LEAKED",
            "CI_TOKEN",
        )
    }
    me = by_marker['--app crm --name "my script"']
    assert me["user"]["username"] == "alice" and me["application"]["slug"] == "crm"
    assert me["permissions"] == ["crm.contacts.read", "crm.contacts.write", "crm.orders.read"]
    assert by_marker["--role developer"]["status"] == "ok"
    assert by_marker["create_integration_credential"]["redirectUrl"].startswith(f"{live_server.url}/embed-apps/")
    assert isinstance(by_marker["ALICE_ID"], list)
    exchanged_me = by_marker["create_oauth_client"]
    assert exchanged_me["permissions"] == ["crm.orders.read"] and exchanged_me["user"]["username"] == "alice"
    assert by_marker["LEAKED"] == {"status": "received"}
    rotated = by_marker["CI_TOKEN"]
    assert rotated["token"].startswith("pat_") and rotated["previousSecretWorksUntil"]
