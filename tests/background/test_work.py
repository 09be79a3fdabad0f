"""Reminders, digests, new-address notices and housekeeping, with a real
Celery worker and real Redis where the test is about background work."""

import threading
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from iam.models import AuditEvent
from tests.background.conftest import wait_for
from tests.conftest import bearer
from tokens import maintenance, notifications
from tokens.models import EmbedSession, ExpiryReminder, PersonalAccessToken
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db


def expire_in(token, delta):
    PersonalAccessToken.objects.filter(pk=token.pk).update(
        created_at=timezone.now() - timedelta(days=30), expires_at=timezone.now() + delta
    )


def mails_about(subject_text: str) -> list:
    """The e-mails sent so far on one subject (issuing a token also tells its owner)."""
    return [message for message in mail.outbox if subject_text in message.subject]


def test_reminders_are_due_at_the_nearest_threshold_and_sent_once(world):
    week = world.issue("week").token
    day = world.issue("day").token
    later = world.issue("later").token
    expire_in(week, timedelta(days=6))
    expire_in(day, timedelta(hours=20))
    expire_in(later, timedelta(days=20))
    assert sorted(notifications.expiry_reminders_due()) == sorted([(week.pk, 7), (day.pk, 1)])
    assert notifications.expiry_reminder_send(week.pk, 7) is True
    assert notifications.expiry_reminder_send(week.pk, 7) is False  # a retry or a second worker
    assert len(mail.outbox) == 1 and "expires in 7 days" in mail.outbox[0].subject
    assert f"/tokens/{week.pk}/edit/" in mail.outbox[0].body
    assert sorted(notifications.expiry_reminders_due()) == [(day.pk, 1)]


def test_a_new_expiry_gets_new_reminders_and_tenants_choose_the_days(world):
    world.tenant.reminder_days = [3]
    world.tenant.save()
    token = world.issue().token
    expire_in(token, timedelta(days=5))
    assert list(notifications.expiry_reminders_due()) == []
    expire_in(token, timedelta(days=2))
    assert list(notifications.expiry_reminders_due()) == [(token.pk, 3)]
    notifications.expiry_reminder_send(token.pk, 3)
    expire_in(token, timedelta(days=2, hours=5))  # extended, then close to expiry again
    assert list(notifications.expiry_reminders_due()) == [(token.pk, 3)]


def test_no_reminder_for_revoked_or_short_lived_tokens(world, user_admin):
    revoked = world.issue("revoked").token
    expire_in(revoked, timedelta(days=2))
    token_revoke(token=revoked, actor=user_admin)
    short = world.issue("short", days=1).token  # lived one day: no 7-day reminder, and the 1-day one is its life
    assert list(notifications.expiry_reminders_due()) == []
    assert notifications.expiry_reminder_send(revoked.pk, 7) is False
    assert short.pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_send_one_reminder(world):
    token = world.issue().token
    expire_in(token, timedelta(days=3))
    barrier = threading.Barrier(4)
    results = []

    def send():
        try:
            barrier.wait()
            results.append(notifications.expiry_reminder_send(token.pk, 7))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1 and len(mails_about("expires in 7 days")) == 1
    assert ExpiryReminder.objects.count() == 1


def test_weekly_digest_for_user_administrators(world, user_admin):
    token = world.issue("soon").token
    expire_in(token, timedelta(days=2))
    assert notifications.admin_digests_send() == 1
    assert notifications.admin_digests_send() == 0  # once a week
    digest = mail.outbox[0]
    assert digest.to == [user_admin.email] and "soon" in digest.body


def test_new_address_notice_after_the_first_address(world):
    token = world.issue().token
    assert notifications.token_address_note(token.pk, "10.0.0.1") is False  # the first address
    assert notifications.token_address_note(token.pk, "10.0.0.2") is True
    assert notifications.token_address_note(token.pk, "10.0.0.2") is False
    assert len(mail.outbox) == 1 and "10.0.0.2" in mail.outbox[0].body
    world.tenant.notify_new_ip = False
    world.tenant.save()
    assert notifications.token_address_note(token.pk, "10.0.0.3") is False


def test_housekeeping_prunes_expired_sessions_and_old_audit_events(world, settings):
    settings.AUDIT_RETENTION_DAYS = 30
    issued = world.issue()
    EmbedSession.objects.create(
        token=issued.token, digest="x" * 64, pepper_id="t2", expires_at=timezone.now() - timedelta(minutes=1)
    )
    EmbedSession.objects.create(
        token=issued.token, digest="y" * 64, pepper_id="t2", expires_at=timezone.now() + timedelta(minutes=10)
    )
    AuditEvent.objects.update(occurred_at=timezone.now() - timedelta(days=31))
    world.issue("recent")
    assert maintenance.embed_sessions_prune() == 1 and EmbedSession.objects.count() == 1
    assert maintenance.audit_events_prune() >= 1
    assert AuditEvent.objects.filter(occurred_at__lt=timezone.now() - timedelta(days=30)).count() == 0
    assert AuditEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_reminders_go_out_through_a_real_worker_once(world, with_redis, celery_worker_for):
    from tokens.tasks import sweep_expiry_reminders

    token = world.issue().token
    expire_in(token, timedelta(days=5))
    celery_worker_for("redis://127.0.0.1:6379/15")
    sweep_expiry_reminders.delay()
    sweep_expiry_reminders.delay()  # overlapping beats
    assert wait_for(lambda: ExpiryReminder.objects.exists())
    time.sleep(1)
    assert ExpiryReminder.objects.count() == 1 and len(mails_about("expires in")) == 1


@pytest.mark.django_db(transaction=True)
def test_notices_wait_while_the_worker_is_down_and_go_out_when_it_returns(
    api, world, user_admin, with_redis, celery_worker_for
):
    issued = world.issue()
    token_revoke(token=issued.token, actor=user_admin)  # queued on Redis; no worker yet
    assert bearer(api, world.issue("still works").plaintext).get("/api/v1/me").status_code == 200
    time.sleep(0.5)
    assert mail.outbox == []
    celery_worker_for("redis://127.0.0.1:6379/15")
    assert wait_for(lambda: len(mails_about("was revoked")) == 1)
    # The creation notices were queued too, and none was lost while the worker was down.
    assert wait_for(lambda: len(mails_about("was created")) == 2)


@pytest.mark.django_db(transaction=True)
def test_webhooks_go_out_through_a_real_worker_and_a_failure_is_retried_by_the_sweep(
    world, with_redis, celery_worker_for
):
    from tests.tokens.test_webhooks import Receiver, verify
    from tokens.models import DeliveryStatus, WebhookDelivery
    from tokens.webhooks import sweep_webhook_deliveries, webhook_endpoint_create

    hooks = Receiver(answers=(500, 200))
    try:
        issued_endpoint = webhook_endpoint_create(
            tenant=world.tenant, url=hooks.url, events=["token.created", "token.revoked"], actor=None
        )
        issued = world.issue("ci")  # queued on Redis once its transaction commits; no worker yet
        token_revoke(token=issued.token, actor=None, reason="done")
        time.sleep(0.5)
        assert hooks.received == [] and WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count() == 2
        celery_worker_for("redis://127.0.0.1:6379/15")
        assert wait_for(lambda: WebhookDelivery.objects.filter(attempts=1).exists())
        assert len(hooks.received) == 1  # the creation failed; the revocation waits behind it
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())  # as if the backoff had passed
        sweep_webhook_deliveries.delay()
        assert wait_for(lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 2)
        assert [json_type(body) for _, body in hooks.received] == ["token.created", "token.created", "token.revoked"]
        for headers, body in hooks.received:
            verify(issued_endpoint.secret, headers, body)
    finally:
        hooks.close()


def json_type(body: bytes) -> str:
    import json

    return json.loads(body)["type"]
