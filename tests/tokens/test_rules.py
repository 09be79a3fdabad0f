"""Derived states: EXPIRED and INACTIVE follow from time and from the IAM, and
come back by themselves when the cause goes away."""

from datetime import timedelta

import pytest
from django.utils import timezone

from iam.models import AuditAction, AuditEvent
from iam.services import role_grant_add, user_set_active, user_set_pat_creation_right
from iam.tenancy import tenant_application_set_pats_allowed
from tests.factories import TenantFactory
from tokens.models import PersonalAccessToken
from tokens.rules import EffectiveStatus, token_state, token_states

pytestmark = pytest.mark.django_db


def reason_codes(token):
    return [reason.code for reason in token_state(token).inactive_reasons]


def test_active_token_has_the_permissions_of_its_roles(world):
    state = token_state(world.issue().token)
    assert state.status == EffectiveStatus.ACTIVE
    assert state.permissions == {"orders.read", "orders.write"}


def test_expired_is_derived_from_time_and_never_written(world):
    token = world.issue(days=2).token
    assert token_state(token, now=timezone.now() + timedelta(days=3)).status == EffectiveStatus.EXPIRED
    token.refresh_from_db()
    assert token.status == "active"


def test_application_switched_off_makes_tokens_inactive_and_on_again_active(world, app_admin):
    token = world.issue().token
    changed = tenant_application_set_pats_allowed(
        tenant=world.tenant, application=world.application, allowed=False, actor=app_admin
    )
    assert [c.token_id for effect in changed.effects for c in effect.changes] == [token.pk]
    assert reason_codes(token) == ["application_disallows_pats"]
    tenant_application_set_pats_allowed(
        tenant=world.tenant, application=world.application, allowed=True, actor=app_admin
    )
    assert token_state(token).is_usable
    actions = list(AuditEvent.objects.filter(token=token).values_list("action", flat=True).order_by("id"))
    assert actions == [AuditAction.TOKEN_CREATED, AuditAction.TOKEN_INACTIVATED, AuditAction.TOKEN_REACTIVATED]


def test_switching_one_tenant_off_leaves_other_tenants_tokens_alone(world, other_world, main_admin):
    token = world.issue().token
    tenant_application_set_pats_allowed(
        tenant=other_world.tenant, application=world.application, allowed=False, actor=main_admin
    )
    assert token_state(token).is_usable


def test_removing_the_creation_right_makes_tokens_inactive_until_restored(world, user_admin):
    token = world.issue().token
    user_set_pat_creation_right(user=world.user, allowed=False, actor=user_admin)
    assert reason_codes(token) == ["owner_pat_right_removed"]
    user_set_pat_creation_right(user=world.user, allowed=True, actor=user_admin)
    assert token_state(token).is_usable


def test_deactivating_the_owner_makes_tokens_inactive(world, user_admin):
    token = world.issue().token
    user_set_active(user=world.user, active=False, actor=user_admin)
    assert "owner_deactivated" in reason_codes(token)
    assert AuditEvent.objects.filter(token=token, action=AuditAction.TOKEN_INACTIVATED).exists()


def test_moving_the_owner_to_another_tenant_makes_tokens_inactive(world):
    token = world.issue().token
    world.user.tenant = TenantFactory()
    world.user.save()
    assert "owner_changed_tenant" in reason_codes(token)


def test_regranting_a_removed_role_reactivates(world, user_admin):
    from iam.services import role_grant_remove

    token = world.issue(roles=("writer",)).token
    role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    assert not token_state(token).is_usable
    role_grant_add(user=world.user, role=world.writer, actor=user_admin)
    assert token_state(token).is_usable


def test_token_whose_roles_were_all_deleted_grants_nothing(world):
    token = world.issue(roles=("writer",)).token
    world.writer.delete()
    assert "no_roles" in reason_codes(token)
    assert token_state(token).permissions == frozenset()


def test_an_expired_and_inactive_token_reports_both(world, user_admin):
    token = world.issue(days=2).token
    user_set_pat_creation_right(user=world.user, allowed=False, actor=user_admin)
    state = token_state(token, now=timezone.now() + timedelta(days=3))
    assert state.status == EffectiveStatus.EXPIRED and state.inactive_reasons


def test_changes_to_expired_tokens_record_no_inactivation(world, user_admin):
    token = world.issue(days=2).token
    PersonalAccessToken.objects.filter(pk=token.pk).update(
        created_at=timezone.now() - timedelta(days=5), expires_at=timezone.now() - timedelta(days=1)
    )
    user_set_pat_creation_right(user=world.user, allowed=False, actor=user_admin)
    assert not AuditEvent.objects.filter(token=token, action=AuditAction.TOKEN_INACTIVATED).exists()


def test_bulk_evaluation_uses_a_fixed_number_of_queries(world, django_assert_max_num_queries):
    tokens = [world.issue(f"t{i}").token for i in range(20)]
    fresh = list(PersonalAccessToken.objects.filter(pk__in=[t.pk for t in tokens]))
    with django_assert_max_num_queries(4):
        states = token_states(fresh)
    assert all(state.is_usable for state in states.values())


@pytest.mark.parametrize(
    ("lifetime", "remaining", "flagged"),
    [
        (timedelta(days=7), timedelta(days=7) - timedelta(minutes=1), False),  # a fresh 7-day token
        (timedelta(days=7), timedelta(days=2), False),  # more than a fifth left
        (timedelta(days=7), timedelta(days=1), True),  # less than a fifth (1.4 days)
        (timedelta(days=1), timedelta(hours=4), True),  # a fifth of a day is 4.8 hours
        (timedelta(days=1), timedelta(hours=6), False),
        (timedelta(days=365), timedelta(days=30), False),  # a fifth would be 73 days: at most a week counts
        (timedelta(days=365), timedelta(days=6), True),
        (timedelta(days=30), timedelta(days=6), True),  # a fifth is 6 days: the smaller of the two
        (timedelta(days=30), timedelta(seconds=0), False),  # expired is not "soon"
        (timedelta(days=30), -timedelta(days=1), False),
    ],
)
def test_expires_soon_is_relative_to_the_lifetime(lifetime, remaining, flagged):
    from tokens.rules import expires_soon

    now = timezone.now()
    expires_at = now + remaining
    assert expires_soon(created_at=expires_at - lifetime, expires_at=expires_at, now=now) is flagged
