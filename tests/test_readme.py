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
    script = block.replace("http://127.0.0.1:8000", base_url).replace(".venv/bin/python", sys.executable)
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
def test_readme_curl_examples_work_as_written(live_server):
    for code in ServiceRole:
        service_role(code)  # restore the migration's rows after earlier flushes
    call_command("seed_demo", stdout=StringIO())
    (me_block,) = shell_blocks_with("/api/v1/me")
    body = run_block(me_block, live_server.url)
    assert body["user"]["username"] == "alice" and body["application"]["slug"] == "crm"
    assert body["permissions"] == ["crm.contacts.read", "crm.contacts.write", "crm.orders.read"]

    (health_block,) = shell_blocks_with("/api/v1/admin/health")
    assert run_block(health_block, live_server.url)["status"] == "ok"
