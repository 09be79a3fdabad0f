"""The processes of a production-like deployment for the benchmarks: a
redis-server of their own, the local PostgreSQL cluster (stopped and started
with pg_ctlcluster), gunicorn and Celery, and what /proc tells about them."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from benchmarks.load import free_port  # noqa: F401 - load_faults takes it from here

ROOT = Path(__file__).resolve().parent.parent


def say(message: str, t0: float | None = None) -> None:
    """Print a line with the wall-clock time (and the offset into the load when it runs)."""
    clock = datetime.now().strftime("%H:%M:%S.%f")[:-3]
    offset = f"+{time.monotonic() - t0:6.2f} s " if t0 is not None else ""
    print(f"[{clock}] {offset}{message}", flush=True)


class Processes:
    """The subprocesses of the run, each in a session of its own so that a
    kill reaches its children (gunicorn's and Celery's workers) too."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir, self.env = workdir, env
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], log: str) -> subprocess.Popen:
        with open(self.workdir / log, "ab") as out:
            process = subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.running[name] = process
        return process

    def signal(self, name: str, signum: int) -> None:
        process = self.running[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)

    def stop(self, name: str, *, timeout: float = 40.0, master_only: bool = False) -> int | None:
        """SIGTERM (to the master alone, or its whole group), then SIGKILL after ``timeout``."""
        process = self.running.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if master_only:
                    process.send_signal(signal.SIGTERM)
                else:
                    os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop within {timeout:.0f} s: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # leftovers of the group, if any
        process.wait()
        return process.returncode

    def kill9(self, name: str) -> None:
        process = self.running.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name, timeout=15)


def worker_pids(master: int) -> list[int]:
    """The pids of a process's children (gunicorn's workers)."""
    children = Path(f"/proc/{master}/task/{master}/children")
    if children.exists():
        return sorted(int(pid) for pid in children.read_text().split())
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                found.append(int(stat.parent.name))
    return sorted(found)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """The gunicorn workers' memory and CPU, this process's CPU (the clients') and the machine's load."""

    workers: dict[int, int]  # pid -> VmRSS in KiB
    workers_cpu: float  # seconds, all workers
    clients_cpu: float  # seconds, this process
    load_average: float

    @classmethod
    def take(cls, master: int) -> "Sample":
        pids = worker_pids(master)
        times = os.times()
        return cls(
            {pid: rss_kib(pid) for pid in pids},
            sum(cpu_seconds(pid) for pid in pids),
            times.user + times.system,
            os.getloadavg()[0],
        )

    def rss(self) -> str:
        each = ", ".join(f"{v / 1024:.1f}" for v in self.workers.values())
        return f"{sum(self.workers.values()) / 1024:.1f} MiB ({each})"


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Redis:
    """A redis-server of the run's own, with an append-only file in ``folder``."""

    def __init__(self, processes: Processes, port: int, folder: Path):
        self.processes, self.port, self.folder = processes, port, folder
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        self.folder.mkdir(exist_ok=True)
        args = f"--port {self.port} --bind 127.0.0.1 --dir {self.folder} --appendonly yes --daemonize no"
        # --save "": no snapshots; the append-only file alone carries the data across the restart.
        self.processes.start("redis", ["redis-server", *args.split(), "--save", ""], "redis.log")
        wait_for(lambda: self.ping(), 10, "redis-server to answer")

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def ping(self) -> bool:
        import redis

        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        self.processes.stop("redis", timeout=15)  # SIGTERM: Redis writes its append-only file and exits


class Postgres:
    """The local cluster, stopped and started with pg_ctlcluster."""

    def __init__(self, version: str, cluster: str):
        self.version, self.cluster = version, cluster
        self.stopped = False

    @classmethod
    def on_port(cls, port: int) -> "Postgres":
        listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout
        for line in listing.splitlines():
            version, cluster, cluster_port, *_ = line.split()
            if int(cluster_port) == port:
                return cls(version, cluster)
        sys.exit(f"no local PostgreSQL cluster on port {port} (pg_lsclusters)")

    def _ctl(self, *args: str) -> None:
        subprocess.run(["pg_ctlcluster", self.version, self.cluster, *args], check=True, capture_output=True)

    def stop(self) -> None:
        self.stopped = True
        self._ctl("stop", "-m", "fast")  # ends every session at once, as a crash or failover would

    def start(self) -> None:
        self._ctl("start")
        wait_for(
            lambda: subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0,
            60,
            "PostgreSQL to accept connections",
        )
        self.stopped = False


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def start_gunicorn(processes: Processes, port: int, workers: int) -> subprocess.Popen:
    args = f"-m gunicorn iam.wsgi -b 127.0.0.1:{port} -w {workers} --graceful-timeout 30 --log-level warning"
    return processes.start("gunicorn", [sys.executable, *args.split()], "gunicorn.log")


def start_worker(processes: Processes, n: int) -> subprocess.Popen:
    args = f"-m celery -A iam worker --loglevel=WARNING --concurrency=2 -n load{n}@%h --without-gossip --without-mingle"
    return processes.start("worker", [sys.executable, *args.split()], f"worker{n}.log")
