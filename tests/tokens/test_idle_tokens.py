"""The tenant policy "end tokens not used for N days": told 7 days before, then revoked."""

import re
from datetime import datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from iam.models import AuditAction, AuditEvent
from iam.tenancy import tenant_update
from tokens.idle import idle_tokens_sweep
from tokens.models import PersonalAccessToken, RevocationCause, TokenStatus

pytestmark = pytest.mark.django_db


def aged(world, name: str, created_days_ago: int, used_days_ago: int | None = None) -> PersonalAccessToken:
    token = world.issue(name, days=300).token
    now = timezone.now()
    PersonalAccessToken.objects.filter(pk=token.pk).update(
        created_at=now - timedelta(days=created_days_ago),
        last_used_at=None if used_days_ago is None else now - timedelta(days=used_days_ago),
    )
    return token


def test_idle_tokens_are_announced_once_then_ended_a_week_later_and_a_use_keeps_them(
    world, main_admin, django_capture_on_commit_callbacks
):
    tenant_update(tenant=world.tenant, changes={"unused_token_days": 30}, actor=main_admin)
    never_used = aged(world, "never used", created_days_ago=40)
    aged(world, "almost idle", created_days_ago=90, used_days_ago=25)
    aged(world, "busy", created_days_ago=90, used_days_ago=1)
    comes_back = aged(world, "comes back", created_days_ago=60, used_days_ago=40)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        assert idle_tokens_sweep(now) == {"warned": 3, "ended": 0, "more": False}  # told first, even if idle for long
    (notice,) = mail.outbox
    assert "3 of your personal access tokens will be ended" in notice.subject
    assert "never used" in notice.body and "busy" not in notice.body
    assert idle_tokens_sweep(now + timedelta(hours=1)) == {"warned": 0, "ended": 0, "more": False}  # idempotent

    PersonalAccessToken.objects.filter(pk=comes_back.pk).update(last_used_at=now + timedelta(days=1))
    later = now + timedelta(days=7, minutes=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert idle_tokens_sweep(later) == {"warned": 0, "ended": 2, "more": False}
    states = {t.name: t for t in PersonalAccessToken.objects.filter(owner=world.user)}
    assert states["never used"].status == states["almost idle"].status == TokenStatus.REVOKED
    assert states["never used"].revocation_cause == RevocationCause.UNUSED
    assert states["busy"].status == states["comes back"].status == TokenStatus.ACTIVE
    event = AuditEvent.objects.filter(action=AuditAction.TOKEN_REVOKED, token_id=never_used.pk).get()
    assert "Not used for 30 days" in event.reason and event.actor_label == "unused-token policy"
    assert any("revoked" in message.subject for message in mail.outbox[1:])
    assert states["busy"].unused_warned_at is None  # used within the notice period: never told


def test_the_policy_is_off_by_default_and_at_least_seven_days(world, main_admin, client):
    from tests.console.forms import form_data

    aged(world, "old", created_days_ago=400 - 1)
    assert idle_tokens_sweep() == {"warned": 0, "ended": 0, "more": False}
    client.force_login(main_admin)
    path = f"/admin/tenants/tenant/{world.tenant.pk}/change/"
    form = form_data(client.get(path).content.decode(), "tenant_form")
    form["unused_token_days"] = ["3"]
    page = client.post(path, form)
    assert page.status_code == 200 and "greater than or equal to 7" in page.content.decode()
    world.tenant.refresh_from_db()
    assert world.tenant.unused_token_days is None


def unused_ends(page: str) -> dict[str, datetime]:
    """Each token card's "will be ended on" moment, by token name."""
    found = {}
    for name in re.findall(r'<h2 class="token-name">([^<]+)</h2>', page):
        card = page.split(f'<h2 class="token-name">{name}</h2>', 1)[1].split('<li class="token"', 1)[0]
        match = re.search(r'data-unused-end="([^"]+)"', card)
        if match:
            found[name] = datetime.fromisoformat(match.group(1))
    return found


def test_the_owner_sees_when_an_unused_token_will_be_ended(
    world, main_admin, client, django_capture_on_commit_callbacks
):
    tenant_update(tenant=world.tenant, changes={"unused_token_days": 30}, actor=main_admin)
    aged(world, "idle", created_days_ago=10)
    aged(world, "soon", created_days_ago=60, used_days_ago=25)
    aged(world, "busy", created_days_ago=60, used_days_ago=0)
    client.force_login(world.user)
    now = timezone.now()
    ends = unused_ends(client.get("/tokens/").content.decode())
    assert abs(ends["idle"] - (now + timedelta(days=20))) < timedelta(minutes=1)
    assert abs(ends["soon"] - (now + timedelta(days=7))) < timedelta(minutes=1)  # a week's notice, whatever happens
    assert abs(ends["busy"] - (now + timedelta(days=30))) < timedelta(minutes=1)

    with django_capture_on_commit_callbacks(execute=True):
        assert idle_tokens_sweep(now)["warned"] == 1
    page = client.get("/tokens/").content.decode()
    warned = PersonalAccessToken.objects.get(name="soon").unused_warned_at
    assert unused_ends(page)["soon"] == warned + timedelta(days=7)  # the page says what the sweep will do
    assert 'class="notice notice-warning" data-unused-end' in page
    assert idle_tokens_sweep(warned + timedelta(days=7, seconds=1))["ended"] == 1


def test_tokens_awaiting_approval_are_not_ended_for_being_unused(world, main_admin):
    from tests.factories import RoleFactory, grant

    role = RoleFactory(application=world.application, code="auditor", permissions=["a.b"], needs_token_approval=True)
    grant(world.user, role)
    tenant_update(tenant=world.tenant, changes={"unused_token_days": 7}, actor=main_admin)
    pending = world.issue("waiting", roles=("auditor",), days=300).token
    PersonalAccessToken.objects.filter(pk=pending.pk).update(created_at=timezone.now() - timedelta(days=60))
    assert idle_tokens_sweep() == {"warned": 0, "ended": 0, "more": False}


def test_a_run_stops_at_its_limit_and_the_task_drains_the_rest_at_once(
    world, main_admin, monkeypatch, django_capture_on_commit_callbacks
):
    from tokens import idle
    from tokens.tasks import sweep_idle_tokens

    tenant_update(tenant=world.tenant, changes={"unused_token_days": 30}, actor=main_admin)
    for number in range(5):
        aged(world, f"idle {number}", created_days_ago=40)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        assert idle_tokens_sweep(now, limit=2) == {"warned": 2, "ended": 0, "more": True}
    monkeypatch.setattr(idle, "RUN_LIMIT", 2)
    with django_capture_on_commit_callbacks(execute=True):
        sweep_idle_tokens()  # runs again at once while it stops at the limit (in-process here)
    assert not PersonalAccessToken.objects.filter(owner=world.user, unused_warned_at__isnull=True).exists()
    assert len(mail.outbox) == 3  # one e-mail per owner and run: 2 + 2 + 1 tokens
