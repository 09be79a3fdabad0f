"""Signed webhooks for token events (Standard Webhooks).

Every token event the audit trail records (and the reminder sweep's
*expiring* and *expired*) becomes one delivery row per subscribed endpoint,
written in the transaction of the change, so an event is never lost nor
announced for a change that rolled back. Celery sends them, at least once:
in order per token, retried with exponential backoff for a day
(``RETRY_DELAYS``); an endpoint that has failed for a day is disabled and
its tenant's user administrators are told.

The signature is the ``standardwebhooks`` library's (HMAC-SHA256 over
``{webhook-id}.{webhook-timestamp}.{body}``). The signing secret is kept
encrypted (Fernet, with a key derived from a token pepper, so a database dump
alone cannot sign); no payload or log line carries a secret.
"""

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from celery import shared_task
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from core.errors import IllegalTransition, ValidationFailed
from core.tasks import RETRY
from iam.audit import audit_record
from iam.models import AuditAction, AuditEvent, ServiceRole, User
from iam.selectors import users_holding_service_role
from tenants.models import Tenant
from tokens.models import (
    DeliveryStatus,
    PersonalAccessToken,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

logger = logging.getLogger(__name__)

# After the first attempt, the waits before each retry: about a day in all.
RETRY_DELAYS = [
    timedelta(seconds=10),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=8),
    timedelta(hours=10),
]
DISABLE_AFTER = timedelta(days=1)
ATTEMPTS_PER_PASS = 25
TEST_EVENT = "webhook.test"
SECRET_PREFIX = "whsec_"
ERROR_TEXT_MAX = 200
# Audit actions announced, and the events each becomes: a revocation after a
# leak report or a reuse is also a revocation, with its cause.
EVENTS_OF_ACTION = {
    AuditAction.TOKEN_CREATED: (WebhookEvent.CREATED,),
    AuditAction.TOKEN_EDITED: (WebhookEvent.EDITED,),
    AuditAction.TOKEN_EXPIRY_SHORTENED: (WebhookEvent.EDITED,),  # by a tighter tenant policy
    AuditAction.TOKEN_ROTATED: (WebhookEvent.REGENERATED,),
    AuditAction.TOKEN_REVOKED: (WebhookEvent.REVOKED,),
    AuditAction.TOKEN_DELETED: (WebhookEvent.DELETED,),
    AuditAction.TOKEN_INACTIVATED: (WebhookEvent.INACTIVE,),
    AuditAction.TOKEN_REACTIVATED: (WebhookEvent.ACTIVE,),
    AuditAction.TOKEN_REUSE_DETECTED: (WebhookEvent.REUSE_DETECTED, WebhookEvent.REVOKED),
    AuditAction.TOKEN_REPORTED_LEAKED: (WebhookEvent.LEAK_REPORTED, WebhookEvent.REVOKED),
    AuditAction.TOKEN_APPROVAL_REQUESTED: (WebhookEvent.APPROVAL_REQUESTED,),
    AuditAction.TOKEN_APPROVED: (WebhookEvent.APPROVED,),
    AuditAction.TOKEN_DENIED: (WebhookEvent.DENIED,),
}


Outcome = tuple[int | None, str]  # an attempt's response code (None: no answer) and error ("" if delivered)


@dataclass(frozen=True)
class IssuedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once


# ------------------------------------------------------------------ the secret


def _fernet(pepper_id: str) -> Fernet:
    key = hmac.new(settings.TOKEN_PEPPERS[pepper_id], b"webhook-signing-secret", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def _signing_secret(endpoint: WebhookEndpoint) -> str | None:
    """The endpoint's secret, or None when its pepper is no longer configured."""
    if endpoint.pepper_id not in settings.TOKEN_PEPPERS:
        return None
    try:
        return _fernet(endpoint.pepper_id).decrypt(endpoint.secret_ciphertext.encode()).decode()
    except InvalidToken:
        return None


# ------------------------------------------------------------------ endpoints


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot receive webhooks, or None. HTTPS only, to a public
    address; plain HTTP to loopback only where ``WEBHOOK_ALLOW_LOOPBACK`` is on
    (development and tests)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "Enter a valid URL."
    insecure = parts.scheme == "http"
    if not host or parts.scheme not in ("https", "http") or (insecure and not settings.WEBHOOK_ALLOW_LOOPBACK):
        return "Enter an https:// URL."
    if parts.username or parts.password:
        return "The URL must not contain credentials: the signature authenticates the sender."
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError):
        return f"The host {host} cannot be resolved."
    ips = [ipaddress.ip_address(address.split("%")[0]) for address in addresses]
    if settings.WEBHOOK_ALLOW_LOOPBACK and all(ip.is_loopback for ip in ips):
        return None
    if insecure:
        return "Enter an https:// URL."
    if not all(ip.is_global for ip in ips):
        return "The URL must reach a public address, not a private, loopback or link-local one."
    return None


def _clean_events(events: object, errors: dict[str, list[str]]) -> list[str]:
    known = set(WebhookEvent.values)
    if not isinstance(events, list | tuple) or not events or not all(isinstance(e, str) for e in events):
        errors["events"] = ["Choose at least one event."]
        return []
    if unknown := sorted(set(events) - known):
        errors["events"] = [f"Unknown events: {', '.join(unknown)}."]
    return sorted(set(events) & known)


@transaction.atomic
def webhook_endpoint_create(
    *, tenant: Tenant, url: str, events: list[str], actor: User | None, description: str = "", ip: str | None = None
) -> IssuedEndpoint:
    """Register an endpoint for ``tenant``'s token events; return it with its signing secret (shown once)."""
    errors: dict[str, list[str]] = {}
    url = (url or "").strip()
    if len(url) > 500:
        errors["url"] = ["At most 500 characters."]
    elif problem := webhook_url_problem(url):
        errors["url"] = [problem]
    events = _clean_events(events, errors)
    if errors:
        raise ValidationFailed(errors)
    secret = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    pepper_id = next(iter(settings.TOKEN_PEPPERS))
    endpoint = WebhookEndpoint.objects.create(
        tenant=tenant,
        url=url,
        description=(description or "").strip()[:200],
        events=events,
        secret_ciphertext=_fernet(pepper_id).encrypt(secret.encode()).decode(),
        pepper_id=pepper_id,
        secret_prefix=secret[: len(SECRET_PREFIX) + 4],
        created_by=actor,
    )
    audit_record(
        action=AuditAction.WEBHOOK_ENDPOINT_CREATED,
        tenant_id=tenant.pk,
        actor=actor,
        ip=ip,
        changes={"url": url, "events": events},
    )
    return IssuedEndpoint(endpoint=endpoint, secret=secret)


@transaction.atomic
def webhook_endpoint_set_active(
    *, endpoint: WebhookEndpoint, active: bool, actor: User | None, reason: str = "", ip: str | None = None
) -> WebhookEndpoint:
    """Disable an endpoint (nothing more is queued for it) or enable it again
    (what was pending is retried at once)."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if endpoint.is_active == active:
        return endpoint
    now = timezone.now()
    endpoint.is_active = active
    endpoint.disabled_at = None if active else now
    endpoint.disabled_reason = "" if active else reason[:200]
    endpoint.failing_since = None
    endpoint.save(update_fields=["is_active", "disabled_at", "disabled_reason", "failing_since"])
    if active:
        endpoint.deliveries.filter(status=DeliveryStatus.PENDING).update(next_attempt_at=now)
        _queue_after_commit({endpoint.pk})
    audit_record(
        action=AuditAction.WEBHOOK_ENDPOINT_ENABLED if active else AuditAction.WEBHOOK_ENDPOINT_DISABLED,
        tenant_id=endpoint.tenant_id,
        actor=actor,
        label=None if actor else "webhook delivery",
        ip=ip,
        reason=reason,
        changes={"url": endpoint.url},
    )
    return endpoint


@transaction.atomic
def webhook_test_send(*, endpoint: WebhookEndpoint, actor: User, ip: str | None = None) -> WebhookDelivery:
    """Queue a ``webhook.test`` event for one endpoint (the console's button);
    a disabled endpoint is sent nothing (IllegalTransition)."""
    if not WebhookEndpoint.objects.filter(pk=endpoint.pk, is_active=True).exists():
        raise IllegalTransition("Enable the endpoint first: nothing is sent to a disabled one.", code="disabled")
    now = timezone.now()
    (delivery,) = _deliveries_create(
        [endpoint],
        TEST_EVENT,
        {"endpoint": {"id": endpoint.pk, "url": endpoint.url}, "requestedBy": actor.username},
        token_id=None,
        now=now,
    )
    _queue_after_commit({endpoint.pk})
    return delivery


# ------------------------------------------------------------------ events


def _token_data(token: PersonalAccessToken) -> dict:
    return {
        "id": token.pk,
        "name": token.name,
        "prefix": token.display_prefix,
        "kind": token.kind,
        "status": token.status,
        "application": token.application.slug if token.application_id else None,
        "owner": {"id": token.owner_id, "username": token.owner.username},
        "expiresAt": token.expires_at.isoformat(),
    }


def _deliveries_create(endpoints, event_type: str, data: dict, *, token_id: int | None, now: datetime) -> list:
    body = {"type": event_type, "timestamp": now.isoformat(), "data": data}
    return WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                endpoint=endpoint,
                message_id=f"msg_{secrets.token_urlsafe(18)}",
                event_type=event_type,
                token_id=token_id,
                payload=body,
                created_at=now,
                next_attempt_at=now,
            )
            for endpoint in endpoints
        ]
    )


def _subscribed(tenant_id: int | None) -> list[WebhookEndpoint]:
    if tenant_id is None:
        return []
    return list(WebhookEndpoint.objects.filter(tenant_id=tenant_id, is_active=True))


def webhook_events_from_audit(events: list[AuditEvent]) -> None:
    """The audit trail's listener: queue the token events endpoints subscribed to."""
    announced = [event for event in events if event.action in EVENTS_OF_ACTION and event.token_id]
    if not announced:
        return
    endpoints_by_tenant: dict[int, list[WebhookEndpoint]] = {}
    for event in announced:
        if event.tenant_id not in endpoints_by_tenant:
            endpoints_by_tenant[event.tenant_id] = _subscribed(event.tenant_id)
    if not any(endpoints_by_tenant.values()):
        return  # the common case: one query per change, nothing more
    tokens = PersonalAccessToken.objects.select_related("owner", "application").in_bulk(
        [event.token_id for event in announced]
    )
    touched: set[int] = set()
    for event in announced:
        token = tokens.get(event.token_id)
        if token is None:
            continue
        for event_type in EVENTS_OF_ACTION[event.action]:
            endpoints = [e for e in endpoints_by_tenant[event.tenant_id] if event_type in e.events]
            if not endpoints:
                continue
            data = {
                "token": _token_data(token),
                "actor": event.actor_label,
                **({"reason": event.reason} if event.reason else {}),
                **({"changes": event.changes} if event.changes else {}),
                **({"cause": token.revocation_cause} if event_type == WebhookEvent.REVOKED else {}),
            }
            _deliveries_create(endpoints, event_type, data, token_id=token.pk, now=event.occurred_at or timezone.now())
            touched.update(endpoint.pk for endpoint in endpoints)
    _queue_after_commit(touched)


def webhook_event_emit(token: PersonalAccessToken, event_type: str, extra: dict | None = None) -> int:
    """Queue an event the audit trail does not record (expiring, expired); return the endpoints told."""
    endpoints = [e for e in _subscribed(token.tenant_id) if event_type in e.events]
    if endpoints:
        data = {"token": _token_data(token), **(extra or {})}
        _deliveries_create(endpoints, event_type, data, token_id=token.pk, now=timezone.now())
        _queue_after_commit({endpoint.pk for endpoint in endpoints})
    return len(endpoints)


def _queue_after_commit(endpoint_ids: set[int]) -> None:
    def queue() -> None:
        for endpoint_id in sorted(endpoint_ids):
            try:
                deliver_webhooks.delay(endpoint_id)
            except Exception:  # noqa: BLE001 - broker down: the rows wait for the sweep
                logger.warning("task broker unavailable: webhook deliveries of endpoint %s wait", endpoint_id)

    if endpoint_ids:
        transaction.on_commit(queue)


# ------------------------------------------------------------------ delivery


def _attempt(endpoint: WebhookEndpoint, delivery: WebhookDelivery, secret: str, now: datetime) -> Outcome:
    """POST one delivery; return (status code or None, error text or "")."""
    problem = webhook_url_problem(endpoint.url)  # again: where the name points may have changed
    if problem:
        return None, problem
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "content-type": "application/json",
        "user-agent": "iam-webhooks/1",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery.message_id, now, body),
    }
    try:
        response = requests.post(
            endpoint.url, data=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS, allow_redirects=False
        )
    except requests.RequestException as error:
        return None, type(error).__name__  # never the message: it may quote the URL's query
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    return response.status_code, f"HTTP {response.status_code}"


def webhook_deliveries_send(endpoint_id: int, now: datetime | None = None) -> int:
    """Send an endpoint's due deliveries, oldest first; a delivery that fails
    holds back the later ones of the same token until it succeeds or is given
    up. Returns how many were delivered. One sender per endpoint at a time."""
    lock = f"webhook-sending:{endpoint_id}"
    try:
        if not cache.add(lock, 1, timeout=settings.WEBHOOK_TIMEOUT_SECONDS * (ATTEMPTS_PER_PASS + 1)):
            return 0  # another worker is sending this endpoint's queue
    except Exception:  # noqa: BLE001 - the cache is down: send anyway (at least once)
        logger.warning("cache unavailable: sending webhooks of endpoint %s without the lock", endpoint_id)
    try:
        return _send_queue(endpoint_id, now)
    finally:
        with contextlib.suppress(Exception):  # expires by itself
            cache.delete(lock)


def _send_queue(endpoint_id: int, now: datetime | None) -> int:
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id, is_active=True).first()
    if endpoint is None:
        return 0
    secret = _signing_secret(endpoint)
    held: set[int | None] = set()
    delivered = attempts = 0
    pending = endpoint.deliveries.filter(status=DeliveryStatus.PENDING).order_by("id")
    for delivery in pending.iterator(chunk_size=100):
        if attempts == ATTEMPTS_PER_PASS:
            deliver_webhooks.delay(endpoint_id)  # the rest in another pass: the lock stays short
            break
        key = delivery.token_id if delivery.token_id is not None else -delivery.pk
        moment = now or timezone.now()
        if key in held or (delivery.next_attempt_at and delivery.next_attempt_at > moment):
            held.add(key)  # in order: nothing of this token overtakes it
            continue
        if secret is None:
            code, error = None, "The signing secret cannot be read (its pepper is gone): create a new endpoint."
        else:
            code, error = _attempt(endpoint, delivery, secret, moment)
        attempts += 1
        if _record_attempt(endpoint, delivery, code, error, moment):
            delivered += 1
            continue
        held.add(key)
        if code is None or code >= 500 or not endpoint.is_active:
            break  # the receiver is down (the others would fail too), or a day of failures disabled it
    return delivered


def _record_attempt(endpoint, delivery, code: int | None, error: str, now: datetime) -> bool:
    delivery.attempts += 1
    delivery.last_attempt_at, delivery.last_response_code, delivery.last_error = now, code, error[:ERROR_TEXT_MAX]
    if not error:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.DELIVERED, now, None
        delivery.save()
        if endpoint.failing_since is not None:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
            endpoint.failing_since = None
        return True
    if endpoint.failing_since is None:
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
        endpoint.failing_since = now
    if now - endpoint.failing_since >= DISABLE_AFTER:
        # Nothing answers: keep the delivery for when an administrator enables the endpoint again.
        delivery.next_attempt_at = now
        delivery.save()
        _disable_failing(endpoint, now)
        return False
    if delivery.attempts > len(RETRY_DELAYS):
        # The endpoint answers others, never this one: give it up after a day of trying.
        delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
    else:
        delivery.next_attempt_at = now + RETRY_DELAYS[delivery.attempts - 1]
    delivery.save()
    return False


def _disable_failing(endpoint: WebhookEndpoint, now: datetime) -> None:
    reason = f"Every delivery failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC."
    webhook_endpoint_set_active(endpoint=endpoint, active=False, actor=None, reason=reason)
    endpoint.is_active = False
    admins = users_holding_service_role(ServiceRole.USER_ADMINISTRATOR).filter(
        tenant_id=endpoint.tenant_id, is_active=True
    )
    recipients = sorted(set(admins.exclude(email="").values_list("email", flat=True)))
    if endpoint.created_by is not None and endpoint.created_by.email:
        recipients = sorted({*recipients, endpoint.created_by.email})
    if recipients:
        send_mail(
            f"Webhook endpoint {endpoint.url} was disabled",
            f"The webhook endpoint {endpoint.url} of {endpoint.tenant.name} failed every delivery for a day, so it "
            f"was disabled. {reason}\n\nNothing is lost: its pending deliveries are sent when it is enabled again. "
            f"Fix the receiver, then enable it: {settings.PUBLIC_URL}/admin/tokens/webhookendpoint/"
            f"{endpoint.pk}/change/\n",
            settings.DEFAULT_FROM_EMAIL,
            recipients,
        )


def webhook_deliveries_due(now: datetime | None = None) -> list[int]:
    """The active endpoints with a delivery due (the sweep queues them)."""
    return sorted(
        set(
            WebhookDelivery.objects.filter(
                status=DeliveryStatus.PENDING, next_attempt_at__lte=now or timezone.now(), endpoint__is_active=True
            ).values_list("endpoint_id", flat=True)
        )
    )


def webhook_deliveries_prune(now: datetime | None = None) -> int:
    """Forget deliveries done (delivered or given up) more than WEBHOOK_DELIVERY_RETENTION_DAYS ago."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS)
    deleted, _ = WebhookDelivery.objects.exclude(status=DeliveryStatus.PENDING).filter(created_at__lt=cutoff).delete()
    return deleted


@shared_task(name="tokens.tasks.deliver_webhooks", **RETRY)
def deliver_webhooks(endpoint_id: int) -> int:
    return webhook_deliveries_send(endpoint_id)


@shared_task(name="tokens.tasks.sweep_webhook_deliveries", **RETRY)
def sweep_webhook_deliveries() -> int:
    """Queue every endpoint with a delivery due: retries, and what waited out a broker outage (beat: every minute)."""
    due = webhook_deliveries_due()
    for endpoint_id in due:
        deliver_webhooks.delay(endpoint_id)
    return len(due)
