#!/usr/bin/env python
"""Load under faults: a production-like deployment (gunicorn, a Celery worker
and beat, PostgreSQL, Redis) serves a mixed workload while PostgreSQL is
restarted, Redis is stopped and started and the Celery worker is killed; then
every answer the clients got is checked against the database.

    python benchmarks/load_faults.py [--seconds 60] [--clients 16] [--workers 3]

Needs root (or the postgres account) to stop and start the local PostgreSQL
cluster (pg_ctlcluster): **it restarts PostgreSQL once per run**, which every
other user of the cluster sees. Everything else is its own: the database
``iam_load`` (dropped and created afresh), a redis-server on port 6391 with an
append-only file in a temporary folder (so what it holds survives its
restart), a gunicorn and a Celery worker and beat, all stopped on exit (also on
Ctrl-C). Settings are the production ones (``iam.settings``, DEBUG off) with
secrets made up for the run.

Workload: ``--clients`` threads, each with a ``requests`` session. Mostly
``GET /api/v1/me`` with one of 50 users' tokens (or with a token the thread
created); at ``--writes-per-second`` (all threads together) an administrator's
token creates, renames (PATCH) and revokes (DELETE) users' tokens through the
management API; after each confirmed revoke the revoked token is tried once
(it must get 401).

Faults, at fixed fractions of ``--seconds`` (printed when they happen): kill -9
the Celery worker and start another, stop Redis and start it again, stop
PostgreSQL for ``--pg-down`` seconds and start it again.

Pass/fail: no 500, no connection error, no non-JSON body, no unexpected status;
a 503 is accepted only while PostgreSQL is down (and for ``--grace`` seconds
after it accepts connections again), with ``Retry-After`` and the API's JSON
error; then, after gunicorn is stopped gracefully and the usage flushed:
every confirmed create exists once, with the secret the client got; every
confirmed revoke is revoked; one audit event per confirmed create, rename and
revoke and none for a request that failed; and the token use counted in the
database equals the client's count of successful reads, token by token (see
``check_usage`` for the exact invariant). Exits 1 if anything fails.
"""

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.deployment import (
    Postgres,
    Processes,
    Redis,
    Sample,
    free_port,
    port_in_use,
    say,
    start_gunicorn,
    start_worker,
    wait_for,
)

PG_URL = "postgres://iam:iam@127.0.0.1:5432"
ME = "/api/v1/me"
APP = "load-app"
USERS = 50


# ---------------------------------------------------------------- preparation


def make_environment(workdir: Path, database: str, redis_url: str, port: int) -> dict[str, str]:
    """Production settings (DEBUG off) with secrets made up for this run."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = workdir / "jwt.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    env = {name: value for name, value in os.environ.items() if name not in {"DEBUG", "BENCH_DATABASE_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="iam.settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        TOKEN_PEPPERS=f"load:{secrets.token_urlsafe(40)}",
        JWT_SIGNING_KEYS=f"load:{key_file}",
        DATABASE_URL=f"{PG_URL}/{database}",
        REDIS_URL=redis_url,
        ALLOWED_HOSTS="127.0.0.1",
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        # Every client of this run is 127.0.0.1, and each confirmed revoke is
        # followed by one request with the revoked token (a failure): the
        # per-address failure limit (30 a minute) would turn the whole load away.
        AUTH_FAILURES_PER_MINUTE_PER_IP="1000000",
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def create_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


@dataclass(frozen=True)
class Reader:
    user_id: int
    token_id: int
    plaintext: str


@dataclass(frozen=True)
class World:
    tenant_id: int
    admin_id: int
    admin_token_id: int
    admin_plaintext: str
    readers: list[Reader]


def prepare() -> World:
    """Tenant, application, roles, users and their tokens, through the services;
    plaintexts stay in this process's memory."""
    from django.core.management import call_command
    from django.utils import timezone

    from iam.models import Role, ServiceRole, User
    from iam.services import role_grant_add
    from iam.tenancy import tenant_application_set_pats_allowed, tenant_set_api_issuance
    from tenants.models import Application, Tenant
    from tokens.services import token_create

    call_command("migrate", verbosity=0)
    tenant = Tenant.objects.create(slug="load", name="Load", token_requests_per_minute=10**9)
    tenant_set_api_issuance(tenant=tenant, allowed=True, actor=None)
    app = Application.objects.create(slug=APP, name="Load app")
    tenant_application_set_pats_allowed(tenant=tenant, application=app, allowed=True, actor=None)
    reader = Role.objects.create(
        application=app, code="reader", name="Reader", permissions=["load.read"], pat_eligible=True
    )
    expires = timezone.now() + timedelta(days=30)
    readers = []
    for n in range(USERS):
        user = User.objects.create(
            username=f"load{n:02d}", email=f"load{n:02d}@load.example", tenant=tenant, can_create_pats=True
        )
        role_grant_add(user=user, role=reader, actor=None)
        issued = token_create(owner=user, application=app, name="base", role_codes=["reader"], expires_at=expires)
        readers.append(Reader(user.pk, issued.token.pk, issued.plaintext))
    admin = User.objects.create(
        username="load-admin", email="admin@load.example", tenant=tenant, can_create_pats=True, is_staff=True
    )
    role_grant_add(user=admin, role=Role.objects.get(application=None, code=ServiceRole.USER_ADMINISTRATOR), actor=None)
    issued = token_create(
        owner=admin, application=None, name="manage", role_codes=[ServiceRole.USER_ADMINISTRATOR], expires_at=expires
    )
    return World(tenant.pk, admin.pk, issued.token.pk, issued.plaintext, readers)


# ---------------------------------------------------------------- the clients


@dataclass
class Call:
    kind: str  # read, read-own, check-revoked, create, rename, revoke, warm-up
    started: float  # seconds since the load started
    latency: float  # seconds
    status: int | None  # None: no HTTP answer (connection error, timeout)
    problem: str = ""  # why this answer is an error; "" if it is not (a 503 is judged afterwards)


@dataclass
class Owned:
    """A token a client created through the API and saw confirmed."""

    id: int
    owner_id: int
    name: str
    plaintext: str
    prefix: str
    renamed: bool = False


class Pacer:
    """At most ``rate`` writes a second over all clients."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else float("inf")
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            if now < self.next:
                return False
            self.next = max(self.next, now - 1.0) + self.interval
            return True


@dataclass
class Ledger:
    """What the clients saw; filled by every thread under ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[Call] = field(default_factory=list)
    uses: Counter = field(default_factory=Counter)  # token id -> 2xx GET /me with it
    admin_answers: Counter = field(default_factory=Counter)  # status (None: no answer) -> count
    created: list[Owned] = field(default_factory=list)
    renamed: list[tuple[int, str, str]] = field(default_factory=list)  # (token id, old name, new name)
    revoked: list[int] = field(default_factory=list)
    failed_creates: list[tuple[int, str, int | None]] = field(default_factory=list)  # (owner, name, status)
    uncertain: dict[int, str] = field(default_factory=dict)  # token id -> the write that failed on it
    revoked_then_accepted: list[int] = field(default_factory=list)


class Load:
    def __init__(self, base_url: str, world: World, ledger: Ledger, writes_per_second: float):
        self.base_url, self.world, self.ledger = base_url, world, ledger
        self.admin = f"Bearer {world.admin_plaintext}"
        self.pacer = Pacer(writes_per_second)
        self.owners = itertools.count()
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def request(self, session, kind: str, method: str, path: str, auth: str, body: dict | None = None):
        """One request; returns (Call, JSON body or None). Classifies what is an error in any answer."""
        started = time.monotonic()
        try:
            response = session.request(
                method, self.base_url + path, headers={"Authorization": auth}, json=body, timeout=(5, 30)
            )
        except requests.RequestException as error:
            call = Call(kind, started - self.t0, time.monotonic() - started, None, f"no answer: {type(error).__name__}")
            return call, None
        call = Call(kind, started - self.t0, time.monotonic() - started, response.status_code)
        data = None
        if response.status_code != 204:
            try:
                data = response.json()
            except ValueError:
                call.problem = f"non-JSON body ({response.status_code})"
        if response.status_code >= 500 and response.status_code != 503:
            call.problem = call.problem or f"HTTP {response.status_code}"
        if response.status_code == 503 and not call.problem:
            error = data.get("error") if isinstance(data, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            if code != "service_unavailable" or not response.headers.get("Retry-After", "").isdigit():
                call.problem = f"503 without Retry-After or the JSON error (code {code!r})"
        return call, data

    def record(self, call: Call, expected: set[int], *, admin: bool = False, used: int | None = None) -> None:
        if not call.problem and call.status not in expected | {503, None}:
            call.problem = f"unexpected {call.status} for {call.kind}"
        with self.ledger.lock:
            self.ledger.calls.append(call)
            if admin:
                self.ledger.admin_answers[call.status] += 1
            if used is not None and call.status == 200:
                self.ledger.uses[used] += 1

    # -- operations

    def read(self, session, token_id: int, plaintext: str, kind: str = "read") -> None:
        call, data = self.request(session, kind, "GET", ME, f"Bearer {plaintext}")
        if call.status == 200 and not call.problem and (data or {}).get("token", {}).get("id") != token_id:
            call.problem = "GET /me answered for another token"
        self.record(call, {401} if kind == "check-revoked" else {200}, used=token_id)
        if kind == "check-revoked" and call.status == 200:
            with self.ledger.lock:
                self.ledger.revoked_then_accepted.append(token_id)

    def create(self, session, client: int, seq: int) -> Owned | None:
        owner = self.world.readers[next(self.owners) % len(self.world.readers)].user_id
        name = f"load-{client:02d}-{seq:05d}"
        body = {
            "name": name,
            "expiresAt": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            "applicationSlug": APP,
            "roles": ["reader"],
        }
        call, data = self.request(
            session, "create", "POST", f"/api/v1/users/{owner}/personal-access-tokens", self.admin, body
        )
        owned = None
        if call.status == 201 and not call.problem:
            try:
                owned = Owned(data["id"], owner, data["name"], data["token"], data["prefix"])
            except (KeyError, TypeError):
                call.problem = "201 without id, name, token and prefix"
            else:
                if owned.name != name or not owned.plaintext.startswith(owned.prefix):
                    call.problem = "201 with another name or a secret that does not match its prefix"
        self.record(call, {201}, admin=True)
        with self.ledger.lock:
            if owned is not None and not call.problem:
                self.ledger.created.append(owned)
            elif call.status != 201:
                self.ledger.failed_creates.append((owner, name, call.status))
        return owned if not call.problem else None

    def rename(self, session, token: Owned) -> bool:
        new = f"{token.name}-r"
        path = f"/api/v1/users/{token.owner_id}/personal-access-tokens/{quote(token.name, safe='')}"
        call, data = self.request(session, "rename", "PATCH", path, self.admin, {"name": new})
        if call.status == 200 and not call.problem and (data or {}).get("name") != new:
            call.problem = "PATCH answered with another name"
        self.record(call, {200}, admin=True)
        with self.ledger.lock:
            if call.status == 200 and not call.problem:
                self.ledger.renamed.append((token.id, token.name, new))
            else:
                self.ledger.uncertain[token.id] = f"rename answered {call.status}"
        if call.status != 200 or call.problem:
            return False
        token.name, token.renamed = new, True
        return True

    def revoke(self, session, token: Owned) -> bool:
        path = f"/api/v1/users/{token.owner_id}/personal-access-tokens/{quote(token.name, safe='')}"
        call, _ = self.request(session, "revoke", "DELETE", path, self.admin)
        self.record(call, {204}, admin=True)
        with self.ledger.lock:
            if call.status == 204 and not call.problem:
                self.ledger.revoked.append(token.id)
            else:
                self.ledger.uncertain[token.id] = f"revoke answered {call.status}"
        return call.status == 204 and not call.problem

    def client(self, index: int) -> None:
        rng = random.Random(index)  # noqa: S311 - choosing requests, not secrets
        session = requests.Session()
        own: list[Owned] = []
        seq = 0
        while not self.stop.is_set():
            if self.pacer.take():
                if len(own) < 2 or (len(own) < 6 and rng.random() < 0.3):
                    seq += 1
                    created = self.create(session, index, seq)
                    if created is not None:
                        own.append(created)
                    continue
                token = rng.choice(own)
                own.remove(token)  # back in the list only if the write is confirmed and it stays live
                if not token.renamed and rng.random() < 0.5:
                    if self.rename(session, token):
                        own.append(token)
                elif self.revoke(session, token):
                    # The very next request with it, in whichever worker, must be refused.
                    self.read(session, token.id, token.plaintext, kind="check-revoked")
            elif own and rng.random() < 0.2:
                token = rng.choice(own)
                self.read(session, token.id, token.plaintext, kind="read-own")
            else:
                reader = rng.choice(self.world.readers)
                self.read(session, reader.token_id, reader.plaintext)


# ---------------------------------------------------------------- figures


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class Window:
    name: str
    start: float  # seconds since the load started
    end: float


def overlaps(call: Call, window: Window) -> bool:
    return call.started <= window.end and call.started + call.latency >= window.start


# ---------------------------------------------------------------- checks after the run


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def check_database(world: World, ledger: Ledger) -> list[Check]:
    from django.db import connections
    from django.db.models import Sum

    from iam.models import AuditAction, AuditEvent
    from tokens import keys
    from tokens.models import PersonalAccessToken, TokenAddress, TokenStatus, TokenUsageDay

    connections.close_all()  # the connection of the preparation died with PostgreSQL's restart
    checks = []
    created = {owned.id: owned for owned in ledger.created}
    renamed = {token_id: new for token_id, _, new in ledger.renamed}
    revoked = set(ledger.revoked)

    # Every confirmed create: one row, the client's owner, name and prefix, found by the secret it got.
    by_digest = dict(
        PersonalAccessToken.objects.filter(digest__in=[keys.digest(o.plaintext) for o in created.values()]).values_list(
            "digest", "pk"
        )
    )
    rows = {row.pk: row for row in PersonalAccessToken.objects.filter(pk__in=list(created))}
    wrong = []
    for owned in created.values():
        row = rows.get(owned.id)
        if row is None or by_digest.get(keys.digest(owned.plaintext)) != owned.id:
            wrong.append(f"{owned.id}: no row with its secret")
        elif (row.owner_id, row.display_prefix, row.name) != (
            owned.owner_id,
            owned.prefix,
            renamed.get(owned.id, owned.name),
        ):
            wrong.append(
                f"{owned.id}: {(row.owner_id, row.display_prefix, row.name)} in the database, "
                f"{(owned.owner_id, owned.prefix, renamed.get(owned.id, owned.name))} confirmed"
            )
    api_made = set(
        PersonalAccessToken.objects.filter(application__slug=APP, name__startswith="load-").values_list("pk", flat=True)
    )
    ghosts = sorted(api_made - set(created))
    checks.append(
        Check(
            "every confirmed create exists exactly once",
            not wrong and not ghosts,
            f"{len(created)} confirmed, {len(api_made)} API-created rows"
            + (f"; wrong: {wrong[:5]}" if wrong else "")
            + (f"; rows no client saw confirmed (failed creates that happened): {ghosts[:10]}" if ghosts else ""),
        )
    )

    # Every confirmed revoke is revoked (by the administrator); no other token of the run is.
    states = dict(PersonalAccessToken.objects.filter(pk__in=api_made | set(created)).values_list("pk", "status"))
    by_admin = set(
        PersonalAccessToken.objects.filter(pk__in=list(revoked), revoked_by_id=world.admin_id).values_list(
            "pk", flat=True
        )
    )
    not_revoked = sorted(revoked - by_admin)
    unexpected = sorted(pk for pk, status in states.items() if status != TokenStatus.ACTIVE and pk not in revoked)
    base_ended = PersonalAccessToken.objects.filter(
        pk__in=[r.token_id for r in world.readers] + [world.admin_token_id]
    ).exclude(status=TokenStatus.ACTIVE)
    checks.append(
        Check(
            "every confirmed revoke is revoked, nothing else is",
            not not_revoked and not unexpected and not base_ended.exists(),
            f"{len(revoked)} confirmed revokes"
            + (f"; not revoked by the administrator: {not_revoked[:10]}" if not_revoked else "")
            + (
                f"; ended without a confirmed revoke: {[(pk, ledger.uncertain.get(pk, '-')) for pk in unexpected[:10]]}"
                if unexpected
                else ""
            ),
        )
    )

    # One audit event per confirmed create, rename and revoke; none for anything else.
    events = Counter(
        AuditEvent.objects.filter(
            token_id__in=api_made | set(created),
            action__in=[AuditAction.TOKEN_CREATED, AuditAction.TOKEN_EDITED, AuditAction.TOKEN_REVOKED],
        ).values_list("token_id", "action")
    )
    expected = Counter()
    for token_id in created:
        expected[(token_id, AuditAction.TOKEN_CREATED)] += 1
    for token_id in renamed:
        expected[(token_id, AuditAction.TOKEN_EDITED)] += 1
    for token_id in revoked:
        expected[(token_id, AuditAction.TOKEN_REVOKED)] += 1
    differences = {
        key: (expected.get(key, 0), events.get(key, 0))
        for key in set(expected) | set(events)
        if expected.get(key, 0) != events.get(key, 0)
    }
    other = AuditEvent.objects.filter(token_id__in=api_made | set(created)).exclude(
        action__in=[AuditAction.TOKEN_CREATED, AuditAction.TOKEN_EDITED, AuditAction.TOKEN_REVOKED]
    )
    detail = (
        f"{sum(expected.values())} expected ({len(created)} created, {len(renamed)} renamed, {len(revoked)} revoked), "
        f"{sum(events.values())} found"
    )
    if differences:
        shown = [
            f"token {token_id} {action}: expected {want}, found {got} ({ledger.uncertain.get(token_id, 'confirmed')})"
            for (token_id, action), (want, got) in sorted(differences.items())[:10]
        ]
        detail += "; " + "; ".join(shown)
    checks.append(
        Check(
            "one audit event per confirmed create/rename/revoke, none for failed requests",
            not differences and not other.exists(),
            detail,
        )
    )

    # Not an invariant (a note queued while Redis is down is dropped, by design): how many of
    # the tokens used got their "new address" note through the Celery workers.
    used = set(ledger.uses)
    noted = set(TokenAddress.objects.filter(token_id__in=used).values_list("token_id", flat=True))
    print(f"'used from a new address' notes recorded by the Celery workers: {len(noted)} of {len(used)} tokens used")

    # Usage.
    counted = dict(
        TokenUsageDay.objects.values_list("token_id").annotate(total=Sum("count")).values_list("token_id", "total")
    )
    checks.extend(check_usage(world, ledger, counted))
    return checks


def check_usage(world: World, ledger: Ledger, counted: dict[int, int]) -> list[Check]:
    """The invariant: a use is counted when a PAT passes authentication
    (``tokens.bearer``: after the request limit, before the view runs), once
    per request, whatever the view then answers. So:

    - for every token used only with ``GET /api/v1/me`` (the 50 users' tokens
      and those the clients created), whose view needs nothing after
      authentication, the count in the database equals the number of 200s the
      clients got with it, exactly: a 401 or a 503 from authentication counts
      nothing, and nothing else can fail after it;
    - the administrator's token is counted for every management request that
      passed authentication, including those whose view then answered 4xx or
      503 (the outage): the client cannot tell a 503 of authentication from a
      503 of the view, so the check is a bound: answers other than 401 and 503
      <= counted <= all answers.
    """
    checks = []
    readers = set(ledger.uses) | {r.token_id for r in world.readers} | {o.id for o in ledger.created}
    readers.discard(world.admin_token_id)
    off = {
        token_id: (ledger.uses.get(token_id, 0), counted.get(token_id, 0))
        for token_id in readers
        if ledger.uses.get(token_id, 0) != counted.get(token_id, 0)
    }
    strays = {
        token_id: n for token_id, n in counted.items() if token_id not in readers and token_id != world.admin_token_id
    }
    seen, stored = sum(ledger.uses[t] for t in readers), sum(counted.get(t, 0) for t in readers)
    detail = f"{seen} successful reads, {stored} counted, over {len(readers)} tokens"
    if off:
        detail += f"; {len(off)} tokens differ (token: seen, counted): {dict(sorted(off.items())[:8])}"
    if strays:
        detail += f"; uses of tokens no client read with: {strays}"
    checks.append(Check("usage counted == successful reads, token by token", not off and not strays, detail))

    answers = ledger.admin_answers
    low = sum(n for status, n in answers.items() if status not in (401, 503, None))
    high = sum(answers.values())
    got = counted.get(world.admin_token_id, 0)
    checks.append(
        Check(
            "administrator token: answers other than 401/503 <= counted <= answers",
            low <= got <= high,
            f"{low} <= {got} <= {high}",
        )
    )
    return checks


# ---------------------------------------------------------------- the run


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="duration of the load (at least 30)")
    parser.add_argument("--clients", type=int, default=16, help="client threads")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--writes-per-second", type=float, default=4.0, help="creates, renames and revokes, in all")
    parser.add_argument("--pg-down", type=float, default=5.0, help="seconds PostgreSQL stays stopped")
    parser.add_argument(
        "--grace",
        type=float,
        default=2.0,
        help="seconds after PostgreSQL is back during which a 503 still counts as the outage's",
    )
    parser.add_argument(
        "--no-pg-restart", action="store_true", help="leave PostgreSQL alone (then any 503 is an error)"
    )
    parser.add_argument("--database", default="iam_load")
    parser.add_argument("--redis-port", type=int, default=6391)
    parser.add_argument("--keep", action="store_true", help="keep the logs folder (kept anyway when a check fails)")
    args = parser.parse_args()
    if args.seconds < 30:
        parser.error("--seconds must be at least 30 (the faults need room)")
    if args.database in {"iam", "test_iam", "iam_scale", "iam_bench", "postgres"}:
        parser.error(f"{args.database} is not this script's to drop")
    return args


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGHUP, raise_interrupt)
    if port_in_use(args.redis_port):
        sys.exit(f"port {args.redis_port} is in use: pass --redis-port")
    workdir = Path(tempfile.mkdtemp(prefix="load-faults-"))
    port = free_port()
    redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
    env = make_environment(workdir, args.database, redis_url, port)
    os.environ.update(env)
    os.environ.pop("DEBUG", None)
    processes = Processes(workdir, env)
    postgres = Postgres.on_port(5432)
    redis_server = Redis(processes, args.redis_port, workdir / "redis")
    failed = True
    try:
        say(f"logs and Redis data in {workdir}")
        redis_server.start()
        create_database(args.database)

        import django

        django.setup()
        started = time.monotonic()
        world = prepare()
        say(
            f"database {args.database}: {USERS} users with a token each and an administrator "
            f"(prepared in {time.monotonic() - started:.1f} s)"
        )
        failed = run(args, world, processes, postgres, redis_server, workdir, port)
    finally:
        processes.stop_all()
        if postgres.stopped:  # never leave the shared cluster down
            say("starting PostgreSQL again")
            postgres.start()
        if failed or args.keep:
            say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def run(
    args, world: World, processes: Processes, postgres: Postgres, redis_server: Redis, workdir: Path, port: int
) -> bool:
    """The load with its faults, the report and the checks; returns True if anything failed."""
    base_url = f"http://127.0.0.1:{port}"
    gunicorn = start_gunicorn(processes, port, args.workers)
    start_worker(processes, 1)
    beat = f"-m celery -A iam beat --loglevel=WARNING --schedule={workdir / 'beat-schedule'}"
    processes.start("beat", [sys.executable, *beat.split()], "beat.log")
    ledger = Ledger()
    load = Load(base_url, world, ledger, args.writes_per_second)

    def up() -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(base_url + ME, timeout=2).status_code == 401
        return False

    wait_for(up, 60, "gunicorn to answer")
    # Warm up every worker (imports, connections, the cache listener); these reads count like any other.
    warm, warm_started = requests.Session(), time.monotonic()
    for reader in world.readers * 2:
        load.read(warm, reader.token_id, reader.plaintext, kind="warm-up")
    say(f"warm-up: {2 * len(world.readers)} reads in {time.monotonic() - warm_started:.1f} s")
    start = Sample.take(gunicorn.pid)
    say(
        f"gunicorn -w {args.workers} on {base_url} (workers {list(start.workers)}), Celery worker and beat, "
        f"Redis on {args.redis_port}; workers' RSS after warm-up: {start.rss()}"
    )

    T = args.seconds
    schedule = [
        (0.13 * T, "kill -9 the Celery worker"),
        (0.23 * T, "start a new Celery worker"),
        (0.30 * T, "stop Redis"),
        (0.47 * T, "start Redis"),
    ]
    if not args.no_pg_restart:
        schedule += [(0.60 * T, "stop PostgreSQL"), (0.60 * T + args.pg_down, "start PostgreSQL")]
    windows: dict[str, Window] = {}
    say(
        f"load: {args.clients} clients for {T:.0f} s, {args.writes_per_second:g} writes/s; faults at "
        + ", ".join(f"+{offset:.1f} s {what}" for offset, what in schedule)
    )
    load.t0 = t0 = time.monotonic()
    threads = [
        threading.Thread(target=load.client, args=(i,), name=f"client-{i}", daemon=True) for i in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    try:
        for offset, what in schedule:
            time.sleep(max(0.0, t0 + offset - time.monotonic()))
            at = time.monotonic() - t0
            if what.startswith("kill -9"):
                pid = processes.running["worker"].pid
                processes.kill9("worker")
                windows["worker"] = Window("Celery worker dead", at, at)
                say(f"kill -9 the Celery worker (process group {pid})", t0)
            elif what == "start a new Celery worker":
                start_worker(processes, 2)
                windows["worker"].end = time.monotonic() - t0
                say(f"new Celery worker started (pid {processes.running['worker'].pid})", t0)
            elif what == "stop Redis":
                redis_server.stop()
                windows["redis"] = Window("Redis down", at, at)
                say(f"Redis stopped (took {time.monotonic() - t0 - at:.2f} s)", t0)
            elif what == "start Redis":
                redis_server.start()
                windows["redis"].end = time.monotonic() - t0
                say(f"Redis started (took {time.monotonic() - t0 - at:.2f} s)", t0)
            elif what == "stop PostgreSQL":
                say("stopping PostgreSQL (pg_ctlcluster stop -m fast)", t0)
                windows["pg"] = Window("PostgreSQL down", at, at)
                postgres.stop()
                say("PostgreSQL stopped", t0)
            elif what == "start PostgreSQL":
                say("starting PostgreSQL", t0)
                postgres.start()
                windows["pg"].end = time.monotonic() - t0
                say("PostgreSQL accepts connections", t0)
        time.sleep(max(0.0, t0 + T - time.monotonic()))
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=60)
    elapsed = time.monotonic() - t0
    say(f"load stopped after {elapsed:.1f} s", t0)

    end = Sample.take(gunicorn.pid)
    code = processes.stop("gunicorn", timeout=45, master_only=True)
    say(f"gunicorn stopped with SIGTERM (exit {code}): each worker pushed its buffered usage on exit")
    flushed_by_worker, flushed_here, leftovers = flush_usage(redis_server)
    processes.stop("beat", timeout=15)
    processes.stop("worker", timeout=30)
    # Kombu's Redis transport keeps a reserved task in "unacked" until it is
    # acknowledged; a task the killed worker held comes back only after the
    # visibility timeout (CELERY_BROKER_TRANSPORT_OPTIONS, an hour).
    unacked = redis_server.client().hlen("unacked")

    failed = report(args, ledger, windows, elapsed, start, end, workdir)
    write_ledger(ledger, windows, workdir / "ledger.json")
    print(
        f"\nusage flush after the load: by the Celery worker {'yes' if flushed_by_worker else 'NO'}, "
        f"{flushed_here} counts moved by a last in-process flush, Redis usage keys left: {leftovers}"
    )
    print(f"Celery tasks still reserved by the killed worker (unacked in Redis): {unacked}")
    checks = check_database(world, ledger)
    checks.append(Check("no usage left in Redis after the flush", not leftovers, f"{leftovers} keys"))
    checks.append(
        Check(
            "a revoked token is refused by the very next request",
            not ledger.revoked_then_accepted,
            f"{sum(1 for c in ledger.calls if c.kind == 'check-revoked' and c.status == 401)} refused (401), "
            f"{len(ledger.revoked_then_accepted)} accepted",
        )
    )
    print("\nInvariants (checked in the database after the run)")
    for check in checks:
        print(f"  {'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    failed = failed or not all(check.ok for check in checks)
    print(f"\n{'FAILED' if failed else 'OK'}")
    return failed


def write_ledger(ledger: Ledger, windows: dict[str, Window], path: Path) -> None:
    """What the clients saw confirmed or refused, for a look after a failed check (no secrets)."""
    path.write_text(
        json.dumps(
            {
                "faults": {key: [w.start, w.end] for key, w in windows.items()},
                "created": [{"id": o.id, "owner": o.owner_id, "name": o.name} for o in ledger.created],
                "renamed": ledger.renamed,
                "revoked": ledger.revoked,
                "failed_creates": ledger.failed_creates,
                "uncertain": ledger.uncertain,
                "uses": ledger.uses,
                "admin_answers": {str(k): v for k, v in ledger.admin_answers.items()},
            },
            indent=1,
        )
    )


def flush_usage(redis_server: Redis) -> tuple[bool, int, int]:
    """Ask the Celery worker to flush the usage counters to the database, wait
    until Redis holds none, then flush once more in-process (which should move nothing)."""
    from tokens.tasks import flush_usage as flush_task
    from tokens.usage import COUNTS, FLUSHING, LAST, usage_flush_from_redis

    client = redis_server.client()

    def left() -> int:
        return (
            len(list(client.scan_iter(f"{COUNTS}*")))
            + len(list(client.scan_iter(f"{FLUSHING}*")))
            + client.exists(LAST)
        )

    flush_task.delay()
    by_worker = True
    try:
        wait_for(lambda: left() == 0, 60, "the Celery worker to flush the usage counters")
    except RuntimeError:
        by_worker = False
    moved = usage_flush_from_redis()
    return by_worker, moved, left()


def report(
    args,
    ledger: Ledger,
    windows: dict[str, Window],
    elapsed: float,
    start: Sample,
    end: Sample,
    workdir: Path,
) -> bool:
    calls = [c for c in ledger.calls if c.kind != "warm-up"]
    pg = windows.get("pg", Window("PostgreSQL down", -1.0, -1.0))
    outage = Window(pg.name, pg.start, pg.end + args.grace if pg.end >= 0 else -1.0)
    refused = [c for c in calls if c.status == 503 and not c.problem and overlaps(c, outage)]
    for call in calls:
        if call.status == 503 and not call.problem and not overlaps(call, outage):
            call.problem = "503 outside the database outage"
    warm_problems = [c for c in ledger.calls if c.kind == "warm-up" and c.problem]
    errors = [c for c in calls if c.problem] + warm_problems
    latencies = [c.latency * 1000 for c in calls if c.status is not None]
    reads = [c.latency * 1000 for c in calls if c.kind in ("read", "read-own") and c.status == 200]

    print("\nResults")
    print(
        f"  requests: {len(calls):,} in {elapsed:.1f} s = {len(calls) / elapsed:,.0f} requests/s "
        f"({args.clients} clients, gunicorn -w {args.workers})"
    )
    print(
        f"  latency, all answers: p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
        f"max {max(latencies, default=0):.0f} ms"
    )
    print(f"  latency, successful reads: p50 {percentile(reads, 0.5):.1f} ms, p99 {percentile(reads, 0.99):.1f} ms")
    statuses = Counter("no answer" if c.status is None else c.status for c in calls)
    print("  status codes: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items(), key=str)))
    by_kind = defaultdict(Counter)
    for call in calls:
        by_kind[call.kind]["no answer" if call.status is None else call.status] += 1
    for kind in ("read", "read-own", "create", "rename", "revoke", "check-revoked"):
        print(f"    {kind:<14} " + ", ".join(f"{k}: {v:,}" for k, v in sorted(by_kind[kind].items(), key=str)))
    for kind in ("read", "create", "rename", "revoke"):
        spent = [c.latency * 1000 for c in calls if c.kind == kind and c.status is not None]
        print(f"    {kind:<14} latency p50 {percentile(spent, 0.5):.1f} ms, p99 {percentile(spent, 0.99):.1f} ms")
    step = 5
    print(f"  per {step} s (requests/s, p50 ms, 503s):")
    buckets = defaultdict(list)
    for call in calls:
        buckets[int(call.started // step)].append(call)
    print(
        "    "
        + "  ".join(
            f"+{b * step}: {len(group) / step:.0f}/{percentile([c.latency * 1000 for c in group], 0.5):.0f}"
            f"/{sum(1 for c in group if c.status == 503)}"
            for b, group in sorted(buckets.items())
        )
    )
    for window in windows.values():
        inside = Counter("no answer" if c.status is None else c.status for c in calls if overlaps(c, window))
        print(
            f"  during '{window.name}' (+{window.start:.1f} to +{window.end:.1f} s): "
            + ", ".join(f"{k}: {v:,}" for k, v in sorted(inside.items(), key=str))
        )
    if refused:
        first = min(c.started + c.latency for c in refused)
        last = max(c.started + c.latency for c in refused)
        print(
            f"  refused during the outage (503 + Retry-After + JSON error): {len(refused):,}, answered from "
            f"+{first:.1f} s to +{last:.1f} s (PostgreSQL stopped at +{pg.start:.1f} s, accepting again at "
            f"+{pg.end:.1f} s)"
        )
    else:
        print("  refused during the outage: 0")
    print(f"  errors (500s, no answer, non-JSON, unexpected status, 503 outside the outage): {len(errors)}")
    for problem, count in Counter(c.problem for c in errors).most_common(10):
        print(f"    {count:>6}  {problem}")
    print(f"  gunicorn workers' RSS: start {start.rss()}, end {end.rss()}")
    restarted = list(start.workers) != list(end.workers)
    if restarted:
        print(f"  gunicorn workers were replaced during the run: {list(start.workers)} -> {list(end.workers)}")
    else:
        per_request = 1000 / max(1, len(calls))
        print(
            f"  CPU per request: gunicorn workers {(end.workers_cpu - start.workers_cpu) * per_request:.1f} ms, "
            f"clients {(end.clients_cpu - start.clients_cpu) * per_request:.1f} ms; machine load average "
            f"{start.load_average:.1f} at the start, {end.load_average:.1f} at the end ({os.cpu_count()} CPUs)"
        )
    log = (workdir / "gunicorn.log").read_text(errors="replace")
    tracebacks = log.count("Traceback (most recent call last)")
    print(
        f"  gunicorn log: {len(re.findall('Database unavailable', log))} 'Database unavailable' lines, "
        f"{tracebacks} tracebacks, {log.count('WORKER TIMEOUT')} worker timeouts"
    )
    print(
        f"  created {len(ledger.created)}, renamed {len(ledger.renamed)}, revoked {len(ledger.revoked)} "
        f"(confirmed); failed creates {len(ledger.failed_creates)}, writes left uncertain {len(ledger.uncertain)}"
    )
    return bool(errors) or restarted or bool(tracebacks)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: subprocesses stopped", file=sys.stderr)
        sys.exit(130)
