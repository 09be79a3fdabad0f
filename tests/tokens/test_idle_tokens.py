"""The tenant policy "end tokens not used for N days": told 7 days before, then revoked."""

from datetime import timedelta

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
        assert idle_tokens_sweep(now) == {"warned": 3, "ended": 0}  # told first, even if idle for long
    (notice,) = mail.outbox
    assert "3 of your personal access tokens will be ended" in notice.subject
    assert "never used" in notice.body and "busy" not in notice.body
    assert idle_tokens_sweep(now + timedelta(hours=1)) == {"warned": 0, "ended": 0}  # idempotent

    PersonalAccessToken.objects.filter(pk=comes_back.pk).update(last_used_at=now + timedelta(days=1))
    later = now + timedelta(days=7, minutes=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert idle_tokens_sweep(later) == {"warned": 0, "ended": 2}
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
    assert idle_tokens_sweep() == {"warned": 0, "ended": 0}
    client.force_login(main_admin)
    path = f"/admin/tenants/tenant/{world.tenant.pk}/change/"
    form = form_data(client.get(path).content.decode(), "tenant_form")
    form["unused_token_days"] = ["3"]
    page = client.post(path, form)
    assert page.status_code == 200 and "greater than or equal to 7" in page.content.decode()
    world.tenant.refresh_from_db()
    assert world.tenant.unused_token_days is None
