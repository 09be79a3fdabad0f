"""The README's webhook receiver runs as written: a real delivery verifies, a forged one is refused."""

import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tokens.webhooks import webhook_endpoint_create

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(settings.BASE_DIR, "README.md").read_text()


def receiver_source() -> str:
    (block,) = [block for block in re.findall(r"```python\n(.*?)```", README, re.S) if "webhook receiver" in block]
    return block


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_readme_receiver_verifies_real_deliveries_and_refuses_forged_ones(world, tmp_path):
    port = free_port()
    script = tmp_path / "receiver.py"
    script.write_text(receiver_source())
    issued = webhook_endpoint_create(
        tenant=world.tenant, url=f"http://127.0.0.1:{port}/", events=["token.created"], actor=None
    )
    process = subprocess.Popen(
        [sys.executable, str(script)],
        env={"WEBHOOK_SECRET": issued.secret, "PORT": str(port), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        forged = urllib.request.Request(
            f"http://127.0.0.1:{port}/",
            data=b'{"type": "token.created"}',
            headers={"webhook-id": "msg_x", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=5)
        assert refused.value.code == 400
        world.issue("README receiver")  # committed at once: delivered in-process (no Redis in tests)
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    assert "token.created README receiver" in out, err
