import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from core.errors import IllegalTransition, NotPermitted, ValidationFailed
from iam.models import AuditAction, AuditEvent, ServiceRole
from iam.services import role_grant_remove, role_set_pat_eligible
from tests.factories import RoleFactory, grant, service_role
from tokens import keys
from tokens.models import PersonalAccessToken, TokenStatus
from tokens.rules import EffectiveStatus, token_state
from tokens.services import token_create, token_delete, token_edit, token_revoke

pytestmark = pytest.mark.django_db


def events(token, action):
    return AuditEvent.objects.filter(token=token, action=action)


class TestCreate:
    def test_returns_plaintext_once_and_stores_only_a_keyed_hash(self, world):
        issued = world.issue("ci job", ip="10.0.0.1")
        token = PersonalAccessToken.objects.get(pk=issued.token.pk)
        assert keys.is_well_formed(issued.plaintext)
        assert token.digest == keys.digest(issued.plaintext) and token.pepper_id == "t2"
        assert token.display_prefix == issued.plaintext[:10]
        assert token.tenant == world.tenant and token.status == TokenStatus.ACTIVE
        assert sorted(token.roles.values_list("code", flat=True)) == ["reader", "writer"]
        event = events(token, AuditAction.TOKEN_CREATED).get()
        assert event.actor == world.user and event.ip == "10.0.0.1" and event.tenant == world.tenant
        assert event.changes["roles"] == ["reader", "writer"]

    def test_refused_without_the_creation_right(self, world):
        world.user.can_create_pats = False
        world.user.save()
        with pytest.raises(NotPermitted) as error:
            world.issue()
        assert error.value.code == "pat_creation_not_allowed"
        assert "user administrator" in error.value.message
        assert not PersonalAccessToken.objects.exists() and not AuditEvent.objects.exists()

    def test_refused_for_a_deactivated_user(self, world):
        world.user.is_active = False
        world.user.save()
        with pytest.raises(NotPermitted):
            world.issue()

    def test_refused_when_the_application_disallows_pats_in_the_tenant(self, world):
        world.tenant.application_links.update(allows_pats=False)
        with pytest.raises(ValidationFailed) as error:
            world.issue()
        assert "application" in error.value.fields

    def test_refused_for_an_application_not_in_the_tenant(self, world, other_world):
        grant(world.user, other_world.reader)
        with pytest.raises(ValidationFailed) as error:
            world.issue(application=other_world.application, roles=("reader",))
        assert "application" in error.value.fields

    @pytest.mark.parametrize(
        ("roles", "message"),
        [
            ((), "at least one"),
            (("admin",), "not available for personal access tokens"),
            (("nope",), "There is no role"),
        ],
    )
    def test_roles_must_be_pat_eligible_roles_of_the_application(self, world, roles, message):
        with pytest.raises(ValidationFailed) as error:
            world.issue(roles=roles)
        assert message in " ".join(error.value.fields["roles"])

    def test_roles_must_be_held_by_the_owner(self, world):
        RoleFactory(application=world.application, code="other")
        with pytest.raises(ValidationFailed) as error:
            world.issue(roles=("other",))
        assert "You do not hold" in error.value.fields["roles"][0]

    def test_roles_of_another_application_are_unknown_here(self, world, other_world):
        grant(world.user, other_world.reader)
        with pytest.raises(ValidationFailed):
            world.issue(roles=("reader", "writer", "nope"))

    @pytest.mark.parametrize("roles", ["reader", [1, 2], None, {"reader": 1}])
    def test_roles_must_be_a_list_of_codes(self, world, roles):
        with pytest.raises(ValidationFailed) as error:
            token_create(
                owner=world.user,
                application=world.application,
                name="x",
                expires_at=timezone.now() + timedelta(days=3),
                role_codes=roles,
            )
        assert "roles" in error.value.fields

    @pytest.mark.parametrize(
        ("name", "field_message"),
        [("", "Enter"), ("   ", "Enter"), ("x" * 101, "at most 100"), ("bad\x00name", "control"), (None, "Enter")],
    )
    def test_name_is_validated(self, world, name, field_message):
        with pytest.raises(ValidationFailed) as error:
            world.issue(name)
        assert field_message in error.value.fields["name"][0]

    def test_name_whitespace_is_normalised(self, world):
        assert world.issue("  my   token ").token.name == "my token"

    def test_name_is_unique_per_owner_among_tokens_not_deleted(self, world, other_world):
        first = world.issue("sync").token
        with pytest.raises(ValidationFailed) as error:
            world.issue("sync")
        assert "already have a token" in error.value.fields["name"][0]
        # Another owner may use the same name.
        other_world.issue("sync")
        # Once deleted, the name is free again.
        token_delete(token=first, actor=world.user)
        assert world.issue("sync").token.pk != first.pk

    @pytest.mark.parametrize(
        ("delta", "ok"),
        [
            (timedelta(hours=23), False),
            (timedelta(days=1), True),
            (timedelta(days=365), True),
            (timedelta(days=366), False),
            (timedelta(days=-1), False),
        ],
    )
    def test_expiry_is_between_one_day_and_one_year(self, world, delta, ok):
        def create():
            return token_create(
                owner=world.user,
                application=world.application,
                name="t",
                expires_at=timezone.now() + delta,
                role_codes=["reader"],
            )

        if ok:
            create()
        else:
            with pytest.raises(ValidationFailed) as error:
                create()
            assert "expires_at" in error.value.fields

    def test_tenant_may_set_a_shorter_maximum(self, world):
        world.tenant.pat_max_lifetime_days = 30
        world.tenant.save()
        world.issue(days=30)
        with pytest.raises(ValidationFailed) as error:
            world.issue("longer", days=31)
        assert error.value.fields["expires_at"] == ["The expiry can be at most 30 days ahead."]

    def test_naive_or_missing_expiry_is_refused(self, world):
        with pytest.raises(ValidationFailed):
            token_create(
                owner=world.user,
                application=world.application,
                name="t",
                expires_at=(timezone.now() + timedelta(days=3)).replace(tzinfo=None),
                role_codes=["reader"],
            )
        with pytest.raises(ValidationFailed):
            token_create(
                owner=world.user,
                application=world.application,
                name="t",
                expires_at="tomorrow",
                role_codes=["reader"],
            )

    def test_all_field_errors_are_reported_together(self, world):
        with pytest.raises(ValidationFailed) as error:
            token_create(
                owner=world.user,
                application=world.application,
                name="",
                expires_at=timezone.now(),
                role_codes=[],
            )
        assert set(error.value.fields) == {"name", "expires_at", "roles"}


class TestAdministrativeTokens:
    def test_holder_of_an_administrator_role_creates_one_with_service_roles(self, main_admin):
        issued = token_create(
            owner=main_admin,
            application=None,
            name="health",
            role_codes=[ServiceRole.DEVELOPER],
            expires_at=timezone.now() + timedelta(days=7),
        )
        assert issued.token.is_administrative
        assert token_state(issued.token).permissions == {"iam.health.advanced"}

    def test_service_roles_not_held_are_refused(self, world):
        with pytest.raises(ValidationFailed) as error:
            world.issue(application=None, roles=(ServiceRole.MAIN_ADMINISTRATOR,))
        assert "You do not hold" in error.value.fields["roles"][0]

    def test_application_roles_cannot_go_in_an_administrative_token(self, world):
        with pytest.raises(ValidationFailed):
            world.issue(application=None, roles=("reader",))

    def test_application_administrator_role_is_not_pat_eligible(self, app_admin):
        with pytest.raises(ValidationFailed) as error:
            token_create(
                owner=app_admin,
                application=None,
                name="x",
                role_codes=[ServiceRole.APPLICATION_ADMINISTRATOR],
                expires_at=timezone.now() + timedelta(days=7),
            )
        assert "not available" in error.value.fields["roles"][0]


class TestEdit:
    def test_edits_name_expiry_and_roles_and_records_what_changed(self, world):
        token = world.issue("old").token
        new_expiry = timezone.now() + timedelta(days=60)
        token_edit(token=token, actor=world.user, name="new", expires_at=new_expiry, role_codes=["reader"], ip="::1")
        token.refresh_from_db()
        assert token.name == "new" and token.expires_at == new_expiry
        assert list(token.roles.values_list("code", flat=True)) == ["reader"]
        event = events(token, AuditAction.TOKEN_EDITED).get()
        assert event.changes["name"] == ["old", "new"]
        assert event.changes["roles"] == [["reader", "writer"], ["reader"]]
        assert "expires_at" in event.changes and event.ip == "::1"

    def test_an_edit_that_changes_nothing_records_nothing(self, world):
        token = world.issue("same").token
        token_edit(token=token, actor=world.user, name="same", role_codes=["writer", "reader"])
        assert not events(token, AuditAction.TOKEN_EDITED).exists()

    def test_only_the_owner_edits(self, world, main_admin):
        token = world.issue().token
        with pytest.raises(NotPermitted):
            token_edit(token=token, actor=main_admin, name="hijack")

    def test_a_new_expiry_reactivates_an_expired_token(self, world):
        token = world.issue().token
        PersonalAccessToken.objects.filter(pk=token.pk).update(
            created_at=timezone.now() - timedelta(days=40), expires_at=timezone.now() - timedelta(days=1)
        )
        token.refresh_from_db()
        assert token_state(token).status == EffectiveStatus.EXPIRED
        token = token_edit(token=token, actor=world.user, expires_at=timezone.now() + timedelta(days=10))
        assert token_state(token).status == EffectiveStatus.ACTIVE
        assert events(token, AuditAction.TOKEN_EDITED).get().changes["state"] == ["expired", "active"]

    def test_invalid_edit_changes_nothing(self, world):
        token = world.issue("keep").token
        with pytest.raises(ValidationFailed):
            token_edit(token=token, actor=world.user, name="renamed", role_codes=["admin"])
        token.refresh_from_db()
        assert token.name == "keep"
        assert not events(token, AuditAction.TOKEN_EDITED).exists()

    def test_rename_to_a_taken_name_is_refused(self, world):
        world.issue("a")
        token = world.issue("b").token
        with pytest.raises(ValidationFailed) as error:
            token_edit(token=token, actor=world.user, name="a")
        assert "already have" in error.value.fields["name"][0]

    def test_edit_of_a_revoked_token_is_refused(self, world, user_admin):
        token = world.issue().token
        token_revoke(token=token, actor=user_admin)
        with pytest.raises(IllegalTransition) as error:
            token_edit(token=token, actor=world.user, expires_at=timezone.now() + timedelta(days=9))
        assert error.value.code == "token_revoked"

    def test_edit_of_a_deleted_token_is_refused(self, world):
        token = world.issue().token
        token_delete(token=token, actor=world.user)
        with pytest.raises(IllegalTransition) as error:
            token_edit(token=token, actor=world.user, name="zombie")
        assert error.value.code == "token_deleted"


class TestDelete:
    def test_owner_deletes_and_the_row_stays_for_the_audit_trail(self, world):
        token = world.issue().token
        token_delete(token=token, actor=world.user, ip="10.1.1.1")
        token.refresh_from_db()
        assert token.status == TokenStatus.DELETED and token.deleted_at is not None
        assert events(token, AuditAction.TOKEN_DELETED).get().ip == "10.1.1.1"

    def test_a_revoked_token_can_still_be_deleted(self, world, user_admin):
        token = world.issue().token
        token_revoke(token=token, actor=user_admin)
        token_delete(token=token, actor=world.user)
        token.refresh_from_db()
        assert token.status == TokenStatus.DELETED and token.revoked_at is not None

    def test_delete_twice_is_refused(self, world):
        token = world.issue().token
        token_delete(token=token, actor=world.user)
        with pytest.raises(IllegalTransition):
            token_delete(token=token, actor=world.user)
        assert events(token, AuditAction.TOKEN_DELETED).count() == 1

    def test_only_the_owner_deletes(self, world, main_admin):
        token = world.issue().token
        with pytest.raises(NotPermitted):
            token_delete(token=token, actor=main_admin)


class TestRevoke:
    def test_user_administrator_of_the_tenant_revokes(self, world, user_admin):
        token = world.issue().token
        token_revoke(token=token, actor=user_admin, ip="10.2.2.2", reason="leaked in a log")
        token.refresh_from_db()
        assert token.status == TokenStatus.REVOKED and token.revoked_by == user_admin
        event = events(token, AuditAction.TOKEN_REVOKED).get()
        assert event.reason == "leaked in a log" and event.actor == user_admin

    def test_revoke_is_idempotent(self, world, main_admin):
        token = world.issue().token
        token_revoke(token=token, actor=main_admin)
        first = PersonalAccessToken.objects.get(pk=token.pk).revoked_at
        token_revoke(token=token, actor=main_admin)
        assert PersonalAccessToken.objects.get(pk=token.pk).revoked_at == first
        assert events(token, AuditAction.TOKEN_REVOKED).count() == 1

    def test_revoked_token_is_never_usable_again(self, world, main_admin):
        token = world.issue().token
        token_revoke(token=token, actor=main_admin)
        token.refresh_from_db()
        assert token_state(token).status == EffectiveStatus.REVOKED
        assert token_state(token).permissions == frozenset()

    def test_user_administrator_of_another_tenant_cannot_revoke(self, world, other_user_admin):
        token = world.issue().token
        with pytest.raises(NotPermitted):
            token_revoke(token=token, actor=other_user_admin)
        token.refresh_from_db()
        assert token.status == TokenStatus.ACTIVE

    @pytest.mark.parametrize("fixture", ["app_admin"])
    def test_application_administrator_and_end_users_cannot_revoke(self, world, request, fixture):
        token = world.issue().token
        for actor in (request.getfixturevalue(fixture), world.user):
            with pytest.raises(NotPermitted):
                token_revoke(token=token, actor=actor)

    def test_a_deleted_token_cannot_be_revoked(self, world, main_admin):
        token = world.issue().token
        token_delete(token=token, actor=world.user)
        with pytest.raises(IllegalTransition):
            token_revoke(token=token, actor=main_admin)

    def test_a_deactivated_administrator_cannot_revoke(self, world, user_admin):
        user_admin.is_active = False
        user_admin.save()
        with pytest.raises(NotPermitted):
            token_revoke(token=world.issue().token, actor=user_admin)


def test_password_change_does_not_affect_tokens(world):
    token = world.issue().token
    world.user.set_password("a-brand-new-password-123")
    world.user.save()
    assert token_state(token).is_usable


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_with_the_same_name_one_wins(world):
    barrier = threading.Barrier(2)
    results: list[object] = []

    def create():
        try:
            barrier.wait()
            results.append(world.issue("race"))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            results.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], ValidationFailed)
    assert "already have a token" in errors[0].fields["name"][0]
    assert PersonalAccessToken.objects.filter(owner=world.user, name="race").count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_CREATED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_revoke_and_delete_leave_one_consistent_outcome(world, user_admin):
    token = world.issue().token
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def run(action):
        try:
            barrier.wait()
            outcomes.append(action())
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            outcomes.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(lambda: token_revoke(token=token, actor=user_admin),)),
        threading.Thread(target=run, args=(lambda: token_delete(token=token, actor=world.user),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    token.refresh_from_db()
    # Either revoke-then-delete (both succeed) or delete-then-revoke (revoke refused).
    assert token.status == TokenStatus.DELETED
    assert events(token, AuditAction.TOKEN_DELETED).count() == 1
    assert events(token, AuditAction.TOKEN_REVOKED).count() == (1 if token.revoked_at else 0)


def test_inactive_by_role_removal_then_reactivated_by_editing_permissions(world, user_admin):
    token = world.issue(roles=("reader", "writer")).token
    changed = role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    assert [change.token_id for effect in changed.effects for change in effect.changes] == [token.pk]
    state = token_state(token)
    assert state.status == EffectiveStatus.INACTIVE
    assert state.inactive_reasons[0].code == "role_not_held"
    assert "Writer" in state.reason_text
    inactivated = events(token, AuditAction.TOKEN_INACTIVATED).get()
    assert inactivated.actor == user_admin and "Writer" in inactivated.reason
    token_edit(token=token, actor=world.user, role_codes=["reader"])
    assert token_state(token).status == EffectiveStatus.ACTIVE
    assert token_state(token).permissions == {"orders.read"}


def test_inactive_when_role_made_unavailable_and_active_again_when_restored(world, app_admin):
    token = world.issue(roles=("reader",)).token
    role_set_pat_eligible(role=world.reader, eligible=False, actor=app_admin)
    assert token_state(token).inactive_reasons[0].code == "role_not_pat_eligible"
    role_set_pat_eligible(role=world.reader, eligible=True, actor=app_admin)
    assert token_state(token).is_usable
    assert events(token, AuditAction.TOKEN_REACTIVATED).count() == 1


def test_only_application_administrators_change_role_availability(world, user_admin):
    with pytest.raises(NotPermitted):
        role_set_pat_eligible(role=world.reader, eligible=False, actor=user_admin)
    world.reader.refresh_from_db()
    assert world.reader.pat_eligible


def test_service_roles_cannot_be_made_unavailable(main_admin):
    with pytest.raises(NotPermitted):
        role_set_pat_eligible(role=service_role(ServiceRole.DEVELOPER), eligible=False, actor=main_admin)


def test_user_of_another_tenant_is_not_administered(world, other_world, user_admin):
    with pytest.raises(NotPermitted):
        role_grant_remove(user=other_world.user, role=other_world.reader, actor=user_admin)


def test_only_main_administrators_grant_administrator_roles(world, user_admin):
    from iam.services import role_grant_add

    with pytest.raises(NotPermitted):
        role_grant_add(user=world.user, role=service_role(ServiceRole.MAIN_ADMINISTRATOR), actor=user_admin)


def test_a_role_is_granted_only_in_a_tenant_where_its_application_is_available(world, other_world, user_admin):
    """The console offers only these roles; the service refuses the others too."""
    from iam.models import RoleGrant
    from iam.services import role_grant_add

    events = AuditEvent.objects.count()
    with pytest.raises(ValidationFailed) as refused:
        role_grant_add(user=world.user, role=other_world.reader, actor=user_admin)
    assert "is not available in the user's tenant" in refused.value.fields["role"][0]
    assert not RoleGrant.objects.filter(user=world.user, role=other_world.reader).exists()
    assert AuditEvent.objects.count() == events
    role_grant_add(user=world.user, role=RoleFactory(application=world.application), actor=user_admin)
