"""Owners are told, one e-mail per owner per change, when an administrator's
change makes their tokens inactive (so an integration does not break silently)."""

import pytest
from django.core import mail

from iam.services import (
    role_grant_add,
    role_grant_remove,
    role_set_pat_eligible,
    user_set_active,
    user_set_pat_creation_right,
)
from iam.tenancy import tenant_application_set_pats_allowed
from tenants.models import TenantApplication
from tests.console.forms import form_data
from tests.console.test_console import LISTS, signed_in
from tests.factories import UserFactory, grant
from tokens.notifications import notify_inactivated_tokens, send_inactivated_notice

pytestmark = pytest.mark.django_db


@pytest.fixture
def colleague(world):
    user = UserFactory(username="acme-colleague", first_name="Cole", tenant=world.tenant)
    grant(user, world.reader, world.writer)
    return user


def to(address: str) -> list:
    return [message for message in mail.outbox if message.to == [address]]


def test_a_role_made_unavailable_tells_each_owner_once_about_their_tokens(
    world, colleague, app_admin, django_capture_on_commit_callbacks
):
    nightly = world.issue("nightly", roles=("reader",)).token
    deploy = world.issue("deploy", roles=("reader", "writer")).token
    theirs = world.issue("exports", roles=("reader",), owner=colleague).token
    untouched = world.issue("writes only", roles=("writer",)).token
    with django_capture_on_commit_callbacks(execute=True):
        role_set_pat_eligible(role=world.reader, eligible=False, actor=app_admin)
    assert len(mail.outbox) == 2
    (mine,) = to(world.user.email)
    assert mine.subject == "2 of your personal access tokens no longer work"
    assert f"“nightly” ({nightly.display_prefix}…), acme CRM" in mine.body
    assert f"“deploy” ({deploy.display_prefix}…)" in mine.body
    assert "The role “Reader” is no longer available for personal access tokens." in mine.body
    assert "app-admin, an administrator" in mine.body  # who made the change: whom to ask
    assert "leave “Reader” out" in mine.body  # what helps
    assert "exports" not in mine.body and untouched.name not in mine.body
    (yours,) = to(colleague.email)
    assert yours.subject == "Your personal access token “exports” no longer works"
    assert theirs.display_prefix in yours.body and "nightly" not in yours.body


def test_a_change_that_makes_no_token_inactive_sends_nothing(
    world, app_admin, user_admin, django_capture_on_commit_callbacks
):
    world.issue("reads", roles=("reader",))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        role_set_pat_eligible(role=world.writer, eligible=False, actor=app_admin)  # no token grants it
        role_grant_remove(user=world.user, role=world.admin_role, actor=user_admin)  # never PAT-eligible
    assert mail.outbox == [] and callbacks == []


def test_a_removed_grant_tells_the_owner_what_they_no_longer_hold(
    world, user_admin, django_capture_on_commit_callbacks
):
    world.issue("ci", roles=("writer",))
    with django_capture_on_commit_callbacks(execute=True):
        role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    (notice,) = mail.outbox
    assert notice.to == [world.user.email] and "“ci”" in notice.subject
    assert "You no longer hold the role “Writer”." in notice.body
    assert "ask a user administrator to grant it to you again" in notice.body


def test_a_removed_pat_right_tells_the_owner_about_all_their_tokens(
    world, user_admin, django_capture_on_commit_callbacks
):
    world.issue("one")
    world.issue("two")
    with django_capture_on_commit_callbacks(execute=True):
        user_set_pat_creation_right(user=world.user, allowed=False, actor=user_admin)
    (notice,) = mail.outbox
    assert notice.subject == "2 of your personal access tokens no longer work"
    assert notice.body.count("You are no longer allowed to use personal access tokens.") == 2
    assert notice.body.count("Editing the token will not help.") == 1  # the advice once, not per token


def test_switching_an_application_off_tells_owners_only_once_confirmed(
    world, colleague, app_admin, django_capture_on_commit_callbacks
):
    world.issue("mine")
    world.issue("theirs", owner=colleague)
    client = signed_in(app_admin)
    link = TenantApplication.objects.get(tenant=world.tenant, application=world.application)
    with django_capture_on_commit_callbacks(execute=True):
        warning = client.post(LISTS["switches"], {"action": "disallow_pats", "_selected_action": [link.pk]})
    assert warning.status_code == 200 and mail.outbox == []  # asked first: rolled back, nobody told
    assert "Once you confirm, each owner with an e-mail address is told" in warning.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(LISTS["switches"], form_data(warning.content.decode(), "confirm-inactivation-form"))
    assert sorted(message.to[0] for message in mail.outbox) == sorted([world.user.email, colleague.email])
    assert all("“acme CRM” no longer allows personal access tokens" in message.body for message in mail.outbox)


def test_tokens_active_again_and_deactivated_owners_get_no_notice(
    world, app_admin, user_admin, django_capture_on_commit_callbacks
):
    world.issue("ci", roles=("writer",))
    with django_capture_on_commit_callbacks(execute=True):
        role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
        role_grant_add(user=world.user, role=world.writer, actor=user_admin)  # undone before the notice went
    assert mail.outbox == []  # read when sending: the token works again
    tenant_application_set_pats_allowed(
        tenant=world.tenant, application=world.application, allowed=False, actor=app_admin
    )  # its notice is not sent here: on_commit never runs in this test's transaction
    with django_capture_on_commit_callbacks(execute=True):
        tenant_application_set_pats_allowed(
            tenant=world.tenant, application=world.application, allowed=True, actor=app_admin
        )
    assert mail.outbox == []  # active again: nothing to act on
    with django_capture_on_commit_callbacks(execute=True):
        user_set_active(user=world.user, active=False, actor=user_admin)
    assert mail.outbox == []  # a deactivated account is not written to


def test_the_notice_is_a_task_under_the_tasks_module_name(world, user_admin):
    token = world.issue("ci", roles=("writer",)).token
    role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    assert notify_inactivated_tokens.name == "tokens.tasks.notify_inactivated_tokens"
    assert send_inactivated_notice(world.user.pk, [token.pk], "someone") is True
    world.user.email = ""
    world.user.save(update_fields=["email"])
    assert send_inactivated_notice(world.user.pk, [token.pk], "someone") is False
