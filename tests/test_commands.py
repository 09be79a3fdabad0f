import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from iam.models import User
from tests.conftest import bearer
from tokens.models import PersonalAccessToken

pytestmark = pytest.mark.django_db


def seed_json() -> dict:
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_seed_demo_is_idempotent_and_prints_the_documented_shape(settings):
    printed = StringIO()
    call_command("seed_demo", stdout=printed)
    # `make run` says where to go: the self-service pages, the console and the API docs.
    for path in ("/tokens/", "/admin/", "/api/docs/"):
        assert f"{settings.PUBLIC_URL.rstrip('/')}{path}" in printed.getvalue()
    first = seed_json()
    call_command("seed_demo", stdout=StringIO())
    second = seed_json()
    assert first == second
    assert User.objects.count() == len(first["users"])
    assert {t["slug"] for t in first["tenants"]} == {"acme", "globex"}
    apps = {a["slug"]: a for a in first["applications"]}
    assert len(apps) >= 3 and apps["finance"]["allows_pats_in"] == ["acme"]
    users = {u["username"]: u for u in first["users"]}
    assert {u["admin"] for u in first["users"]} >= {None, "main", "user", "application"}
    assert {u["can_create_pats"] for u in first["users"]} == {True, False}
    alice = users["alice"]
    assert set(alice) >= {"username", "email", "password", "tenant", "can_create_pats", "admin", "roles"}
    assert {"application", "code", "pat_eligible", "permissions"} <= set(alice["roles"][0])
    assert any(role["pat_eligible"] for role in alice["roles"])
    assert any(not role["pat_eligible"] for u in first["users"] for role in u["roles"])
    assert User.objects.get(username="alice").check_password(alice["password"])


def test_printing_the_demo_data_needs_it_loaded_first():
    with pytest.raises(CommandError, match=r"run manage\.py seed_demo first"):
        seed_json()


def test_seeding_and_printing_never_undo_an_administrators_changes_nor_sign_anyone_out(client):
    from iam.models import AuditEvent, Role
    from iam.services import role_grant_remove, user_set_pat_creation_right
    from iam.tenancy import tenant_application_set_pats_allowed
    from tenants.models import TenantApplication

    call_command("seed_demo", stdout=StringIO())
    alice = User.objects.get(username="alice")
    token = issue("--user", "alice", "--app", "crm", "--name", "kept", "--days", "30")
    crm_rep = Role.objects.get(application__slug="crm", code="sales_rep")
    role_grant_remove(user=alice, role=crm_rep, actor=None)
    user_set_pat_creation_right(user=User.objects.get(username="dave"), allowed=False, actor=None)
    link = TenantApplication.objects.get(tenant__slug="acme", application__slug="finance")
    tenant_application_set_pats_allowed(tenant=link.tenant, application=link.application, allowed=False, actor=None)
    alice.set_password("Alice-changed-2026!")
    alice.save()
    client.force_login(alice)
    events = AuditEvent.objects.count()

    for arguments in (("--json",), (), ("--json",)):
        call_command("seed_demo", *arguments, stdout=StringIO())

    assert AuditEvent.objects.count() == events  # nothing was re-granted, re-allowed or reactivated
    assert not alice.role_grants.filter(role=crm_rep).exists()
    assert not User.objects.get(username="dave").can_create_pats
    assert not TenantApplication.objects.get(pk=link.pk).allows_pats
    assert User.objects.get(username="alice").check_password("Alice-changed-2026!")
    assert client.get("/tokens/").status_code == 200  # still signed in
    assert bearer_status(token) == 401  # inactive: the role is gone, and seeding did not bring it back
    assert seed_json()["users"][0]["roles"] != []


def bearer_status(token: str) -> int:
    from rest_framework.test import APIClient

    return bearer(APIClient(), token).get("/api/v1/me").status_code


def test_seed_demo_prints_the_logins():
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "alice" in out.getvalue() and "Alice-demo-2026!" in out.getvalue()


def issue(*args) -> str:
    out = StringIO()
    call_command("issue_pat", *args, stdout=out)
    return out.getvalue().strip()


def test_issue_pat_prints_only_a_working_token_with_all_eligible_roles(api):
    call_command("seed_demo", stdout=StringIO())
    token = issue("--user", "alice", "--app", "crm", "--name", "cli", "--days", "30")
    assert token.startswith("pat_") and "\n" not in token
    body = bearer(api, token).get("/api/v1/me").json()
    assert body["permissions"] == ["crm.contacts.read", "crm.contacts.write", "crm.orders.read"]
    stored = PersonalAccessToken.objects.get(name="cli")
    assert sorted(stored.roles.values_list("code", flat=True)) == ["crm_reader", "sales_rep"]


def test_issue_pat_by_email_with_chosen_roles():
    call_command("seed_demo", stdout=StringIO())
    issue("--user", "ALICE@acme.example", "--app", "crm", "--name", "ro", "--days", "7", "--role", "crm_reader")
    assert list(PersonalAccessToken.objects.get(name="ro").roles.values_list("code", flat=True)) == ["crm_reader"]


def test_issue_pat_makes_administrative_tokens(api):
    call_command("seed_demo", stdout=StringIO())
    token = issue("--user", "admin", "--admin", "--name", "health", "--days", "7", "--role", "developer")
    assert bearer(api, token).get("/api/v1/admin/health").status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "bob", "--app", "crm", "--name", "x", "--days", "7"], "not allowed to create"),
        (["--user", "dave", "--app", "finance", "--name", "x", "--days", "7"], "does not allow personal access"),
        (["--user", "alice", "--app", "crm", "--name", "x", "--days", "400"], "at most 365 days"),
        (["--user", "dave", "--app", "crm", "--name", "x", "--days", "91"], "at most 90 days"),
        (["--user", "alice", "--app", "crm", "--name", "x", "--days", "7", "--role", "crm_admin"], "not available"),
        (["--user", "nobody", "--app", "crm", "--name", "x", "--days", "7"], "No user"),
        (["--user", "alice", "--app", "nope", "--name", "x", "--days", "7"], "No application"),
    ],
)
def test_issue_pat_refusals_exit_non_zero_with_a_clear_message(args, message):
    call_command("seed_demo", stdout=StringIO())
    with pytest.raises(CommandError, match=message):
        issue(*args)
    assert not PersonalAccessToken.objects.exists()
