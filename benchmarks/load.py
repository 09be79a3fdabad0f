"""What the HTTP benchmarks share: gunicorn on a free port, and wrk's output read back."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wrk_figures(output: str) -> dict:
    """Requests per second, p50 and p99 (ms) and non-2xx responses from ``wrk --latency``."""

    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", output).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": latency("50%"),
        "p99": latency("99%"),
        "errors": int(errors.group(1)) if errors else 0,
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
    }


QUIET = ("--log-level", "warning")


@contextlib.contextmanager
def gunicorn_serving(root, workers: int, env: dict):
    """The benchmark's WSGI app under gunicorn on a free loopback port, for the block's length."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "benchmarks.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers), *QUIET],
        cwd=root,
        env=env,
        start_new_session=True,
    )
    try:
        time.sleep(3)  # workers up
        yield port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
