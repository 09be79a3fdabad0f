#!/usr/bin/env python
"""The gateway's cost: requests per second through Debian's nginx with the
README's ``auth_request`` configuration against the same nginx with no
authentication, and the gateway against ``/api/v1/me`` (the same verification)
asked directly, in one run.

    python benchmarks/gateway.py [--seconds 5] [--rounds 3] [--workers 2]
    BENCH_DATABASE_URL=postgres://iam:iam@127.0.0.1:5432/iam_bench python benchmarks/gateway.py

The application behind nginx is an nginx location answering 200 itself, so
both nginx variants pay the same upstream cost and the difference is the
gateway's. The service runs under gunicorn with Redis (its token cache), as in
production. wrk -t2 -c16 on loopback; variants alternated, medians of rounds.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")

import django

django.setup()

from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from benchmarks.load import free_port, gunicorn_serving, wrk_figures
from iam.models import Role, RoleGrant, User
from iam.tenancy import application_route_rules_set, application_update
from tenants.models import Application, Tenant, TenantApplication
from tests.test_gateway_nginx import NGINX, nginx_config
from tokens.services import token_create

SLUG = "gateway-bench"
VARIANTS = ("nginx_none", "nginx_gateway", "forward_direct", "me_direct")


def prepare() -> str:
    """The application, its rules and one PAT that may read orders; returns the PAT."""
    call_command("migrate", verbosity=0)
    tenant, _ = Tenant.objects.get_or_create(slug=SLUG, defaults={"name": "Gateway bench"})
    Tenant.objects.filter(pk=tenant.pk).update(token_requests_per_minute=10**9)  # the gateway, not the limiter
    application, _ = Application.objects.get_or_create(slug=SLUG, defaults={"name": "Gateway bench app"})
    TenantApplication.objects.update_or_create(tenant=tenant, application=application, defaults={"allows_pats": True})
    role, _ = Role.objects.get_or_create(
        application=application,
        code="reader",
        defaults={"name": "Reader", "permissions": ["orders.read"], "pat_eligible": True},
    )
    user, _ = User.objects.get_or_create(
        username=SLUG, defaults={"email": "gateway-bench@example.com", "tenant": tenant, "can_create_pats": True}
    )
    RoleGrant.objects.get_or_create(user=user, role=role)
    application_update(application=application, changes={"gateway_default": "deny"}, actor=None)
    rules = [{"method": "GET", "path": "/orders/**", "permissions": ["orders.read"]}]
    application_route_rules_set(application=application, rules=rules, actor=None)
    issued = token_create(
        owner=user,
        application=application,
        name=f"bench {time.time_ns()}",
        expires_at=timezone.now() + timedelta(days=7),
        role_codes=["reader"],
    )
    return issued.plaintext


def lua(headers: dict[str, str]) -> str:
    return "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in headers.items())


def measure(url: str, headers: dict[str, str], seconds: int, folder: Path) -> dict:
    script = folder / f"{abs(hash(url))}.lua"
    script.write_text(lua(headers))
    output = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return wrk_figures(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    args = parser.parse_args()
    for tool in ("wrk", NGINX):
        if shutil.which(tool) is None and not os.access(tool, os.X_OK):
            sys.exit(f"{tool} is not installed (make services; apt-get install wrk)")
    pat = prepare()
    bearer = {"Authorization": f"Bearer {pat}"}
    folder = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    folder.chmod(0o755)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings"}
    with gunicorn_serving(ROOT, args.workers, env) as service_port:
        upstream, guarded, open_port = free_port(), free_port(), free_port()
        extra = (
            f"server {{ listen 127.0.0.1:{upstream}; location / {{ return 200 'ok'; }} }}\n"
            f"server {{ listen 127.0.0.1:{open_port}; location / {{ proxy_pass http://127.0.0.1:{upstream}; }} }}\n"
        )
        conf = nginx_config(folder, guarded, f"127.0.0.1:{service_port}", upstream, SLUG, extra=extra)
        command = [NGINX, "-p", str(folder), "-c", str(conf)]
        nginx = subprocess.Popen([*command, "-g", "daemon off;"])
        try:
            time.sleep(1)
            forward_headers = {
                **bearer,
                "X-IAM-Application": SLUG,
                "X-Forwarded-Method": "GET",
                "X-Forwarded-Uri": "/orders/1",
            }
            urls = {
                "nginx_none": (f"http://127.0.0.1:{open_port}/orders/1", {}),
                "nginx_gateway": (f"http://127.0.0.1:{guarded}/orders/1", bearer),
                "forward_direct": (f"http://127.0.0.1:{service_port}/auth/forward", forward_headers),
                "me_direct": (f"http://127.0.0.1:{service_port}/api/v1/me", bearer),
            }
            for url, headers in urls.values():  # warm up every worker's caches
                measure(url, headers, 1, folder)
            runs: dict[str, list] = {variant: [] for variant in VARIANTS}
            for _ in range(args.rounds):
                for variant in VARIANTS:
                    runs[variant].append(measure(*urls[variant], args.seconds, folder))
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
    results = {
        variant: {key: statistics.median(run[key] for run in found) for key in ("rate", "p50", "p99")}
        | {"errors": sum(run["errors"] for run in found)}
        for variant, found in runs.items()
    }
    database = connection.vendor
    print(
        f"\nGateway over HTTP ({database}, Redis on): nginx + gunicorn -w {args.workers}, "
        f"wrk -t2 -c16, {args.seconds}s x {args.rounds} rounds"
    )
    print(f"{'variant':<15} {'per second':>11} {'x nginx':>8} {'x /me':>7} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8}")
    for variant in VARIANTS:
        row = results[variant]
        print(
            f"{variant:<15} {row['rate']:>11,.0f} {row['rate'] / results['nginx_none']['rate']:>8.2f} "
            f"{row['rate'] / results['me_direct']['rate']:>7.2f} {row['p50']:>7.2f} {row['p99']:>7.2f} "
            f"{row['errors']:>8}"
        )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
