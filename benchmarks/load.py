"""What the HTTP benchmarks share: a free port for gunicorn and wrk's output read back."""

import re
import socket


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
    }
