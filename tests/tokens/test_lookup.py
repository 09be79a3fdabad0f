"""The cold path's one statement judges every token exactly as the bulk loader
does, and hands out complete rows: whatever state a token is in, the two
loaders, written independently, must agree."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from iam.models import RoleGrant, ServiceRole
from iam.services import role_grant_remove, user_set_active, user_set_pat_creation_right
from iam.tenancy import tenant_application_set_pats_allowed
from tests.factories import administrative_pat, grant, service_role
from tokens import keys
from tokens.lookup import load_token_for_authentication
from tokens.models import PersonalAccessToken
from tokens.rules import evaluate, load_facts
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db


def both_loaders(token: PersonalAccessToken):
    looked_up, facts = load_token_for_authentication([token.digest])
    by_id, facts_by_id = load_token_for_authentication(token_id=token.pk)
    bulk = load_facts([PersonalAccessToken.objects.select_related("application").get(pk=token.pk)])[token.pk]
    assert facts == facts_by_id and looked_up.pk == by_id.pk == token.pk
    return looked_up, facts, bulk


def test_the_statement_and_the_bulk_loader_agree_in_every_state(world, other_world, user_admin, app_admin):
    active = world.issue("active").token
    one_role = world.issue("one role", roles=(world.reader.code,)).token
    revoked = world.issue("revoked").token
    token_revoke(token=revoked, actor=user_admin)
    not_held = world.issue("not held").token
    grant(world.user, service_role(ServiceRole.USER_ADMINISTRATOR))
    administrative = administrative_pat(world.user, ServiceRole.USER_ADMINISTRATOR).token
    cases = [active, one_role, revoked, not_held, administrative]
    for token in cases:
        _, facts, bulk = both_loaders(token)
        assert facts == bulk, token.name
    # Now change what the facts are made of, one cause after another.
    role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    _, facts, bulk = both_loaders(not_held)
    assert facts == bulk and [r.held_by_owner for r in facts.roles] == [True, False]
    tenant_application_set_pats_allowed(
        tenant=world.tenant, application=world.application, allowed=False, actor=app_admin
    )
    user_set_pat_creation_right(user=world.user, allowed=False, actor=user_admin)
    user_set_active(user=world.user, active=False, actor=user_admin)
    for token in cases:
        _, facts, bulk = both_loaders(token)
        assert facts == bulk, token.name
        assert not evaluate(facts, timezone.now()).is_usable
    _, facts, _ = both_loaders(active)
    assert not facts.application_allows_pats and not facts.owner_is_active and not facts.owner_can_create_pats


def test_a_token_without_roles_is_found_and_judged_inactive(world):
    token = world.issue("bare").token
    token.roles.clear()
    found, facts, bulk = both_loaders(token)
    assert found.pk == token.pk and facts.roles == () == bulk.roles
    assert [reason.code for reason in evaluate(facts, timezone.now()).inactive_reasons] == ["no_roles"]


def test_unknown_digests_and_ids_find_nothing(world):
    assert load_token_for_authentication([keys.digest(keys.generate())]) == (None, None)
    assert load_token_for_authentication(token_id=10**9) == (None, None)


def test_the_rows_handed_out_are_whole_and_typed_as_the_orm_loads_them(world):
    issued = world.issue("typed", days=3)
    PersonalAccessToken.objects.filter(pk=issued.token.pk).update(last_used_at=timezone.now() - timedelta(hours=1))
    token, _ = load_token_for_authentication([issued.token.digest])
    expected = PersonalAccessToken.objects.select_related("owner", "tenant", "application").get(pk=issued.token.pk)
    for instance, reference in (
        (token, expected),
        (token.owner, expected.owner),
        (token.tenant, expected.tenant),
        (token.application, expected.application),
    ):
        for field in reference._meta.concrete_fields:
            mine, theirs = getattr(instance, field.attname), getattr(reference, field.attname)
            assert mine == theirs and type(mine) is type(theirs), (type(reference).__name__, field.name)
        assert not instance._state.adding and instance.get_deferred_fields() == set()
    assert timezone.is_aware(token.expires_at) and timezone.is_aware(token.last_used_at)


def test_a_token_whose_two_roles_share_the_owner_grant_rows_is_one_token(world):
    """Grants of other users for the same roles do not multiply or leak into the rows."""
    from tests.factories import UserFactory

    token = world.issue("shared").token
    other = UserFactory(username="someone-else", tenant=world.tenant)
    RoleGrant.objects.create(user=other, role=world.reader)
    _, facts, bulk = both_loaders(token)
    assert facts == bulk and len(facts.roles) == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
def test_on_postgresql_the_lookup_runs_as_a_prepared_statement(world):
    issued = world.issue()
    for _ in range(2):
        token, _ = load_token_for_authentication([issued.token.digest])
        assert token.pk == issued.token.pk
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%tokens_personalaccesstoken%digest%"],
        )
        assert cursor.fetchone()[0] == 1
