"""Administrative changes to users, roles and grants.

Each change that can make tokens inactive (or active again) runs inside
``recording_validity_changes`` so the audit trail says which tokens it
affected and why. ``actor`` None means an operator command (seed data, CLI).
"""

from django.db import transaction

from iam.audit import audit_record
from iam.exceptions import NotPermitted, ValidationFailed
from iam.models import AuditAction, Role, RoleGrant, User
from iam.selectors import user_administers_applications, user_administers_tenant_users, user_is_main_administrator
from tenants.models import TenantApplication
from tokens.models import PersonalAccessToken
from tokens.services import ValidityChange, recording_validity_changes, role_permissions_change_report

# What ``role_update`` changes; the PAT flag has role_set_pat_eligible, application and code never change.
ROLE_FIELDS = ("name", "description", "permissions")


def _require_user_admin(actor: User | None, tenant_id: int) -> None:
    if actor is not None and not user_administers_tenant_users(actor, tenant_id):
        raise NotPermitted("Only an administrator of this user's tenant can do this.", code="not_tenant_admin")


def _require_application_admin(actor: User | None) -> None:
    if actor is not None and not user_administers_applications(actor):
        raise NotPermitted("Only a main or application administrator can do this.", code="not_application_admin")


@transaction.atomic
def role_set_pat_eligible(
    *, role: Role, eligible: bool, actor: User | None, ip: str | None = None
) -> list[ValidityChange]:
    """Make a role available (or not) for personal access tokens.

    Returns the tokens whose usability changed: withdrawing a role makes
    every active token that grants it inactive.
    """
    _require_application_admin(actor)
    if role.is_service_role:
        raise NotPermitted("The availability of the service's own roles is fixed.", code="service_role")
    role = Role.objects.select_for_update().get(pk=role.pk)
    if role.pat_eligible == eligible:
        return []
    with recording_validity_changes(
        PersonalAccessToken.objects.filter(roles=role), actor=actor, ip=ip, cause=f"role {role} pat_eligible={eligible}"
    ) as changed:
        role.pat_eligible = eligible
        role.save(update_fields=["pat_eligible"])
    audit_record(
        action=AuditAction.ROLE_PAT_ELIGIBILITY_CHANGED,
        tenant_id=None,
        actor=actor,
        ip=ip,
        changes={"role": str(role), "pat_eligible": eligible, "tokens_affected": len(changed)},
    )
    return changed


@transaction.atomic
def role_update(*, role: Role, changes: dict, actor: User | None, ip: str | None = None) -> Role:
    """Change a role's name, description or permission codes (validated by the
    caller's form), audited with old and new values. New codes reach every
    live token that grants the role at once, removed ones leave them: the
    change reports how many (``TokenImpact.permissions``) so the console asks first."""
    _require_application_admin(actor)
    if role.is_service_role:
        raise NotPermitted("The service's own roles are fixed.", code="service_role")
    unknown = set(changes) - set(ROLE_FIELDS)
    if unknown:
        raise ValueError(f"not a role setting: {', '.join(sorted(unknown))}")
    role = Role.objects.select_for_update(of=("self",)).select_related("application").get(pk=role.pk)
    diff = {name: [getattr(role, name), value] for name, value in changes.items() if getattr(role, name) != value}
    if not diff:
        return role
    affected = {}
    if "permissions" in diff:
        affected["tokens_affected"] = role_permissions_change_report(role, list(changes["permissions"])).live_tokens
    for name, (_, value) in diff.items():
        setattr(role, name, value)
    role.save(update_fields=list(diff))
    audit_record(
        action=AuditAction.ROLE_CHANGED,
        tenant_id=None,
        actor=actor,
        ip=ip,
        changes={"role": str(role), **diff, **affected},
    )
    return role


@transaction.atomic
def role_grant_add(*, user: User, role: Role, actor: User | None, ip: str | None = None) -> list[ValidityChange]:
    """Grant ``role`` to ``user``; tokens that lacked it may become active again.

    Administrator roles are granted by a main administrator only.
    """
    _require_user_admin(actor, user.tenant_id)
    if role.is_service_role and actor is not None and not user_is_main_administrator(actor):
        raise NotPermitted("Only a main administrator can grant administrator roles.", code="not_main_admin")
    if (
        not role.is_service_role
        and not TenantApplication.objects.filter(tenant_id=user.tenant_id, application_id=role.application_id).exists()
    ):
        raise ValidationFailed(
            {"role": ["The role's application is not available in the user's tenant."]},
            message="The role's application is not available in the user's tenant: its roles are not granted there.",
        )
    with recording_validity_changes(
        PersonalAccessToken.objects.filter(owner=user, roles=role), actor=actor, ip=ip, cause=f"granted {role}"
    ) as changed:
        _, created = RoleGrant.objects.get_or_create(user=user, role=role, defaults={"granted_by": actor})
    if created:
        audit_record(
            action=AuditAction.ROLE_GRANTED,
            tenant_id=user.tenant_id,
            actor=actor,
            ip=ip,
            changes={"user": user.username, "role": str(role)},
        )
    return changed


@transaction.atomic
def role_grant_remove(*, user: User, role: Role, actor: User | None, ip: str | None = None) -> list[ValidityChange]:
    """Take ``role`` away from ``user``; tokens that grant it become inactive."""
    _require_user_admin(actor, user.tenant_id)
    if role.is_service_role and actor is not None and not user_is_main_administrator(actor):
        raise NotPermitted("Only a main administrator can remove administrator roles.", code="not_main_admin")
    with recording_validity_changes(
        PersonalAccessToken.objects.filter(owner=user, roles=role), actor=actor, ip=ip, cause=f"removed {role}"
    ) as changed:
        deleted, _ = RoleGrant.objects.filter(user=user, role=role).delete()
    if deleted:
        audit_record(
            action=AuditAction.ROLE_GRANT_REMOVED,
            tenant_id=user.tenant_id,
            actor=actor,
            ip=ip,
            changes={"user": user.username, "role": str(role)},
        )
    return changed


@transaction.atomic
def user_set_pat_creation_right(
    *, user: User, allowed: bool, actor: User | None, ip: str | None = None
) -> list[ValidityChange]:
    """Allow or forbid a user to create and use personal access tokens."""
    _require_user_admin(actor, user.tenant_id)
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.can_create_pats == allowed:
        return []
    with recording_validity_changes(
        PersonalAccessToken.objects.filter(owner=user), actor=actor, ip=ip, cause=f"can_create_pats={allowed}"
    ) as changed:
        user.can_create_pats = allowed
        user.save(update_fields=["can_create_pats"])
    audit_record(
        action=AuditAction.USER_PAT_RIGHT_CHANGED,
        tenant_id=user.tenant_id,
        actor=actor,
        ip=ip,
        changes={"user": user.username, "can_create_pats": allowed},
    )
    return changed


@transaction.atomic
def user_set_active(*, user: User, active: bool, actor: User | None, ip: str | None = None) -> list[ValidityChange]:
    """Activate or deactivate a user account; a deactivated owner's tokens stop working."""
    _require_user_admin(actor, user.tenant_id)
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_active == active:
        return []
    with recording_validity_changes(
        PersonalAccessToken.objects.filter(owner=user), actor=actor, ip=ip, cause=f"is_active={active}"
    ) as changed:
        user.is_active = active
        user.save(update_fields=["is_active"])
    audit_record(
        action=AuditAction.USER_ACTIVATION_CHANGED,
        tenant_id=user.tenant_id,
        actor=actor,
        ip=ip,
        changes={"user": user.username, "is_active": active},
    )
    return changed
