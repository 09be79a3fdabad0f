"""Integration credentials: the secrets a tenant's portal uses to call the
embedding API (ToolJet's access token, seeds 000 and 002)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import NotPermitted, ValidationFailed
from core.text import whitespace_collapsed
from iam.audit import audit_record
from iam.models import AuditAction, User
from iam.selectors import user_administers_tenant_users
from tenants.models import Tenant
from tokens import keys
from tokens.models import IntegrationCredential

# As for tokens: the last use is written at most this often.
LAST_USED_WRITE_INTERVAL = timedelta(seconds=settings.TOKEN_LAST_USED_WRITE_INTERVAL_SECONDS)


@dataclass(frozen=True)
class IssuedCredential:
    credential: IntegrationCredential
    plaintext: str


def credential_name_taken(tenant: Tenant, name: str) -> bool:
    return IntegrationCredential.objects.filter(tenant=tenant, name=name, revoked_at__isnull=True).exists()


def credential_name_taken_message(name: str) -> str:
    return f"The tenant already has a credential named “{name}”."


def credential_label(credential: IntegrationCredential) -> str:
    return f"integration credential “{credential.name}” ({credential.display_prefix}…)"


@transaction.atomic
def integration_credential_create(
    *, tenant: Tenant, name: str, actor: User | None, scopes: list[str] | None = None, ip: str | None = None
) -> IssuedCredential:
    """Create a tenant's integration credential; its plaintext exists only in the result.

    Only a main administrator or a user administrator of the tenant may
    (``actor`` None: an operator command).
    """
    if actor is not None and not user_administers_tenant_users(actor, tenant.pk):
        raise NotPermitted("Only an administrator of the tenant can create its integration credentials.")
    scopes = list(dict.fromkeys(scopes or [IntegrationCredential.Scope.EMBED]))
    errors: dict[str, list[str]] = {}
    name = whitespace_collapsed(name)
    if not name or len(name) > 100:
        errors["name"] = ["Enter a name of at most 100 characters."]
    elif credential_name_taken(tenant, name):
        errors["name"] = [credential_name_taken_message(name)]
    unknown = sorted(set(scopes) - set(IntegrationCredential.Scope.values))
    if unknown:
        errors["scopes"] = [f"Unknown scope {', '.join(unknown)}."]
    if errors:
        raise ValidationFailed(errors)
    plaintext = keys.generate(keys.CREDENTIAL_PREFIX)
    credential = IntegrationCredential.objects.create(
        tenant=tenant,
        name=name,
        scopes=scopes,
        display_prefix=keys.display_prefix(plaintext),
        digest=keys.digest(plaintext),
        pepper_id=keys.current_pepper_id(),
        created_by=actor,
    )
    audit_record(
        action=AuditAction.CREDENTIAL_CREATED,
        tenant_id=tenant.pk,
        actor=actor,
        ip=ip,
        changes={"credential": credential_label(credential), "scopes": scopes},
    )
    return IssuedCredential(credential, plaintext)


@transaction.atomic
def integration_credential_revoke(
    *, credential: IntegrationCredential, actor: User | None, ip: str | None = None
) -> IntegrationCredential:
    """Revoke a credential (irreversible, safe to repeat)."""
    if actor is not None and not user_administers_tenant_users(actor, credential.tenant_id):
        raise NotPermitted("Only an administrator of the tenant can revoke its integration credentials.")
    credential = IntegrationCredential.objects.select_for_update().get(pk=credential.pk)
    if credential.revoked_at is None:
        credential.revoked_at, credential.revoked_by = timezone.now(), actor
        credential.save(update_fields=["revoked_at", "revoked_by"])
        audit_record(
            action=AuditAction.CREDENTIAL_REVOKED,
            tenant_id=credential.tenant_id,
            actor=actor,
            ip=ip,
            changes={"credential": credential_label(credential)},
        )
    return credential


def integration_credential_authenticate(raw: str, now: datetime | None = None) -> IntegrationCredential | None:
    """Return the live credential whose plaintext is ``raw``, or None."""
    credential = keys.find_by_secret(
        IntegrationCredential.objects.select_related("tenant"), raw, keys.CREDENTIAL_PREFIX
    )
    if credential is None or credential.revoked_at is not None:
        return None
    keys.rehash_on_use(credential, raw)
    now = now or timezone.now()
    if credential.last_used_at is None or credential.last_used_at < now - LAST_USED_WRITE_INTERVAL:
        IntegrationCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
    return credential
