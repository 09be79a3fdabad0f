"""Writes to tenants and applications."""

from django.db import transaction

from iam.audit import audit_record
from iam.exceptions import NotPermitted
from iam.models import AuditAction, User
from iam.selectors import user_administers_applications
from tenants.models import Application, Tenant, TenantApplication
from tokens.models import PersonalAccessToken
from tokens.services import ValidityChange, recording_validity_changes


@transaction.atomic
def tenant_application_set_pats_allowed(
    *, tenant: Tenant, application: Application, allowed: bool, actor: User | None, ip: str | None = None
) -> list[ValidityChange]:
    """Switch personal access tokens on or off for an application in a tenant.

    The switch governs creating and using tokens: switching it off makes the
    tenant's active tokens for the application inactive. Makes the application
    available in the tenant if it was not.
    """
    if actor is not None and not user_administers_applications(actor):
        raise NotPermitted("Only a main or application administrator can do this.", code="not_application_admin")
    link, _ = TenantApplication.objects.select_for_update().get_or_create(tenant=tenant, application=application)
    if link.allows_pats == allowed:
        return []
    with recording_validity_changes(
        PersonalAccessToken.objects.filter(tenant=tenant, application=application),
        actor=actor,
        ip=ip,
        cause=f"{application.slug} allows_pats={allowed} in {tenant.slug}",
    ) as changed:
        link.allows_pats = allowed
        link.save(update_fields=["allows_pats"])
    audit_record(
        action=AuditAction.APPLICATION_PATS_SWITCHED,
        tenant_id=tenant.pk,
        actor=actor,
        ip=ip,
        changes={"application": application.slug, "allows_pats": allowed, "tokens_affected": len(changed)},
    )
    return changed
