#!/usr/bin/env python
"""Authentication throughput: our PAT and exchanged JWT against no
authentication and the Django peers, on the same trivial DRF endpoint, the
same machine and the same database, in one run.

    python benchmarks/auth_throughput.py [--tokens 10000] [--http] [--seconds 5]
    BENCH_DATABASE_URL=postgres://iam:iam@127.0.0.1:5432/iam_bench python benchmarks/auth_throughput.py

In-process: authentications per second through DRF's view (median of several
repeats). Over HTTP (--http): gunicorn on 127.0.0.1 and wrk on loopback, each
variant for a fixed time, variants alternated. Figures are printed with their
ratio to no authentication and to DRF's TokenAuthentication. Peers come from
requirements-bench.txt and are never installed in the product.
"""

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
# Production runs with Redis (the token cache, limits and usage counters live
# there): so does the benchmark, on a database of its own. --no-redis drops it.
if "--no-redis" in sys.argv:
    os.environ["REDIS_URL"] = ""
else:
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")

import django

django.setup()

from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from benchmarks import views
from benchmarks.load import gunicorn_serving, wrk_figures
from iam.models import Role, RoleGrant, User
from tenants.models import Application, Tenant, TenantApplication
from tokens import keys
from tokens.models import PersonalAccessToken
from tokens.oauth import oauth_client_create, token_exchange
from tokens.services import token_create

VARIANTS = ["none", "pat", "pat_networks", "jwt", "drf_token", "knox", "api_key", "argon2"]
CHUNK = 5000


def populate(count: int) -> dict[str, str]:
    """Fill the tables to ``count`` credentials per mechanism; return the
    Authorization header of one valid credential per variant."""
    call_command("migrate", verbosity=0)
    from knox.models import AuthToken
    from rest_framework.authtoken.models import Token
    from rest_framework_api_key.models import APIKey

    tenant, _ = Tenant.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    tenant.token_requests_per_minute = 10**9  # measure authentication, not the limiter
    tenant.save()
    app, _ = Application.objects.get_or_create(slug="bench-app", defaults={"name": "Bench app"})
    TenantApplication.objects.update_or_create(tenant=tenant, application=app, defaults={"allows_pats": True})
    role, _ = Role.objects.get_or_create(
        application=app, code="reader", defaults={"name": "Reader", "permissions": ["x.read"], "pat_eligible": True}
    )
    user, _ = User.objects.get_or_create(
        username="bench", defaults={"email": "bench@bench.example", "tenant": tenant, "can_create_pats": True}
    )
    RoleGrant.objects.get_or_create(user=user, role=role)

    pat = token_create(
        owner=user,
        application=app,
        name=f"measured {secrets.token_hex(4)}",
        role_codes=["reader"],
        expires_at=timezone.now() + timedelta(days=300),
    ).plaintext
    bound = token_create(
        owner=user,
        application=app,
        name=f"measured, bound {secrets.token_hex(4)}",
        role_codes=["reader"],
        expires_at=timezone.now() + timedelta(days=300),
        allowed_networks=["10.0.0.0/8", "2001:db8::/32", "127.0.0.0/8"],
    ).plaintext
    client = oauth_client_create(application=app, name=f"bench {secrets.token_hex(4)}", actor=None, token_exchange=True)
    jwt = token_exchange(client=client.client, subject_token=pat, subject_token_type=keys_type())["access_token"]
    views.ARGON2_HASHES[pat[:10]] = make_password(pat)
    views.ARGON2_FILE.write_text(json.dumps(views.ARGON2_HASHES))

    _fill_users_and_drf_tokens(tenant, count)
    fillers = list(User.objects.filter(username__startswith="filler").values_list("pk", flat=True))
    _fill_pats(fillers, tenant, app, count)
    drf_key = Token.objects.get_or_create(user=user)[0].key
    _fill_knox(fillers, count)
    knox_key = AuthToken.objects.create(user=user, expiry=timedelta(days=30))[1]
    _fill_api_keys(count)
    _, api_key = APIKey.objects.create_key(name="measured")
    return {
        "none": "",
        "pat": f"Bearer {pat}",
        "pat_networks": f"Bearer {bound}",
        "jwt": f"Bearer {jwt}",
        "drf_token": f"Token {drf_key}",
        "knox": f"Token {knox_key}",
        "api_key": f"Api-Key {api_key}",
        "argon2": f"Bearer {pat}",
    }


def keys_type() -> str:
    from tokens.oauth import PAT_TOKEN_TYPE

    return PAT_TOKEN_TYPE


def _fill_pats(owners: list[int], tenant, app, count):
    """Filler tokens spread over the filler users, ten each."""
    have = PersonalAccessToken.objects.count()
    now = timezone.now()
    for start in range(have, count, CHUNK):
        rows = []
        for i in range(start, min(start + CHUNK, count)):
            plaintext = keys.generate()
            rows.append(
                PersonalAccessToken(
                    owner_id=owners[(i // 10) % len(owners)],
                    tenant=tenant,
                    application=app,
                    name=f"filler {i}",
                    created_at=now,
                    expires_at=now + timedelta(days=200),
                    display_prefix=plaintext[:10],
                    digest=keys.digest(plaintext),
                    pepper_id=keys.current_pepper_id(),
                )
            )
        PersonalAccessToken.objects.bulk_create(rows)


def _fill_users_and_drf_tokens(tenant, count):
    from rest_framework.authtoken.models import Token

    have = Token.objects.count()
    for start in range(have, count, CHUNK):
        users = User.objects.bulk_create(
            [
                User(username=f"filler{i}", email=f"filler{i}@bench.example", tenant=tenant, password="!")
                for i in range(start, min(start + CHUNK, count))
            ]
        )
        if users[0].pk is None:  # databases that do not return ids from bulk_create
            users = list(User.objects.filter(username__in=[u.username for u in users]))
        Token.objects.bulk_create([Token(key=secrets.token_hex(20), user=u) for u in users])


def _fill_knox(owners: list[int], count):
    """One filler token per filler user: knox reads all of a user's tokens on
    every authentication (to clean up expired ones), so piling them on one
    user would measure that, not the lookup."""
    from knox.crypto import hash_token
    from knox.models import AuthToken
    from knox.settings import CONSTANTS

    have = AuthToken.objects.count()
    expiry = timezone.now() + timedelta(days=30)
    for start in range(have, count, CHUNK):
        rows = []
        for i in range(start, min(start + CHUNK, count)):
            token = secrets.token_hex(32)
            rows.append(
                AuthToken(
                    digest=hash_token(token),
                    token_key=token[: CONSTANTS.TOKEN_KEY_LENGTH],
                    user_id=owners[i % len(owners)],
                    expiry=expiry,
                )
            )
        AuthToken.objects.bulk_create(rows)


def _fill_api_keys(count):
    from rest_framework_api_key.models import APIKey

    have = APIKey.objects.count()
    generator = APIKey.objects.key_generator
    for start in range(have, count, CHUNK):
        rows = []
        for i in range(start, min(start + CHUNK, count)):
            _, prefix, hashed = generator.generate()
            rows.append(APIKey(id=f"{prefix}.{hashed}", prefix=prefix, hashed_key=hashed, name=f"filler {i}"))
        APIKey.objects.bulk_create(rows)


def in_process(headers: dict[str, str], requests: int, repeats: int) -> dict[str, dict]:
    factory = RequestFactory()
    results = {}
    for variant in VARIANTS:
        view = views.view_for(variant).as_view()
        extra = {"HTTP_AUTHORIZATION": headers[variant]} if headers[variant] else {}
        count = requests

        def call(view=view, variant=variant, extra=extra):
            response = view(factory.get(f"/bench/{variant}", **extra))
            response.render()
            assert response.status_code == 200, (variant, response.status_code, response.content)

        for _ in range(5):
            call()
        with CaptureQueriesContext(connection) as queries:
            call()
        writes = sum(1 for q in queries.captured_queries if re.match(r"\s*(INSERT|UPDATE|DELETE)", q["sql"], re.I))
        rates = []
        for _ in range(repeats):
            # Each repeat runs ``requests`` calls or one second, whichever ends
            # first, so the slow peers (Argon2) take no longer than the others.
            started, done = time.perf_counter(), 0
            while done < count and (done < 5 or time.perf_counter() - started < 1.0):
                call()
                done += 1
            rates.append(done / (time.perf_counter() - started))
        results[variant] = {
            "rate": statistics.median(rates),
            "queries": len(queries.captured_queries),
            "writes": writes,
        }
    return results


WRK_LUA = 'wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")\n'


def over_http(headers: dict[str, str], seconds: int, rounds: int, workers: int) -> dict[str, dict]:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings"}
    results: dict[str, list] = {variant: [] for variant in VARIANTS}
    with gunicorn_serving(ROOT, workers, env) as port:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(WRK_LUA)
        for variant in VARIANTS:  # warm up: imports, connections and caches in every worker
            subprocess.run(
                ["wrk", "-t2", "-c16", "-d1s", "-s", script.name, f"http://127.0.0.1:{port}/bench/{variant}"],
                env={**os.environ, "BENCH_AUTH": headers[variant]},
                capture_output=True,
                check=True,
            )
            _drain(port)
        for _ in range(rounds):
            for variant in VARIANTS:  # alternated, so drift hits every variant alike
                duration = max(2, seconds // 3) if variant == "argon2" else seconds
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
                    env={**os.environ, "BENCH_AUTH": headers[variant]},
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                results[variant].append(wrk_figures(output))
                _drain(port)
    return {
        variant: {
            "rate": statistics.median(r["rate"] for r in runs),
            "p50": statistics.median(r["p50"] for r in runs),
            "p99": statistics.median(r["p99"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
        }
        for variant, runs in results.items()
    }


def _drain(port: int) -> None:
    """Wait until the requests wrk left queued (Argon2's take seconds) are served,
    so the next variant does not pay for them."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = time.monotonic()
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/none", timeout=60).read()
        if time.monotonic() - started < 0.05:
            return


def report(title: str, results: dict[str, dict], extra: tuple[str, ...] = ()) -> None:
    base, drf = results["none"]["rate"], results["drf_token"]["rate"]
    print(f"\n{title}")
    header = f"{'variant':<13} {'per second':>12} {'x none':>8} {'x DRF Token':>12}"
    for column in extra:
        header += f" {column:>9}"
    print(header)
    for variant in VARIANTS:
        row = results[variant]
        line = f"{variant:<13} {row['rate']:>12,.0f} {row['rate'] / base:>8.2f} {row['rate'] / drf:>12.2f}"
        for column in extra:
            value = row[column]
            line += f" {value:>9.2f}" if isinstance(value, float) else f" {value:>9}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=10_000, help="credentials per mechanism in the tables")
    parser.add_argument("--requests", type=int, default=4000, help="in-process requests per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--http", action="store_true", help="also measure over HTTP with gunicorn and wrk")
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per variant and round")
    parser.add_argument("--rounds", type=int, default=4, help="HTTP rounds (fewer let one slow phase skew a ratio)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--no-redis", action="store_true", help="run without Redis (no token cache)")
    args = parser.parse_args()

    started = time.perf_counter()
    headers = populate(args.tokens)
    print(
        f"database: {connection.vendor}, {args.tokens:,} credentials per mechanism "
        f"(filled in {time.perf_counter() - started:.0f} s); redis: {bool(os.environ.get('REDIS_URL'))}"
    )
    report(
        "In-process authentications per second (median of repeats)",
        in_process(headers, args.requests, args.repeats),
        extra=("queries", "writes"),
    )
    if args.http:
        report(
            f"Over HTTP: gunicorn -w {args.workers} + wrk -t2 -c16, {args.seconds}s x {args.rounds} rounds",
            over_http(headers, args.seconds, args.rounds, args.workers),
            extra=("p50", "p99", "errors"),
        )


if __name__ == "__main__":
    main()
