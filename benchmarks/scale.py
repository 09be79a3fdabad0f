#!/usr/bin/env python
"""A million tokens on PostgreSQL: does every page and lookup stay flat?

    BENCH_DATABASE_URL=postgres://iam:iam@127.0.0.1:5432/iam_scale python benchmarks/scale.py --tokens 1000000

Fills the database (COPY, a few minutes for a million) with ``--tokens`` PATs
over ``--tenants`` tenants: ten tokens per user on average, one user with 100,
two role grants per user, one or two roles per token, one audit event per
token, statuses and expiries spread as in real life. Then, through the real
views (Django's test client, logged in), it times and EXPLAINs: the token
lookup of authentication, a user's self-service list, the console's token
overview (first page, each filter, each ordering and a search), the dashboard, the
audit trail, the expiry-reminder sweep and the unused-token sweep. A query that reads the token or
audit table with a sequential scan is reported. The two background sweeps
the console relies on (the inactive-mark reconciliation and the dashboard's
stored figures) are timed too. Run it at two sizes to see
the growth (the filling is incremental: a second, larger run adds rows).
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://iam:iam@127.0.0.1:5432/iam_scale")
os.environ["REDIS_URL"] = ""  # pages and sweeps only: no token cache in the way

import django

django.setup()

from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from iam.models import AuditEvent, Role, RoleGrant, User
from tenants.models import Application, Tenant, TenantApplication
from tokens import keys
from tokens.idle import RUN_LIMIT, idle_tokens_sweep
from tokens.lookup import load_token_for_authentication, lookup_sql
from tokens.maintenance import dashboard_figures_refresh, inactive_marks_reconcile
from tokens.models import PersonalAccessToken
from tokens.notifications import expiry_reminders_due
from tokens.rules import EffectiveStatus

TOKENS_PER_USER = 10
APPLICATIONS = 5
LONG_SCAN = 10_000  # rows: a scan under a LIMIT that stops before this is O(page)
WATCHED_TABLES = {PersonalAccessToken._meta.db_table, AuditEvent._meta.db_table}


# Columns COPY must fill (Django's defaults are not the database's): their values for a fresh token.
NOT_NULL_DEFAULTS = {
    "purpose": "",
    "allowed_networks": "[]",
    "approval": "",
    "approval_decided_by_label": "",
    "approval_note": "",
}


def copy_rows(model, columns: list[str], rows) -> None:
    """COPY rows into the model's table (a hundred times faster than INSERT)."""
    table = model._meta.db_table if hasattr(model, "_meta") else model
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def populate(token_count: int, tenant_count: int) -> None:
    call_command("migrate", verbosity=0)
    now = timezone.now()
    rng = random.Random(7)  # noqa: S311 - filler data, not secrets
    applications = [
        Application.objects.get_or_create(slug=f"app-{n}", defaults={"name": f"Application {n}"})[0]
        for n in range(APPLICATIONS)
    ]
    roles = {
        app.pk: [
            Role.objects.get_or_create(
                application=app,
                code=code,
                defaults={"name": code.title(), "permissions": [f"{app.slug}.{code}"], "pat_eligible": True},
            )[0]
            for code in ("reader", "writer", "approver")
        ]
        for app in applications
    }
    tenants = []
    for n in range(tenant_count):
        tenant, created = Tenant.objects.get_or_create(slug=f"tenant-{n}", defaults={"name": f"Tenant {n}"})
        if created:
            for app in applications:
                TenantApplication.objects.create(tenant=tenant, application=app, allows_pats=True)
        tenants.append(tenant)
    have = PersonalAccessToken.objects.count()
    if have >= token_count:
        return
    started = time.perf_counter()
    # Users: ten tokens each, spread evenly over the tenants.
    first_user = (User.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    new_users = (token_count - have) // TOKENS_PER_USER
    copy_rows(
        User,
        [
            "id",
            "password",
            "is_superuser",
            "username",
            "first_name",
            "last_name",
            "is_staff",
            "is_active",
            "date_joined",
            "email",
            "tenant_id",
            "can_create_pats",
        ],
        (
            (
                uid,
                "!",
                False,
                f"user{uid}",
                "",
                "",
                False,
                uid % 97 != 0,  # about 1% of users deactivated: their tokens are inactive
                now,
                f"user{uid}@scale.example",
                tenants[uid % tenant_count].pk,
                True,
            )
            for uid in range(first_user, first_user + new_users)
        ),
    )
    _reset_sequence(User)
    user_apps = {uid: applications[uid % APPLICATIONS] for uid in range(first_user, first_user + new_users)}
    copy_rows(
        RoleGrant,
        ["user_id", "role_id", "granted_at"],
        ((uid, role.pk, now) for uid, app in user_apps.items() for role in roles[app.pk][:2]),
    )
    # Tokens: 85% active, 10% revoked, 5% deleted; expiries from a month ago to a year ahead.
    first_token = (PersonalAccessToken.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    token_rows, link_rows, event_rows = [], [], []
    for offset in range(new_users * TOKENS_PER_USER):
        tid = first_token + offset
        uid = first_user + offset // TOKENS_PER_USER
        app = user_apps[uid]
        created = now - timedelta(days=rng.randint(1, 400))
        expires = max(created + timedelta(days=1), now + timedelta(days=rng.randint(-30, 365)))
        status = rng.choices(["active", "revoked", "deleted"], [85, 10, 5])[0]
        last_used = now - timedelta(hours=rng.randint(1, 2400)) if rng.random() < 0.7 else None
        secret = keys.generate()
        token_rows.append(
            (
                tid,
                uid,
                tenants[uid % tenant_count].pk,
                app.pk,
                f"token {offset % TOKENS_PER_USER}",
                "personal",
                status,
                created,
                expires,
                last_used,
                now if status == "revoked" else None,
                now if status == "deleted" else None,
                secret[:10],
                keys.digest(secret),
                keys.current_pepper_id(),
                False,  # marked_inactive: set by the reconciliation below, as after any bypass
                "administrator" if status == "revoked" else "",  # revocation_cause: a revoked token has one
                "",
                "",
                *NOT_NULL_DEFAULTS.values(),
            )
        )
        for role in roles[app.pk][: 1 + offset % 2]:
            link_rows.append((tid, role.pk))
        event_rows.append((created, tenants[uid % tenant_count].pk, uid, f"user{uid}", "token_created", tid, "{}", ""))
    copy_rows(
        PersonalAccessToken,
        [
            "id",
            "owner_id",
            "tenant_id",
            "application_id",
            "name",
            "kind",
            "status",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "deleted_at",
            "display_prefix",
            "digest",
            "pepper_id",
            "marked_inactive",
            "revocation_cause",
            "revoked_by_label",
            "revocation_reason",
            *NOT_NULL_DEFAULTS,
        ],
        token_rows,
    )
    _reset_sequence(PersonalAccessToken)
    copy_rows(PersonalAccessToken.roles.through, ["personalaccesstoken_id", "role_id"], link_rows)
    copy_rows(
        AuditEvent,
        ["occurred_at", "tenant_id", "actor_id", "actor_label", "action", "token_id", "changes", "reason"],
        event_rows,
    )
    with connection.cursor() as cursor:
        # As autovacuum does after a bulk insert: until then index-only scans
        # visit the heap, and the plans would depend on when it last ran.
        cursor.execute("VACUUM ANALYZE")
    print(f"filled {len(token_rows):,} tokens and {new_users:,} users in {time.perf_counter() - started:.0f} s")


def _reset_sequence(model) -> None:
    table = model._meta.db_table
    with connection.cursor() as cursor:
        sql = f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608
        cursor.execute(sql)


def heavy_user(tenant: Tenant, application: Application) -> User:
    """A user with 100 tokens, for the self-service list."""
    user, created = User.objects.get_or_create(
        username="hundred", defaults={"tenant": tenant, "email": "hundred@scale.example", "can_create_pats": True}
    )
    if created:
        role = Role.objects.filter(application=application).first()
        RoleGrant.objects.create(user=user, role=role)
        now = timezone.now()
        tokens = PersonalAccessToken.objects.bulk_create(
            PersonalAccessToken(
                owner=user,
                tenant=tenant,
                application=application,
                name=f"mine {n}",
                created_at=now,
                expires_at=now + timedelta(days=90),
                display_prefix="pat_hundre",
                digest=keys.digest(keys.generate()),
                pepper_id=keys.current_pepper_id(),
            )
            for n in range(100)
        )
        PersonalAccessToken.roles.through.objects.bulk_create(
            PersonalAccessToken.roles.through(personalaccesstoken_id=t.pk, role_id=role.pk) for t in tokens
        )
    return user


def administrator(code: str, tenant: Tenant) -> User:
    from tests.factories import service_role

    user, created = User.objects.get_or_create(
        username=f"scale-{code}", defaults={"tenant": tenant, "email": f"{code}@scale.example"}
    )
    if created:
        RoleGrant.objects.create(user=user, role=service_role(code))
    return user


def measure(label: str, action, repeats: int, statements: list[tuple[str, list]] | None = None) -> dict:
    """Run ``action`` ``repeats`` times; keep the median and the best time (the
    code's own cost, with less of the machine's noise), the queries of the last
    run, and any sequential scan of a watched table in their plans (or in those
    of ``statements``, with their parameters: a prepared statement is logged
    as written, without them)."""
    timings = []
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            action()
            timings.append((time.perf_counter() - started) * 1000)
    explained = statements or [(query["sql"], None) for query in queries.captured_queries]
    scans = sorted({table for sql, params in explained for table in seq_scans(sql, params)})
    return {
        "label": label,
        "ms": statistics.median(timings),
        "best": min(timings),
        "queries": len(queries),
        "seq_scans": scans,
    }


def seq_scans(sql: str, params: list | None = None) -> list[str]:
    """The watched tables a query reads with a sequential scan, with the rows
    it read (EXPLAIN ANALYZE): a scan under a LIMIT may stop after a few."""
    if not sql.lstrip().upper().startswith("SELECT"):
        return []
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found = []

    def walk(node):
        if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") in WATCHED_TABLES:
            read = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * node.get("Actual Loops", 1)
            found.append(f"{node['Relation Name']} ({read:,} rows)")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def _rows_read(scan: str) -> int:
    return int(scan.rpartition("(")[2].split()[0].replace(",", ""))


def page(client: Client, url: str):
    def get():
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)

    return get


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    assert connection.vendor == "postgresql", "scale.py measures PostgreSQL (set BENCH_DATABASE_URL)"
    populate(args.tokens, args.tenants)
    total = PersonalAccessToken.objects.count()
    tenant = Tenant.objects.get(slug="tenant-1")
    application = Application.objects.get(slug="app-0")
    hundred = heavy_user(tenant, application)
    results = []
    # COPY bypassed the services that keep marked_inactive; the hourly
    # reconciliation sets it, as it would after any such bypass.
    started = time.perf_counter()
    corrected = inactive_marks_reconcile()
    reconcile = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {PersonalAccessToken._meta.db_table}")  # as autovacuum would, after the marks
    started = time.perf_counter()
    dashboard_figures_refresh()
    refresh = time.perf_counter() - started

    sample = PersonalAccessToken.objects.filter(tenant=tenant).order_by("?").values_list("digest", flat=True)[:1][0]
    results.append(
        measure(
            "token lookup (authentication, uncached)",
            lambda: load_token_for_authentication([sample]),
            args.repeats * 4,
            statements=[(lookup_sql(connection.vendor, "digest", 1), [sample] * 3)],
        )
    )
    browser = Client()
    browser.force_login(hundred)
    results.append(measure("self-service list (100 tokens)", page(browser, "/tokens/"), args.repeats))

    overview = "/admin/tokens/personalaccesstoken/"
    for code, who in (("user_administrator", "user administrator"), ("main_administrator", "main administrator")):
        console = Client()
        console.force_login(administrator(code, tenant))
        urls = [("first page", "")]
        urls += [(f"status={s}", f"?status={s}") for s in EffectiveStatus.values]
        urls += [
            ("expiring=7", "?expiring=7"),
            ("use=never", "?use=never"),
            ("use=stale", "?use=stale"),
            (f"application={application.pk}", f"?application__id__exact={application.pk}"),
        ]
        urls += [
            (f"ordered by {name}{direction}", f"?o={'-' if direction else ''}{index}")
            for name, index in sortable_columns(console)
            for direction in ("", " desc")
        ]
        urls += [("search: 1,111 owners match", "?q=user42"), ("search: every name matches", "?q=token")]
        for label, query in urls:
            results.append(measure(f"overview, {who}: {label}", page(console, overview + query), args.repeats))
        results.append(measure(f"dashboard, {who}", page(console, "/admin/dashboard/"), args.repeats))
        audit = "/admin/iam/auditevent/"
        for label, query in (("", ""), (": oldest first", "?o=0"), (": search", "?q=user42")):
            results.append(measure(f"audit trail{label}, {who}", page(console, audit + query), args.repeats))
        results.append(
            measure(
                f"audit trail of one token, {who}",
                page(console, f"/admin/iam/auditevent/?q={sample_id(tenant)}"),  # search by token id
                args.repeats,
            )
        )

    started = time.perf_counter()
    due = sum(1 for _ in expiry_reminders_due())
    sweep = time.perf_counter() - started

    idle_runs = idle_sweep_runs()

    tenants = Tenant.objects.count()
    print(f"\nPostgreSQL, {total:,} tokens over {tenants} tenants ({args.repeats} runs: median and best)")
    print(f"{'what':<62} {'ms':>8} {'best':>8} {'queries':>8}  sequential scans")
    for row in results:
        flag = ", ".join(row["seq_scans"]) or "-"
        print(f"{row['label']:<62} {row['ms']:>8.1f} {row['best']:>8.1f} {row['queries']:>8}  {flag}")
    print(f"{'expiry-reminder sweep (finds the due reminders)':<62} {sweep * 1000:>8.0f} {'':>17}  {due:,} due")
    print(f"{'inactive-mark reconciliation (beat, hourly)':<62} {reconcile * 1000:>8.0f} {'':>17}  {corrected:,} set")
    print(f"{'dashboard figures of every tenant (beat)':<62} {refresh * 1000:>8.0f}")
    print(f"\nunused-token sweep, 90 days, runs of at most {RUN_LIMIT:,} tokens")
    print(f"{'when':<40} {'runs':>5} {'slowest s':>10} {'total s':>8}  done")
    for label, runs, slowest, total, done in idle_runs:
        told = f"{done['warned']:,} told, {done['ended']:,} ended"
        print(f"{label:<40} {runs:>5} {slowest:>10.1f} {total:>8.1f}  {told}")
    slow = [f"{row['label']} ({row['ms']:.0f})" for row in results if row["ms"] >= 100]
    scans = [row["label"] for row in results if row["seq_scans"]]
    long_scans = [row["label"] for row in results if any(_rows_read(scan) > LONG_SCAN for scan in row["seq_scans"])]
    print(f"\npages over 100 ms: {len(slow)}{': ' + '; '.join(slow) if slow else ''}")
    print(f"pages with a sequential scan of the token or audit table: {len(scans)}")
    print(
        f"pages with one reading more than {LONG_SCAN:,} rows: {len(long_scans)}"
        f"{': ' + '; '.join(long_scans) if long_scans else ''}"
    )
    print(f"reminder sweep under 60 s: {'yes' if sweep < 60 else 'NO'} ({sweep:.1f} s)")
    slowest = max(run[2] for run in idle_runs)
    print(f"unused-token sweep runs under 60 s: {'yes' if slowest < 60 else 'NO'} (slowest {slowest:.1f} s)")


def idle_sweep_runs(days: int = 90) -> list[tuple[str, int, float, float, dict]]:
    """The unused-token sweep with every tenant ending tokens unused for
    ``days``, as beat and the task's own follow-ups run it: runs of at most
    ``RUN_LIMIT`` tokens until one stops short of it. Three moments: the
    policy switched on (owners told), a week later (the tokens ended) and the
    hour after (nothing due). For each: the runs, the slowest run, the total
    time and what was done. In a transaction rolled back afterwards, so the
    filled database stays as it was and no e-mail leaves."""
    moments = []
    with transaction.atomic():
        Tenant.objects.update(unused_token_days=days)
        now = timezone.now()
        for label, at in (
            ("policy switched on: owners told", now),
            ("a week later: tokens ended", now + timedelta(days=7, minutes=1)),
            ("an hour after: nothing due", now + timedelta(days=7, hours=1)),
        ):
            runs, done, slowest, total = 0, {"warned": 0, "ended": 0}, 0.0, 0.0
            while True:
                started = time.perf_counter()
                counts = idle_tokens_sweep(at)
                seconds = time.perf_counter() - started
                runs, slowest, total = runs + 1, max(slowest, seconds), total + seconds
                done = {key: done[key] + counts[key] for key in done}
                if not counts["more"]:
                    break
            moments.append((label, runs, slowest, total, done))
        transaction.set_rollback(True)
    return moments


def sortable_columns(console: Client) -> list[tuple[str, int]]:
    """(column, index for the ``o`` parameter) of each column the overview offers to sort by, as
    the changelist numbers them for this administrator (the selection checkbox comes first)."""
    with CaptureTemplateContext() as captured:
        console.get("/admin/tokens/personalaccesstoken/")
    changelist = captured.context["cl"]
    return [(name, index) for index, name in enumerate(changelist.list_display) if name in changelist.sortable_by]


class CaptureTemplateContext:
    """The context of the last template rendered in the block (what the test
    client records under the test runner, without its other changes)."""

    def __enter__(self):
        from django.template import Template
        from django.test.signals import template_rendered
        from django.test.utils import instrumented_test_render

        self._original, Template._render = Template._render, instrumented_test_render
        self._signal = template_rendered
        self.context = None
        template_rendered.connect(self._store)
        return self

    def _store(self, sender, context, **kwargs):
        if self.context is None:
            self.context = context

    def __exit__(self, *exc):
        from django.template import Template

        Template._render = self._original
        self._signal.disconnect(self._store)


def sample_id(tenant: Tenant) -> int:
    return PersonalAccessToken.objects.filter(tenant=tenant).values_list("pk", flat=True).first()


if __name__ == "__main__":
    main()
