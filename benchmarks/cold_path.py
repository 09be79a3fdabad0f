#!/usr/bin/env python
"""The cold path: many integrations, each token used now and then.

    python benchmarks/cold_path.py [--tokens 10000] [--database sqlite|postgres] [--http]

Fills a database of its own (``var/cold-<N>.sqlite3`` or PostgreSQL's
``iam_cold_<N>``; kept and reused) with ``--tokens`` valid PATs, ten per user,
over ten tenants, each token granting one or two roles its owner holds, and
one DRF token per user. Every secret is derived from the token's number, so
the benchmark can present any of them without storing plaintexts.

In-process, through DRF's view, with Redis on (as in production): each
request carries a token not presented before, so our cache cannot help. It
prints, for no authentication, our PAT and DRF's ``TokenAuthentication``, the
time per request, the cost above no authentication and its ratio to DRF's,
with the database queries and Redis round trips each request made. Then, for
our PAT: the uncached lookup's server time on the database (EXPLAIN ANALYZE,
median, and its plan) beside a cached authentication; the bytes per cache
entry and the process's RSS with a full cache; the cost of invalidating one
token and one tenant with a full cache; and the hit rate and rate of a
"many integrations" stream (100,000 distinct tokens, 20 % of them carrying
80 % of the requests) for several ``TOKEN_CACHE_SIZE``.

With ``--http``: gunicorn and wrk, a Lua script cycling through 100,000
distinct valid tokens, uniformly and skewed (20 % carry 80 %), for none, PAT
and DRF in one run: req/s, p50, p99. ``--cache-size`` and ``--cache-seconds``
set the servers' ``TOKEN_CACHE_SIZE`` and ``TOKEN_CACHE_SECONDS``, ``--warmup``
how long the skewed PAT stream runs before anything is measured (each worker
fills its own cache). ``--cache-only`` prints only the cache's figures.
"""

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import OrderedDict
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.load import gunicorn_serving, wrk_figures

PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgres://iam:iam@127.0.0.1:5432")


def _database_url(database: str, tokens: int) -> str:
    size = f"{tokens // 1000}k" if tokens < 1_000_000 else f"{tokens // 1_000_000}m"
    if database == "sqlite":
        return f"sqlite:///{ROOT / 'var' / f'cold-{size}.sqlite3'}"
    name = f"iam_cold_{size}"
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/iam", autocommit=True) as server:
        if not server.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            server.execute(f"CREATE DATABASE {name}")
    return f"{PG_SERVER}/{name}"


def _setup(args) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    os.environ["BENCH_DATABASE_URL"] = _database_url(args.database, args.tokens)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
    import django

    django.setup()


TOKENS_PER_USER = 10
TENANTS = 10
CHUNK = 20_000
DISTINCT = 100_000  # tokens in use in the "many integrations" stream
HOT_SHARE, HOT_TRAFFIC = 0.2, 0.8  # 20 % of the tokens carry 80 % of the requests


def pat_secret(number: int) -> str:
    """The secret of filler token ``number``: derived, so never stored."""
    from tokens import keys

    seed = int.from_bytes(hashlib.sha256(f"cold-path {number}".encode()).digest(), "big")
    body = keys.PREFIX + keys._base62(seed, keys.RANDOM_LENGTH)[: keys.RANDOM_LENGTH]
    return body + keys.checksum(body)


def drf_key(user_number: int) -> str:
    return hashlib.sha1(f"cold-path user {user_number}".encode()).hexdigest()  # noqa: S324 - a filler key


def populate(count: int) -> None:
    from django.core.management import call_command
    from django.core.management.color import no_style
    from django.db import connection
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from iam.models import Role, RoleGrant, User
    from tenants.models import Application, Tenant, TenantApplication
    from tokens import keys
    from tokens.models import PersonalAccessToken

    call_command("migrate", verbosity=0)
    if PersonalAccessToken.objects.count() >= count:
        return
    started = time.perf_counter()
    now = timezone.now()
    app = Application.objects.create(slug="cold", name="Cold path")
    roles = [
        Role.objects.create(
            application=app, code=code, name=code.title(), permissions=[f"cold.{code}"], pat_eligible=True
        )
        for code in ("reader", "writer")
    ]
    tenants = [
        Tenant.objects.create(slug=f"cold-{n}", name=f"Cold {n}", token_requests_per_minute=10**9)
        for n in range(TENANTS)
    ]
    TenantApplication.objects.bulk_create(
        [TenantApplication(tenant=t, application=app, allows_pats=True) for t in tenants]
    )
    users = count // TOKENS_PER_USER
    link = PersonalAccessToken.roles.through
    pepper = keys.current_pepper_id()
    for first in range(0, users, CHUNK // TOKENS_PER_USER):
        numbers = range(first, min(first + CHUNK // TOKENS_PER_USER, users))
        User.objects.bulk_create(
            [
                User(
                    id=n + 1,
                    username=f"cold{n}",
                    email=f"cold{n}@cold.example",
                    password="!",
                    tenant=tenants[n % TENANTS],
                    can_create_pats=True,
                )
                for n in numbers
            ]
        )
        RoleGrant.objects.bulk_create([RoleGrant(user_id=n + 1, role=role) for n in numbers for role in roles])
        Token.objects.bulk_create([Token(key=drf_key(n), user_id=n + 1) for n in numbers])
        tokens = range(numbers.start * TOKENS_PER_USER, numbers.stop * TOKENS_PER_USER)
        PersonalAccessToken.objects.bulk_create(
            [
                PersonalAccessToken(
                    id=t + 1,
                    owner_id=t // TOKENS_PER_USER + 1,
                    tenant=tenants[(t // TOKENS_PER_USER) % TENANTS],
                    application=app,
                    name=f"integration {t % TOKENS_PER_USER}",
                    created_at=now,
                    expires_at=now + timedelta(days=300),
                    display_prefix=keys.display_prefix(pat_secret(t)),
                    digest=keys.digest(pat_secret(t)),
                    pepper_id=pepper,
                )
                for t in tokens
            ]
        )
        link.objects.bulk_create(
            [link(personalaccesstoken_id=t + 1, role=role) for t in tokens for role in roles[: 1 + t % 2]]
        )
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), [User, PersonalAccessToken]):
            cursor.execute(sql)
        if connection.vendor == "postgresql":
            # As autovacuum does after a bulk insert: the first read of each row
            # would otherwise set its hint bits and write the page back.
            cursor.execute("VACUUM ANALYZE")
    print(f"filled {count:,} tokens in {time.perf_counter() - started:.0f} s")


# ---------------------------------------------------------------- counting what a request does


class RoundTrips:
    """Counts the Redis round trips made by the measuring thread (a pipeline is one)."""

    def __init__(self):
        import redis.connection

        self.count = 0
        self.thread = threading.current_thread()
        original = redis.connection.AbstractConnection.send_packed_command

        def counted(connection, *args, **kwargs):
            if threading.current_thread() is self.thread:
                self.count += 1
            return original(connection, *args, **kwargs)

        redis.connection.AbstractConnection.send_packed_command = counted


def in_process(sample: list[int], requests: int, repeats: int, trips: RoundTrips) -> dict[str, dict]:
    """Each request with a token not presented before, for each variant, in turn."""
    from django.db import connection
    from django.test import RequestFactory
    from django.test.utils import CaptureQueriesContext

    from benchmarks import views

    factory = RequestFactory()
    headers = {
        "none": lambda n: f"Bearer {pat_secret(n)}",
        "pat": lambda n: f"Bearer {pat_secret(n)}",
        "drf_token": lambda n: f"Token {drf_key(n // TOKENS_PER_USER)}",
    }
    results = {variant: {"times": []} for variant in headers}
    batches = [sample[i * requests : (i + 1) * requests] for i in range((repeats + 1) * len(headers))]
    for repeat in range(repeats + 1):
        for index, (variant, header) in enumerate(headers.items()):  # alternated, so drift hits all alike
            view = views.view_for(variant).as_view()
            prepared = [
                factory.get(f"/bench/{variant}", HTTP_AUTHORIZATION=header(n)) for n in batches[repeat * 3 + index]
            ]
            if repeat == 0:  # the first round warms up (connections) and counts
                _call(view, prepared[0])
                before = trips.count
                with CaptureQueriesContext(connection) as queries:
                    _call(view, prepared[1])
                results[variant]["queries"] = len(queries.captured_queries)
                results[variant]["writes"] = sum(
                    1 for q in queries.captured_queries if re.match(r"\s*(INSERT|UPDATE|DELETE)", q["sql"], re.I)
                )
                results[variant]["redis"] = trips.count - before
                prepared = prepared[2:]
            started = time.perf_counter()
            for request in prepared:
                _call(view, request)
            if repeat:
                results[variant]["times"].append((time.perf_counter() - started) / len(prepared) * 1e6)
    for row in results.values():
        row["us"] = statistics.median(row.pop("times"))
    return results


def _call(view, request) -> None:
    response = view(request)
    response.render()
    assert response.status_code == 200, (response.status_code, response.content)


def report_cold(results: dict[str, dict], label: str) -> None:
    base = results["none"]["us"]
    drf_cost = results["drf_token"]["us"] - base
    print(f"\nCold path, in-process, {label}: every request with a token not presented before (median of repeats)")
    print(
        f"{'variant':<10} {'µs/request':>11} {'above none':>11} {'x DRF cost':>11}"
        f" {'queries':>8} {'redis':>6} {'writes':>7}"
    )
    for variant, row in results.items():
        cost = row["us"] - base
        ratio = f"{cost / drf_cost:>11.2f}" if variant != "none" else f"{'':>11}"
        print(
            f"{variant:<10} {row['us']:>11.0f} {cost:>11.0f} {ratio}"
            f" {row['queries']:>8} {row['redis']:>6} {row['writes']:>7}"
        )


# ---------------------------------------------------------------- the lookup itself


def lookup_server_time(sample: list[int]) -> None:
    """The uncached lookup's time on the database for distinct tokens, and its plan:
    on PostgreSQL the prepared statement's EXPLAIN ANALYZE (as the service runs it)."""
    from django.db import connection

    from tokens import keys
    from tokens.bearer import bearer_authenticate
    from tokens.lookup import lookup_sql

    sql = lookup_sql(connection.vendor, "digest")
    times, plan = [], None
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"PREPARE bench_lookup (text) AS {sql.replace('%s', '$1')}")
        for n in sample:
            digest = keys.digest(pat_secret(n))
            if connection.vendor == "postgresql":
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE bench_lookup (%s)", [digest])
                explained = cursor.fetchone()[0]
                explained = explained if isinstance(explained, list) else json.loads(explained)
                times.append(explained[0]["Execution Time"] + explained[0].get("Planning Time", 0))
                plan = explained[0]["Plan"]
            else:
                started = time.perf_counter()
                cursor.execute(sql, [digest] * 3)  # its three places: current, rotated, joined
                cursor.fetchall()
                times.append((time.perf_counter() - started) * 1000)
                if plan is None:
                    cursor.execute(f"EXPLAIN QUERY PLAN {sql}", [digest] * 3)
                    plan = [row[-1] for row in cursor.fetchall()]
        if connection.vendor == "postgresql":
            cursor.execute("DEALLOCATE bench_lookup")
    cached_secret = pat_secret(sample[0])
    bearer_authenticate(cached_secret, ip="127.0.0.1")
    cached = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(2000):
            bearer_authenticate(cached_secret, ip="127.0.0.1")
        cached.append((time.perf_counter() - started) / 2000 * 1000)
    where = (
        "server time (planning + execution of the prepared statement, EXPLAIN ANALYZE)"
        if connection.vendor == "postgresql"
        else "query time (execute + fetch)"
    )
    print(
        f"\nUncached lookup, {where}: median {statistics.median(times):.3f} ms, p90 "
        f"{statistics.quantiles(times, n=10)[-1]:.3f} ms over {len(times)} tokens; "
        f"a cached authentication (bearer_authenticate, no query): median {statistics.median(cached) * 1000:.1f} µs"
    )
    print("plan:", " | ".join(_plan_lines(plan)) if connection.vendor == "postgresql" else " | ".join(plan))


def _plan_lines(node, depth=0):
    relation = f" on {node['Relation Name']}" if "Relation Name" in node else ""
    index = f" using {node['Index Name']}" if "Index Name" in node else ""
    yield f"{node['Node Type']}{relation}{index}"
    for child in node.get("Plans", []):
        yield from _plan_lines(child, depth + 1)


# ---------------------------------------------------------------- the cache


def cache_figures(sample: list[int]) -> None:
    from django.conf import settings

    from tokens import authcache
    from tokens.bearer import bearer_authenticate

    size = min(settings.TOKEN_CACHE_SIZE, len(sample))
    authcache.cache_clear()
    secrets_ = [pat_secret(n) for n in sample[:size]]
    rss_before = _rss_mb()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for secret in secrets_:
        bearer_authenticate(secret, ip="127.0.0.1")
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    filled = authcache.cache_size()
    print(
        f"\nCache: {filled:,} entries (TOKEN_CACHE_SIZE {settings.TOKEN_CACHE_SIZE:,}) hold {held / 2**20:.1f} MiB, "
        f"{held / max(filled, 1):,.0f} bytes an entry (tracemalloc); process RSS {rss_before:.0f} → {_rss_mb():.0f} MiB"
    )
    some = authcache._entries[next(iter(authcache._entries))]
    timings = {}
    for label, scope in (
        ("one token", f"token:{some.loaded().token.pk}"),
        ("one tenant", f"tenant:{some.loaded().token.tenant_id}"),
    ):
        started = time.perf_counter()
        authcache.cache_clear(scope)
        timings[label] = (time.perf_counter() - started) * 1e6
        left = authcache.cache_size()
        print(f"invalidating {label} with a full cache: {timings[label]:,.0f} µs, {filled - left:,} entries dropped")
        filled = left


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def zipf_exponent(distinct: int) -> float:
    """``1 - s`` of the Zipf law over ``distinct`` ranks under which the top 20 % carry 80 %.

    Sampled by inverting the continuous law's distribution function,
    ``F(k) = (k**a - 1) / (distinct**a - 1)``; ``F`` falls as ``a`` grows.
    """
    low, high = 1e-6, 1.0
    for _ in range(60):
        a = (low + high) / 2
        share = ((distinct * HOT_SHARE) ** a - 1) / (distinct**a - 1)
        low, high = (a, high) if share > HOT_TRAFFIC else (low, a)
    return (low + high) / 2


def zipf_rank(uniform: float, distinct: int, a: float) -> int:
    """The 0-based rank drawn by ``uniform`` in [0, 1) (the Lua script draws the same way)."""
    return min(distinct, int(((distinct**a - 1) * uniform + 1) ** (1 / a))) - 1


def skewed_stream(count: int, distinct: int, seed: int) -> list[int]:
    """``count`` token numbers out of ``distinct``, Zipf-like: 20 % of them carry 80 %."""
    rng = random.Random(seed)  # noqa: S311 - a benchmark's load, not a secret
    a = zipf_exponent(distinct)
    return [zipf_rank(rng.random(), distinct, a) for _ in range(count)]


def hit_rates(tokens: int, requests: int, sizes: list[int]) -> None:
    """The many-integrations stream in-process for several cache sizes: hit rate and rate."""
    from django.test import override_settings

    from tokens import authcache
    from tokens.bearer import bearer_authenticate

    distinct = min(DISTINCT, tokens)
    stride = tokens // distinct  # spread the tokens in use over the whole table
    stream = [n * stride for n in skewed_stream(requests, distinct, seed=11)]
    secrets_ = [pat_secret(n) for n in stream]
    print(
        f"\nMany integrations in-process: {requests:,} requests over {distinct:,} distinct tokens, "
        f"{HOT_SHARE:.0%} carry {HOT_TRAFFIC:.0%}"
    )
    print(f"{'TOKEN_CACHE_SIZE':>16} {'hit rate':>9} {'per second':>11}")
    for size in sizes:
        with override_settings(TOKEN_CACHE_SIZE=size):
            authcache.cache_clear()
            warm = len(secrets_) // 2
            for secret in secrets_[:warm]:  # the first half fills the cache
                bearer_authenticate(secret, ip="127.0.0.1")
            loads_before = _load_count
            started = time.perf_counter()
            for secret in secrets_[warm:]:
                bearer_authenticate(secret, ip="127.0.0.1")
            elapsed = time.perf_counter() - started
            misses = _load_count - loads_before
        measured = len(secrets_) - warm
        print(f"{size:>16,} {1 - misses / measured:>9.1%} {measured / elapsed:>11,.0f}")


def modelled_hit_rates(workers: int, rate: int) -> None:
    """What bounds the hit rate over HTTP, modelled: the skewed stream spread at
    random over ``workers`` processes, each with its own LRU cache whose entries
    are reloaded after TOKEN_CACHE_SECONDS, at ``rate`` requests a second."""
    a = zipf_exponent(DISTINCT)
    print(
        f"\nModelled hit rate, {workers} workers with their own caches, {rate:,} req/s of the skewed stream "
        f"over {DISTINCT:,} tokens (the 20 s after the warm-up)"
    )
    print(f"{'TOKEN_CACHE_SIZE':>16} {'TOKEN_CACHE_SECONDS':>19} {'warm-up s':>9} {'hit rate':>9}")
    for size, seconds, warmup in (
        (10_000, 30, 60),
        (100_000, 30, 600),
        (100_000, 900, 600),
        (100_000, 3600, 1200),
        (100_000, 3600, 7200),  # steady state: every entry reloaded at least once
    ):
        rng = random.Random(7)  # noqa: S311 - a model's draws, not a secret
        caches = [OrderedDict() for _ in range(workers)]
        hits = measured = 0
        for n in range((warmup + 20) * rate):
            at, rank, cache = n / rate, zipf_rank(rng.random(), DISTINCT, a), caches[rng.randrange(workers)]
            hit = cache.get(rank, -1.0) > at
            if not hit:
                cache[rank] = at + seconds
                if len(cache) > size:
                    cache.popitem(last=False)
            cache.move_to_end(rank)
            if at >= warmup:
                measured, hits = measured + 1, hits + hit
        print(f"{size:>16,} {seconds:>19,} {warmup:>9,} {hits / measured:>9.1%}")


_load_count = 0


def _count_loads() -> None:
    """Count the bearer path's lookups (its cache misses)."""
    import tokens.bearer

    original = tokens.bearer.credential_load

    def counted(*args, **kwargs):
        global _load_count
        _load_count += 1
        return original(*args, **kwargs)

    tokens.bearer.credential_load = counted


# ---------------------------------------------------------------- over HTTP

WRK_LUA = r"""
local tokens, skewed, a = {}, os.getenv("BENCH_SKEW") == "1", tonumber(os.getenv("BENCH_ZIPF_A"))
local counter = 1
function setup(thread) thread:set("id", counter); counter = counter + 1 end
function init(args)
  for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
  math.randomseed(os.time() * 100 + id)
end
function request()
  local i
  if skewed then i = math.min(#tokens, math.floor((((#tokens) ^ a - 1) * math.random() + 1) ^ (1 / a)))
  else i = math.random(1, #tokens) end
  return wrk.format("GET", nil, {Authorization = tokens[i]})
end
"""


def _digest_index_scans() -> int | None:
    """Index scans of the PAT digest index so far (PostgreSQL's statistics, flushed within a second)."""
    import psycopg

    url = os.environ["BENCH_DATABASE_URL"]
    if not url.startswith("postgres"):
        return None
    time.sleep(1.1)  # backends flush their statistics at most once a second
    with psycopg.connect(url) as db:
        db.execute("SELECT pg_stat_clear_snapshot()")
        row = db.execute(
            "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'token_digest_unique'"
        ).fetchone()
    return row[0] if row else 0


def over_http(
    tokens: int, seconds: int, rounds: int, workers: int, cache_size: int, cache_seconds: int, warmup: int
) -> None:
    distinct = min(DISTINCT, tokens)
    stride = tokens // distinct
    numbers = [n * stride for n in range(distinct)]
    random.Random(5).shuffle(numbers)  # noqa: S311 - the popular ranks spread over the table
    files = {}
    for variant, header in (
        ("pat", lambda n: f"Bearer {pat_secret(n)}"),
        ("drf_token", lambda n: f"Token {drf_key(n // TOKENS_PER_USER)}"),
    ):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
            listing.write("\n".join(header(n) for n in numbers) + "\n")
        files[variant] = listing.name
    files["none"] = files["pat"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_LUA)
    env = {**os.environ, "TOKEN_CACHE_SIZE": str(cache_size), "TOKEN_CACHE_SECONDS": str(cache_seconds)}
    results: dict[tuple[str, str], list] = {}
    with gunicorn_serving(ROOT, workers, env) as port:

        def run(variant, skew, duration):
            scans_before = _digest_index_scans() if variant == "pat" else None  # only the PAT looks tokens up
            output = subprocess.run(
                [
                    "wrk",
                    "-t2",
                    "-c16",
                    f"-d{duration}s",
                    "--latency",
                    "-s",
                    script.name,
                    f"http://127.0.0.1:{port}/bench/{variant}",
                ],
                env={
                    **os.environ,
                    "BENCH_TOKENS": files[variant],
                    "BENCH_SKEW": "1" if skew else "0",
                    "BENCH_ZIPF_A": repr(zipf_exponent(distinct)),
                },
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            figures = wrk_figures(output)
            # The lookups the server made, counted by PostgreSQL itself: each is a cache miss.
            if scans_before is not None:
                figures["lookups"] = (_digest_index_scans() - scans_before) / figures["requests"]
            return figures

        for variant in ("none", "drf_token"):
            run(variant, True, 2)  # warm up: imports and connections
        run("pat", True, warmup)  # and the tokens in use in each worker's cache
        for _ in range(rounds):
            for skew in (False, True):
                for variant in ("none", "pat", "drf_token"):  # alternated, so drift hits every variant alike
                    results.setdefault((variant, "skewed" if skew else "uniform"), []).append(
                        run(variant, skew, seconds)
                    )
    print(
        f"\nMany integrations over HTTP: gunicorn -w {workers} + wrk -t2 -c16, {distinct:,} distinct tokens of "
        f"{tokens:,}, TOKEN_CACHE_SIZE {cache_size:,}, TOKEN_CACHE_SECONDS {cache_seconds}, "
        f"{warmup}s warm-up, {seconds}s x {rounds} rounds (medians)"
    )
    print(
        f"{'stream':<8} {'variant':<10} {'req/s':>9} {'x none':>7} {'x DRF':>6}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'errors':>7} {'lookups/req':>11}"
    )
    for stream in ("uniform", "skewed"):
        rows = {
            v: {k: statistics.median(r[k] for r in results[(v, stream)]) for k in ("rate", "p50", "p99")}
            for v in ("none", "pat", "drf_token")
        }
        measured = [r["lookups"] for r in results[("pat", stream)] if "lookups" in r]
        lookups = f"{statistics.median(measured):.3f}" if measured else "-"
        errors = {v: sum(r["errors"] for r in results[(v, stream)]) for v in rows}
        for variant, row in rows.items():
            print(
                f"{stream:<8} {variant:<10} {row['rate']:>9,.0f} {row['rate'] / rows['none']['rate']:>7.2f} "
                f"{row['rate'] / rows['drf_token']['rate']:>6.2f} {row['p50']:>7.2f} {row['p99']:>7.2f}"
                f" {errors[variant]:>7} {lookups if variant == 'pat' else '':>11}"
            )
    for name in (*set(files.values()), script.name):
        with contextlib.suppress(OSError):
            os.unlink(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--requests", type=int, default=1000, help="in-process requests per variant and repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--http", action="store_true", help="also the many-integrations stream over HTTP")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache-size", type=int, help="TOKEN_CACHE_SIZE of the HTTP run (default: the setting)")
    parser.add_argument("--cache-seconds", type=int, help="TOKEN_CACHE_SECONDS of the HTTP run (default: the setting)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of the skewed PAT stream before measuring")
    parser.add_argument("--profile", action="store_true", help="only cProfile cold PAT requests")
    parser.add_argument("--cold-only", action="store_true", help="only the in-process cold-path table")
    parser.add_argument("--http-only", action="store_true", help="only the many-integrations stream over HTTP")
    parser.add_argument("--cache-only", action="store_true", help="only the cache's memory, invalidation and hit rates")
    args = parser.parse_args()
    _setup(args)
    populate(args.tokens)

    from django.conf import settings
    from django.db import connection

    from tokens import authcache

    assert authcache.wait_until_listening(), "the token cache needs Redis (REDIS_URL)"
    _count_loads()
    trips = RoundTrips()
    needed = (args.repeats + 1) * 3 * args.requests
    rng = random.Random(3)  # noqa: S311
    sample = rng.sample(range(args.tokens), min(needed, args.tokens))
    while len(sample) < needed:  # a small table: tokens repeat across batches, the cache is emptied between
        sample += rng.sample(range(args.tokens), min(needed - len(sample), args.tokens))
    label = f"{connection.vendor}, {args.tokens:,} tokens"
    http = (
        args.tokens,
        args.seconds,
        args.rounds,
        args.workers,
        args.cache_size or settings.TOKEN_CACHE_SIZE,
        args.cache_seconds or settings.TOKEN_CACHE_SECONDS,
        args.warmup,
    )
    if args.http_only:
        return over_http(*http)
    if args.profile:
        return profile(sample[: args.requests])
    if not args.cache_only:
        with _cache_emptied_per_request():
            report_cold(in_process(sample, args.requests, args.repeats, trips), label)
    if args.cold_only:
        return
    if not args.cache_only:
        lookup_server_time(rng.sample(range(args.tokens), 300))
    cache_figures(rng.sample(range(args.tokens), min(args.tokens, settings.TOKEN_CACHE_SIZE)))
    hit_rates(args.tokens, requests=40_000, sizes=[1_000, 10_000, 50_000, 100_000])
    if args.http:
        modelled_hit_rates(args.workers, rate=2_000)
        over_http(*http)


def profile(sample: list[int]) -> None:
    """cProfile of cold PAT requests through DRF's view: where the cold path's time goes."""
    import cProfile
    import pstats

    from django.test import RequestFactory

    from benchmarks import views

    view = views.view_for("pat").as_view()
    prepared = [RequestFactory().get("/bench/pat", HTTP_AUTHORIZATION=f"Bearer {pat_secret(n)}") for n in sample]
    with _cache_emptied_per_request():
        _call(view, prepared.pop())
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [_call(view, request) for request in prepared])
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


@contextlib.contextmanager
def _cache_emptied_per_request():
    """Tokens may repeat across batches on a small table: empty the cache before each
    lookup, so every measured request pays the cold path (it costs two dict clears)."""
    from tokens import authcache

    original = authcache.cache_lookup

    def cold_lookup(key):
        authcache.cache_clear()
        return original(key)

    authcache.cache_lookup = cold_lookup
    try:
        yield
    finally:
        authcache.cache_lookup = original


if __name__ == "__main__":
    main()
