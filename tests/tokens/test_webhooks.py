"""Signed webhooks for token events, received by a real HTTP server on
loopback and verified by the Standard Webhooks rules written out here, not
by the library that signs them."""

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from core.errors import ValidationFailed
from iam.models import AuditAction, AuditEvent
from tests.console.forms import form_data
from tokens.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tokens.services import token_delete, token_edit, token_revoke, token_rotate
from tokens.webhooks import RETRY_DELAYS, webhook_deliveries_send, webhook_endpoint_create

pytestmark = pytest.mark.django_db

ADD = "/admin/tokens/webhookendpoint/add/"


class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers with the
    next status of ``answers`` (the last one repeats)."""

    def __init__(self, answers=(200,)):
        self.answers, self.received = list(answers), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.answers.pop(0) if len(receiver.answers) > 1 else receiver.answers[0]
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receivers = []

    def make(answers=(200,)):
        receivers.append(Receiver(answers))
        return receivers[-1]

    yield make
    for one in receivers:
        one.close()


def verify(secret: str, headers: dict, body: bytes) -> None:
    """The Standard Webhooks check, from the specification: HMAC-SHA256 with the
    base64-decoded secret over ``id.timestamp.body``, base64, after ``v1,``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [part.removeprefix("v1,") for part in headers["webhook-signature"].split() if part.startswith("v1,")]
    assert any(hmac.compare_digest(expected, signature) for signature in offered), "bad signature"
    assert abs(time.time() - int(headers["webhook-timestamp"])) < 300


def endpoint_for(world, url, events=None, actor=None):
    return webhook_endpoint_create(
        tenant=world.tenant, url=url, events=events or list(WebhookEvent.values), actor=actor
    )


def test_an_administrator_registers_an_endpoint_and_gets_every_token_event_signed(
    world, other_world, user_admin, receiver, django_capture_on_commit_callbacks
):
    hooks, others = receiver(), receiver()
    console = Client()
    console.force_login(user_admin)
    form = form_data(console.get(ADD).content.decode(), "webhookendpoint_form")
    form.update({"tenant": str(world.tenant.pk), "url": hooks.url, "description": "SIEM"})
    shown = console.post(ADD, form)
    assert shown.status_code == 200 and "will not be shown again" in shown.content.decode()
    secret = re.search(r'value="(whsec_[^"]+)"', shown.content.decode()).group(1)
    endpoint = WebhookEndpoint.objects.get()
    assert secret not in endpoint.secret_ciphertext and endpoint.secret_prefix == secret[:10]
    assert AuditEvent.objects.filter(action=AuditAction.WEBHOOK_ENDPOINT_CREATED, actor=user_admin).exists()
    endpoint_for(other_world, others.url)  # another tenant's: hears nothing of this one

    with django_capture_on_commit_callbacks(execute=True):
        issued = world.issue("ci")
    with django_capture_on_commit_callbacks(execute=True):
        token_edit(
            token=issued.token,
            actor=world.user,
            name="ci",
            purpose="deploys",
            expires_at=issued.token.expires_at,
            role_codes=["reader"],
        )
    with django_capture_on_commit_callbacks(execute=True):
        rotated = token_rotate(token=issued.token, actor=world.user)
    with django_capture_on_commit_callbacks(execute=True):
        token_revoke(token=rotated.token, actor=user_admin, reason="offboarding")
    with django_capture_on_commit_callbacks(execute=True):
        token_delete(token=rotated.token, actor=world.user)

    events = hooks.events()
    assert [event["type"] for event in events] == [
        "token.created",
        "token.edited",
        "token.regenerated",
        "token.revoked",
        "token.deleted",
    ]
    for headers, body in hooks.received:
        verify(secret, headers, body)
        assert headers["content-type"] == "application/json"
        text = body.decode()
        assert issued.plaintext not in text and rotated.plaintext not in text and secret not in text
    assert len({headers["webhook-id"] for headers, _ in hooks.received}) == 5
    revoked = events[3]["data"]
    assert revoked["cause"] == "administrator" and revoked["reason"] == "offboarding"
    assert revoked["token"]["id"] == issued.token.pk and revoked["token"]["owner"]["username"] == world.user.username
    assert events[2]["data"]["changes"]["secret"] == [issued.token.display_prefix, rotated.token.display_prefix]
    assert others.received == []
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}

    # The endpoint's page lists the deliveries; another tenant's administrator finds nothing.
    page = console.get(f"/admin/tokens/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert page.count('data-status="delivered"') == 5 and secret not in page
    stranger = Client()
    from tests.factories import UserFactory, grant, service_role

    globex_admin = UserFactory(username="globex-admin", tenant=other_world.tenant)
    grant(globex_admin, service_role("user_administrator"))
    stranger.force_login(globex_admin)
    assert stranger.get(f"/admin/tokens/webhookendpoint/{endpoint.pk}/change/").status_code == 404
    assert stranger.post(f"/admin/tokens/webhookendpoint/{endpoint.pk}/test/").status_code == 404


def test_only_the_events_chosen_are_sent(world, receiver, django_capture_on_commit_callbacks):
    hooks = receiver()
    endpoint_for(world, hooks.url, events=[WebhookEvent.REVOKED])
    with django_capture_on_commit_callbacks(execute=True):
        issued = world.issue("quiet")
    with django_capture_on_commit_callbacks(execute=True):
        token_revoke(token=issued.token, actor=None, reason="done")
    assert [event["type"] for event in hooks.events()] == ["token.revoked"]


def test_a_failed_delivery_is_retried_with_backoff_and_holds_back_the_tokens_later_events(
    world, receiver, django_capture_on_commit_callbacks
):
    hooks = receiver(answers=(500, 200))
    endpoint = endpoint_for(world, hooks.url).endpoint
    with django_capture_on_commit_callbacks(execute=True):
        issued = world.issue("flaky")
    first = WebhookDelivery.objects.get(event_type="token.created")
    assert first.status == DeliveryStatus.PENDING and first.attempts == 1 and first.last_response_code == 500
    assert timedelta(seconds=9) < first.next_attempt_at - first.last_attempt_at <= RETRY_DELAYS[0]
    with django_capture_on_commit_callbacks(execute=True):
        token_revoke(token=issued.token, actor=None, reason="rotate keys")
    # The revocation waits behind the creation it follows: nothing was sent out of order.
    assert len(hooks.received) == 1
    assert webhook_deliveries_send(endpoint.pk, now=timezone.now() + timedelta(seconds=11)) == 2
    assert [event["type"] for event in hooks.events()] == ["token.created", "token.created", "token.revoked"]
    assert hooks.received[0][0]["webhook-id"] == hooks.received[1][0]["webhook-id"]  # the same message, again
    assert WebhookDelivery.objects.get(pk=first.pk).attempts == 2


def test_an_endpoint_failing_for_a_day_is_disabled_its_administrators_told_and_nothing_lost(
    world, user_admin, receiver, django_capture_on_commit_callbacks
):
    hooks = receiver(answers=(503,))
    endpoint = endpoint_for(world, hooks.url, actor=user_admin).endpoint
    with django_capture_on_commit_callbacks(execute=True):
        world.issue("down")
    moment = timezone.now()
    for delay in RETRY_DELAYS:
        moment += delay + timedelta(seconds=1)
        webhook_deliveries_send(endpoint.pk, now=moment)
        endpoint.refresh_from_db()
        if not endpoint.is_active:
            break
    assert not endpoint.is_active and "failed" in endpoint.disabled_reason
    assert moment - timezone.now() >= timedelta(days=1)  # it was given a day
    (notice,) = [message for message in mail.outbox if "was disabled" in message.subject]
    assert notice.to == [user_admin.email] and hooks.url in notice.body
    assert AuditEvent.objects.filter(action=AuditAction.WEBHOOK_ENDPOINT_DISABLED).exists()
    with django_capture_on_commit_callbacks(execute=True):
        world.issue("while disabled")  # nothing is queued for a disabled endpoint
    assert WebhookDelivery.objects.count() == 1

    hooks.answers = [200]
    console = Client()
    console.force_login(user_admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = console.post(f"/admin/tokens/webhookendpoint/{endpoint.pk}/active/", {"active": "1"})
    assert response.status_code == 302
    assert WebhookDelivery.objects.get().status == DeliveryStatus.DELIVERED
    with django_capture_on_commit_callbacks(execute=True):
        console.post(f"/admin/tokens/webhookendpoint/{endpoint.pk}/test/")
    assert hooks.events()[-1]["type"] == "webhook.test"


@pytest.mark.parametrize(
    ("url", "loopback_allowed", "why"),
    [
        ("http://example.com/hooks", False, "https://"),
        ("http://127.0.0.1:9/hooks", False, "https://"),
        ("http://203.0.113.5/hooks", True, "https://"),
        ("https://127.0.0.1:9/hooks", False, "public address"),
        ("https://10.1.2.3/hooks", True, "public address"),
        ("https://169.254.169.254/latest", True, "public address"),
        ("https://user:pw@127.0.0.1/hooks", True, "credentials"),
        ("ftp://127.0.0.1/hooks", True, "https://"),
        ("not a url", True, "https://"),
    ],
)
def test_an_endpoint_must_be_https_to_a_public_address(world, settings, url, loopback_allowed, why):
    settings.WEBHOOK_ALLOW_LOOPBACK = loopback_allowed
    with pytest.raises(ValidationFailed) as refused:
        endpoint_for(world, url)
    assert why in refused.value.fields["url"][0]
    assert not WebhookEndpoint.objects.exists()


def test_unknown_or_no_events_are_refused(world, receiver):
    for events in (["token.created", "token.nonsense"], []):
        with pytest.raises(ValidationFailed) as refused:
            webhook_endpoint_create(tenant=world.tenant, url=receiver().url, events=events, actor=None)
        assert "events" in refused.value.fields
    assert not WebhookEndpoint.objects.exists()


def test_inactive_active_expiring_expired_reuse_and_leak_are_announced(
    api, world, user_admin, receiver, django_capture_on_commit_callbacks
):
    from iam.services import role_grant_add, role_grant_remove
    from tests.tokens.test_rotation import grace_ended
    from tokens import notifications
    from tokens.models import PersonalAccessToken

    hooks = receiver()
    endpoint_for(world, hooks.url)
    issued = world.issue("sync", roles=(world.writer.code,), days=30)
    with django_capture_on_commit_callbacks(execute=True):
        role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    with django_capture_on_commit_callbacks(execute=True):
        role_grant_add(user=world.user, role=world.writer, actor=user_admin)
    created, inactive, active = hooks.events()  # the creation's delivery went out with the next one
    assert created["type"] == "token.created"
    assert inactive["type"] == "token.inactive" and "Writer" in inactive["data"]["reason"]
    assert active["type"] == "token.active" and active["data"]["token"]["id"] == issued.token.pk

    PersonalAccessToken.objects.filter(pk=issued.token.pk).update(
        created_at=timezone.now() - timedelta(days=30), expires_at=timezone.now() + timedelta(days=2)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert notifications.expiry_reminder_send(issued.token.pk, 7)
    assert hooks.events()[-1]["type"] == "token.expiring" and hooks.events()[-1]["data"]["daysBefore"] == 7
    PersonalAccessToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert notifications.expired_tokens_announce() == 1
    assert notifications.expired_tokens_announce() == 0  # once
    assert hooks.events()[-1]["type"] == "token.expired"

    deploy = world.issue("deploy")
    rotated = token_rotate(token=deploy.token, actor=world.user)
    grace_ended(deploy.token)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {deploy.plaintext}").status_code == 401
    ended = {
        event["type"]: event["data"] for event in hooks.events() if event["data"]["token"]["id"] == deploy.token.pk
    }
    assert "token.reuse_detected" in ended and ended["token.revoked"]["cause"] == "reuse_detected"

    leaky = world.issue("leaky")
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post("/api/v1/leaked-tokens", {"token": leaky.plaintext}, format="json").status_code == 202
    leak_events = [event for event in hooks.events() if event["data"]["token"]["id"] == leaky.token.pk]
    assert {"token.leak_reported", "token.revoked"} <= {event["type"] for event in leak_events}
    text = "".join(body.decode() for _, body in hooks.received)
    for secret in (issued.plaintext, deploy.plaintext, rotated.plaintext, leaky.plaintext):
        assert secret not in text


def test_a_message_refused_after_every_retry_is_given_up_and_the_tokens_next_event_goes_out(
    world, receiver, django_capture_on_commit_callbacks
):
    hooks = receiver(answers=(422,))
    endpoint = endpoint_for(world, hooks.url).endpoint
    with django_capture_on_commit_callbacks(execute=True):
        issued = world.issue("refused")
    with django_capture_on_commit_callbacks(execute=True):
        token_revoke(token=issued.token, actor=None, reason="done")
    created = WebhookDelivery.objects.get(event_type="token.created")
    moment = timezone.now()
    hooks.answers = [422]
    for _ in RETRY_DELAYS:  # a 4xx is about this message: the endpoint answers, so it is not disabled
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)  # others succeed meanwhile
        WebhookDelivery.objects.filter(pk=created.pk).update(next_attempt_at=moment)
        webhook_deliveries_send(endpoint.pk, now=moment)
    created.refresh_from_db()
    assert created.status == DeliveryStatus.FAILED and created.attempts == len(RETRY_DELAYS) + 1
    hooks.answers = [200]
    webhook_deliveries_send(endpoint.pk, now=moment)
    assert WebhookDelivery.objects.get(event_type="token.revoked").status == DeliveryStatus.DELIVERED


def test_a_disabled_endpoint_is_sent_no_test_event(world, user_admin, receiver):
    from core.errors import IllegalTransition
    from tokens.webhooks import webhook_endpoint_set_active, webhook_test_send

    endpoint = endpoint_for(world, receiver().url).endpoint
    webhook_endpoint_set_active(endpoint=endpoint, active=False, actor=user_admin)
    with pytest.raises(IllegalTransition):
        webhook_test_send(endpoint=endpoint, actor=user_admin)
    assert not WebhookDelivery.objects.exists()
