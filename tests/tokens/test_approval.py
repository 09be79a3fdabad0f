"""The tenant policy "tokens that grant this role need an administrator's
approval" (GitHub's organisation approval of fine-grained tokens, Hugging
Face's approval policy), through the pages, the console and the APIs a
person or an integration uses."""

import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.core import mail
from django.test import Client, TestCase
from django.utils import timezone

from core.errors import NotPermitted
from iam.models import AuditAction, AuditEvent, ServiceRole
from iam.tenancy import tenant_set_api_issuance
from tests.factories import RoleFactory, UserFactory, administrative_pat, grant, service_role
from tokens.credentials import integration_credential_create
from tokens.models import Approval, ApprovalDigest, PersonalAccessToken, TokenStatus
from tokens.notifications import approval_digests_send
from tokens.oauth import oauth_client_create
from tokens.rules import token_state
from tokens.services import embed_token_issue, token_approval_decide

pytestmark = pytest.mark.django_db

OVERVIEW = "/admin/tokens/personalaccesstoken/"


@pytest.fixture
def auditor(world):
    """A role of the world's application whose tokens need approval, held by its end user."""
    role = RoleFactory(
        application=world.application,
        code="auditor",
        name="Auditor",
        description="Reads the ledger",
        permissions=["ledger.read"],
        needs_token_approval=True,
    )
    grant(world.user, role)
    return role


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def me(secret: str) -> int:
    return Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code


def create_on_the_page(client, world, *roles, name="Ledger export") -> tuple[PersonalAccessToken, str, str]:
    page = client.get("/tokens/new/").content.decode()
    # Said before choosing, with what the role is for.
    assert "Auditor (needs an administrator&#x27;s approval)</label>" in page and "Reads the ledger" in page
    form_id = re.search(r'name="form_id" value="([^"]+)"', page).group(1)
    response = client.post(
        "/tokens/new/",
        {
            "form_id": form_id,
            "application": str(world.application.pk),
            "name": name,
            "expiry_preset": "30",
            "roles": [str(role.pk) for role in roles],
        },
    )
    assert response.status_code == 200, response.content.decode()[-1500:]
    text = response.content.decode()
    secret = re.search(r"pat_[0-9A-Za-z]{36}", text).group(0)
    return PersonalAccessToken.objects.get(name=name), secret, text


def decide(client, token, decision: str, note: str = ""):
    return client.post(f"{OVERVIEW}{token.pk}/decide/", {"decision": decision, "post": "yes", "note": note})


def test_a_token_needing_approval_works_only_from_the_moment_it_is_approved(world, auditor, user_admin):
    user_admin.first_name, user_admin.last_name = "Ada", "Admin"
    user_admin.save()
    owner = signed_in(world.user)
    token, secret, created_page = create_on_the_page(owner, world, world.reader, auditor)
    assert "will not work until it is approved" in created_page  # the secret is still shown, once
    assert token.approval == Approval.PENDING and token_state(token).status == "pending"

    # Never authenticates, exchanges or introspects as active while pending.
    assert me(secret) == 401
    client = oauth_client_create(application=world.application, name="backend", actor=None, token_exchange=True)
    basic = {"HTTP_AUTHORIZATION": "Basic " + _b64(f"{client.client.client_id}:{client.secret}")}
    form = "application/x-www-form-urlencoded"
    exchange = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": secret,
        "subject_token_type": "urn:iam:params:oauth:token-type:personal_access_token",
    }
    assert Client().post("/oauth/token", urlencode(exchange), content_type=form, **basic).status_code == 400
    introspected = Client().post("/oauth/introspect", urlencode({"token": secret}), content_type=form, **basic)
    assert introspected.json()["active"] is False

    # The owner sees why, and who can approve it.
    listing = owner.get("/tokens/").content.decode()
    assert f'data-token-id="{token.pk}" data-status="pending"' in listing
    assert "Awaiting approval" in listing and "It can be approved by Ada Admin" in listing
    assert "“Auditor” needs a user administrator" in listing

    # The queue in the console, then the approval.
    admin = signed_in(user_admin)
    queue = admin.get(OVERVIEW, {"status": "pending"}).content.decode()
    assert "Ledger export" in queue and "Approval requests" in queue
    mail.outbox.clear()
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert decide(admin, token, "approve", "For the quarterly audit").status_code == 302
    assert me(secret) == 200  # at once, in every process: the change invalidates the cached token
    token.refresh_from_db()
    assert token.approval == Approval.APPROVED and token.approval_decided_by == user_admin
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_APPROVED, token=token)
    assert event.actor == user_admin and event.reason == "For the quarterly audit"
    assert event.changes == {"approval": ["pending", "approved"]}
    (notice,) = [m for m in mail.outbox if "approved" in m.subject]
    assert notice.to == [world.user.email] and "Ada Admin" in notice.body and "For the quarterly audit" in notice.body
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_APPROVAL_REQUESTED, token=token).count() == 1


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def test_a_denial_needs_a_reason_is_told_to_the_owner_and_is_final(world, auditor, user_admin):
    owner = signed_in(world.user)
    token, secret, _ = create_on_the_page(owner, world, auditor)
    admin = signed_in(user_admin)

    without_reason = decide(admin, token, "deny")
    assert without_reason.status_code == 400 and "Say why" in without_reason.content.decode()
    token.refresh_from_db()
    assert token.approval == Approval.PENDING

    mail.outbox.clear()
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert decide(admin, token, "deny", "Use the reporting export instead").status_code == 302
    token.refresh_from_db()
    assert token.approval == Approval.DENIED and token_state(token).status == "denied"
    (notice,) = [m for m in mail.outbox if "denied" in m.subject]
    assert "Use the reporting export instead" in notice.body
    assert me(secret) == 401

    page = owner.get("/tokens/").content.decode()
    assert 'data-status="denied"' in page and "Use the reporting export instead" in page
    assert f"/tokens/{token.pk}/edit/" not in page  # no edit or regenerate offered
    assert owner.get(f"/tokens/{token.pk}/edit/").status_code == 409
    assert owner.get(f"/tokens/{token.pk}/regenerate/").status_code == 409
    # Deciding again is refused; the owner can still delete it.
    again = decide(admin, token, "approve")
    assert again.status_code == 302
    token.refresh_from_db()
    assert token.approval == Approval.DENIED
    assert owner.post(f"/tokens/{token.pk}/delete/").status_code == 302
    token.refresh_from_db()
    assert token.status == TokenStatus.DELETED


def test_nobody_approves_their_own_token_nor_one_they_issued(world, auditor, user_admin):
    # A user administrator's own request.
    grant(user_admin, auditor)
    user_admin.can_create_pats = True
    user_admin.save()
    own = world.issue("Mine", roles=("auditor",), owner=user_admin)
    with pytest.raises(NotPermitted) as refused:
        token_approval_decide(token=own.token, actor=user_admin, approve=True)
    assert refused.value.code == "own_token"
    # The console says so and changes nothing.
    response = decide(signed_in(user_admin), own.token, "approve")
    assert response.status_code == 302
    own.token.refresh_from_db()
    assert own.token.approval == Approval.PENDING

    # A token an administrator issued for a user through the management API.
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=None)
    pat = administrative_pat(user_admin, ServiceRole.USER_ADMINISTRATOR).plaintext
    created = Client().post(
        f"/api/v1/users/{world.user.pk}/personal-access-tokens",
        {
            "name": "Issued by an admin",
            "expiresAt": (timezone.now() + timedelta(days=30)).isoformat(),
            "applicationSlug": world.application.slug,
            "roles": ["auditor"],
        },
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {pat}",
    )
    assert created.status_code == 201 and created.json()["status"] == "pending"
    assert me(created.json()["token"]) == 401
    issued = PersonalAccessToken.objects.get(pk=created.json()["id"])
    with pytest.raises(NotPermitted) as refused:
        token_approval_decide(token=issued, actor=user_admin, approve=True)
    assert refused.value.code == "issued_by_you"
    # Another administrator of the tenant may.
    colleague = UserFactory(username="second-admin", tenant=world.tenant)
    grant(colleague, service_role(ServiceRole.USER_ADMINISTRATOR))
    token_approval_decide(token=issued, actor=colleague, approve=True)
    assert me(created.json()["token"]) == 200


def test_an_edit_that_adds_such_a_role_makes_the_token_wait_and_removing_it_ends_the_wait(world, auditor):
    owner = signed_in(world.user)
    issued = world.issue("Working", roles=("reader",))
    assert me(issued.plaintext) == 200
    data = {"name": "Working", "expires_on": "", "roles": [str(world.reader.pk), str(auditor.pk)]}
    data["expires_on"] = timezone.localtime(issued.token.expires_at).date().isoformat()
    response = owner.post(f"/tokens/{issued.token.pk}/edit/", data, follow=True)
    assert "now awaits a user administrator" in response.content.decode()
    assert me(issued.plaintext) == 401
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_EDITED, token=issued.token)
    assert event.changes["approval"] == ["", "pending"]
    data["roles"] = [str(world.reader.pk)]
    owner.post(f"/tokens/{issued.token.pk}/edit/", data)
    assert me(issued.plaintext) == 200
    issued.token.refresh_from_db()
    assert issued.token.approval == Approval.NOT_NEEDED


def test_bulk_approval_from_the_queue_behind_a_confirmation(world, auditor, user_admin):
    pending = [world.issue(f"Request {i}", roles=("auditor",)) for i in range(3)]
    working = world.issue("Already working", roles=("reader",))
    admin = signed_in(user_admin)
    ids = [str(issued.token.pk) for issued in pending] + [str(working.token.pk)]
    asked = admin.post(OVERVIEW, {"action": "approve_selected", "_selected_action": ids})
    page = asked.content.decode()
    assert asked.status_code == 200 and "Approve 3 personal access tokens" in page and "Already working" not in page
    assert all(me(issued.plaintext) == 401 for issued in pending)
    done = admin.post(OVERVIEW, {"action": "approve_selected", "_selected_action": ids, "post": "yes"}, follow=True)
    assert "3 tokens approved: they work from now on" in done.content.decode()
    assert all(me(issued.plaintext) == 200 for issued in pending)
    # Denying several needs one reason for all.
    more = [world.issue(f"Later {i}", roles=("auditor",)) for i in range(2)]
    ids = [str(issued.token.pk) for issued in more]
    no_reason = admin.post(OVERVIEW, {"action": "deny_selected", "_selected_action": ids, "post": "yes"})
    assert no_reason.status_code == 400
    admin.post(OVERVIEW, {"action": "deny_selected", "_selected_action": ids, "post": "yes", "note": "Not now"})
    assert set(PersonalAccessToken.objects.filter(pk__in=ids).values_list("approval", flat=True)) == {"denied"}


def test_approvers_get_one_digest_a_day_without_their_own_requests(world, auditor, user_admin, main_admin):
    world.issue("Request A", roles=("auditor",))
    world.issue("Request B", roles=("auditor",))
    mail.outbox.clear()
    now = timezone.now()
    assert approval_digests_send(now) == 1  # the tenant's user administrator; not the main one
    (digest,) = mail.outbox
    assert digest.to == [user_admin.email] and "2 personal access tokens await your approval" in digest.subject
    assert "Request A" in digest.body and "Request B" in digest.body and "?status=pending" in digest.body
    assert approval_digests_send(now) == 0  # once a day

    # An approver's own request is never in their digest (someone else decides on it).
    colleague = UserFactory(username="second-admin", tenant=world.tenant)
    grant(colleague, service_role(ServiceRole.USER_ADMINISTRATOR), auditor)
    colleague.can_create_pats = True
    colleague.save()
    world.issue("Colleague's own", roles=("auditor",), owner=colleague)
    mail.outbox.clear()
    assert approval_digests_send(now) == 1  # the colleague's first digest today
    (theirs,) = mail.outbox
    assert theirs.to == [colleague.email] and "Request A" in theirs.body and "Colleague's own" not in theirs.body
    colleague.is_active = False
    colleague.save()
    assert approval_digests_send(now + timedelta(days=1)) == 1
    assert ApprovalDigest.objects.filter(recipient=user_admin).count() == 2

    # A tenant without a user administrator: the main administrators decide.
    user_admin.is_active = False
    user_admin.save()
    mail.outbox.clear()
    assert approval_digests_send(now + timedelta(days=2)) == 1
    assert mail.outbox[0].to == [main_admin.email]


def test_embedding_tokens_leave_out_roles_that_need_approval(world, auditor):
    credential = integration_credential_create(tenant=world.tenant, name="portal", actor=None)
    issued = embed_token_issue(
        credential=credential.credential,
        user=world.user,
        application=world.application,
        session_minutes=5,
        pat_seconds=600,
    )
    assert issued.token.approval == Approval.NOT_NEEDED
    assert auditor not in issued.token.roles.all() and world.reader in issued.token.roles.all()


def test_only_application_administrators_mark_a_role_and_the_change_is_audited(world, app_admin, user_admin):
    url = f"/admin/iam/role/{world.writer.pk}/change/"
    assert signed_in(user_admin).get(url).status_code == 403
    from tests.console.forms import form_data

    client = signed_in(app_admin)
    data = form_data(client.get(url).content.decode(), "role_form")
    data["needs_token_approval"] = ["on"]
    assert client.post(url, data).status_code == 302
    world.writer.refresh_from_db()
    assert world.writer.needs_token_approval
    event = AuditEvent.objects.filter(action=AuditAction.ROLE_CHANGED).latest("pk")
    assert event.actor == app_admin and event.changes["needs_token_approval"] == [False, True]
    # Existing tokens keep working (the policy is about granting); new ones wait.
    assert world.issue("New writer", roles=("writer",)).token.approval == Approval.PENDING


def test_an_administrator_of_another_tenant_cannot_decide(world, other_world, auditor, other_user_admin):
    issued = world.issue("Theirs", roles=("auditor",))
    assert decide(signed_in(other_user_admin), issued.token, "approve").status_code == 404
    with pytest.raises(NotPermitted) as refused:
        token_approval_decide(token=issued.token, actor=other_user_admin, approve=True)
    assert refused.value.code == "not_tenant_admin"
    issued.token.refresh_from_db()
    assert issued.token.approval == Approval.PENDING


def test_approval_requests_and_decisions_are_announced_to_webhooks(world, auditor, user_admin):
    from tokens.models import WebhookDelivery
    from tokens.webhooks import webhook_endpoint_create

    webhook_endpoint_create(
        tenant=world.tenant,
        url="http://127.0.0.1:9/hooks",
        events=["token.approval_requested", "token.approved", "token.denied"],
        actor=None,
    )
    approved = world.issue("Approved one", roles=("auditor",))
    denied = world.issue("Denied one", roles=("auditor",))
    token_approval_decide(token=approved.token, actor=user_admin, approve=True)
    token_approval_decide(token=denied.token, actor=user_admin, approve=False, note="Not for this")
    sent = {(d.token_id, d.event_type): d.payload for d in WebhookDelivery.objects.all()}
    assert set(sent) == {
        (approved.token.pk, "token.approval_requested"),
        (denied.token.pk, "token.approval_requested"),
        (approved.token.pk, "token.approved"),
        (denied.token.pk, "token.denied"),
    }
    assert sent[(denied.token.pk, "token.denied")]["data"]["reason"] == "Not for this"
    assert sent[(approved.token.pk, "token.approval_requested")]["data"]["changes"] == {"roles": ["auditor"]}
