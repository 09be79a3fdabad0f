"""Administrative changes to users, roles and grants.

Each change that can change what tokens may do runs inside
``core.changes.identity_changing``: the layers above (tokens) see it, act on
it in the same transaction and report what they did. ``actor`` None means an operator command (seed data, CLI).
"""

from django.db import transaction

from core.changes import ChangeKind, ChangeReport, IdentityChange, identity_changing
from core.errors import NotPermitted, ValidationFailed
from iam.audit import audit_record
from iam.models import AuditAction, Role, RoleGrant, User
from iam.selectors import user_administers_applications, user_administers_tenant_users, user_is_main_administrator
from tenants.models import TenantApplication

# What ``user_update`` changes in an account (the password has its own forms).
USER_FIELDS = ("username", "first_name", "last_name", "email", "tenant", "can_create_pats", "is_active")
# What ``role_update`` changes; the PAT flag has role_set_pat_eligible, application and code never change.
ROLE_FIELDS = ("name", "description", "permissions", "needs_token_approval")


def _require_user_admin(actor: User | None, tenant_id: int) -> None:
    if actor is not None and not user_administers_tenant_users(actor, tenant_id):
        raise NotPermitted("Only an administrator of this user's tenant can do this.", code="not_tenant_admin")


def require_application_admin(actor: User | None) -> None:
    """Refuse unless ``actor`` (None: an operator command) may configure applications and roles."""
    if actor is not None and not user_administers_applications(actor):
        raise NotPermitted("Only a main or application administrator can do this.", code="not_application_admin")


@transaction.atomic
def role_create(*, role: Role, actor: User | None, ip: str | None = None) -> Role:
    """Save a new role of an application, built and validated by the console's form; audited."""
    require_application_admin(actor)
    if role.is_service_role:
        raise NotPermitted("The service's own roles are fixed.", code="service_role")
    role.save()
    audit_record(
        action=AuditAction.ROLE_CREATED,
        tenant_id=None,
        actor=actor,
        ip=ip,
        changes={
            "role": str(role),
            "permissions": role.permissions,
            "pat_eligible": role.pat_eligible,
            "needs_token_approval": role.needs_token_approval,
        },
    )
    return role


@transaction.atomic
def role_set_pat_eligible(*, role: Role, eligible: bool, actor: User | None, ip: str | None = None) -> ChangeReport:
    """Make a role available (or not) for personal access tokens.

    Reports what it did to tokens: withdrawing a role makes
    every active token that grants it inactive.
    """
    require_application_admin(actor)
    if role.is_service_role:
        raise NotPermitted("The availability of the service's own roles is fixed.", code="service_role")
    role = Role.objects.select_for_update().get(pk=role.pk)
    if role.pat_eligible == eligible:
        return ChangeReport()
    change = IdentityChange(
        ChangeKind.ROLE_ELIGIBILITY, f"role {role} pat_eligible={eligible}", actor, ip, role_id=role.pk
    )
    with identity_changing(change) as report:
        role.pat_eligible = eligible
        role.save(update_fields=["pat_eligible"])
    audit_record(
        action=AuditAction.ROLE_PAT_ELIGIBILITY_CHANGED,
        tenant_id=None,
        actor=actor,
        ip=ip,
        changes={"role": str(role), "pat_eligible": eligible, "tokens_affected": report.tokens_affected},
    )
    return report


@transaction.atomic
def role_update(*, role: Role, changes: dict, actor: User | None, ip: str | None = None) -> Role:
    """Change a role's name, description or permission codes (validated by the
    caller's form), audited with old and new values. New codes reach every
    live token that grants the role at once, removed ones leave them: the
    change reports how many (in its ``ChangeReport``) so the console asks first."""
    require_application_admin(actor)
    if role.is_service_role:
        raise NotPermitted("The service's own roles are fixed.", code="service_role")
    unknown = set(changes) - set(ROLE_FIELDS)
    if unknown:
        raise ValueError(f"not a role setting: {', '.join(sorted(unknown))}")
    role = Role.objects.select_for_update(of=("self",)).select_related("application").get(pk=role.pk)
    diff = {name: [getattr(role, name), value] for name, value in changes.items() if getattr(role, name) != value}
    if not diff:
        return role
    change = IdentityChange(ChangeKind.ROLE_PERMISSIONS, f"role {role} changed", actor, ip, role_id=role.pk)
    with identity_changing(change) as report:
        for name, (_, value) in diff.items():
            setattr(role, name, value)
        role.save(update_fields=list(diff))
    affected = {"tokens_affected": report.tokens_affected} if "permissions" in diff else {}
    audit_record(
        action=AuditAction.ROLE_CHANGED,
        tenant_id=None,
        actor=actor,
        ip=ip,
        changes={"role": str(role), **diff, **affected},
    )
    return role


@transaction.atomic
def role_grant_add(*, user: User, role: Role, actor: User | None, ip: str | None = None) -> ChangeReport:
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
    change = IdentityChange(ChangeKind.GRANT_ADDED, f"granted {role}", actor, ip, role_id=role.pk, user_id=user.pk)
    with identity_changing(change) as report:
        _, created = RoleGrant.objects.get_or_create(user=user, role=role, defaults={"granted_by": actor})
    if created:
        audit_record(
            action=AuditAction.ROLE_GRANTED,
            tenant_id=user.tenant_id,
            actor=actor,
            ip=ip,
            changes={"user": user.username, "role": str(role)},
        )
    return report


@transaction.atomic
def role_grant_remove(*, user: User, role: Role, actor: User | None, ip: str | None = None) -> ChangeReport:
    """Take ``role`` away from ``user``; tokens that grant it become inactive."""
    _require_user_admin(actor, user.tenant_id)
    if role.is_service_role and actor is not None and not user_is_main_administrator(actor):
        raise NotPermitted("Only a main administrator can remove administrator roles.", code="not_main_admin")
    change = IdentityChange(ChangeKind.GRANT_REMOVED, f"removed {role}", actor, ip, role_id=role.pk, user_id=user.pk)
    with identity_changing(change) as report:
        deleted, _ = RoleGrant.objects.filter(user=user, role=role).delete()
    if deleted:
        audit_record(
            action=AuditAction.ROLE_GRANT_REMOVED,
            tenant_id=user.tenant_id,
            actor=actor,
            ip=ip,
            changes={"user": user.username, "role": str(role)},
        )
    return report


def _user_switch(
    user: User, field: str, value: bool, kind: ChangeKind, action: AuditAction, actor: User | None, ip: str | None
) -> ChangeReport:
    """Set one of a user's switches through the identity hook, audited."""
    _require_user_admin(actor, user.tenant_id)
    user = User.objects.select_for_update().get(pk=user.pk)
    if getattr(user, field) == value:
        return ChangeReport()
    with identity_changing(IdentityChange(kind, f"{field}={value}", actor, ip, user_id=user.pk)) as report:
        setattr(user, field, value)
        user.save(update_fields=[field])
    audit_record(
        action=action, tenant_id=user.tenant_id, actor=actor, ip=ip, changes={"user": user.username, field: value}
    )
    return report


@transaction.atomic
def user_set_pat_creation_right(
    *, user: User, allowed: bool, actor: User | None, ip: str | None = None
) -> ChangeReport:
    """Allow or forbid a user to create and use personal access tokens."""
    return _user_switch(
        user, "can_create_pats", allowed, ChangeKind.PAT_RIGHT, AuditAction.USER_PAT_RIGHT_CHANGED, actor, ip
    )


@transaction.atomic
def user_set_active(*, user: User, active: bool, actor: User | None, ip: str | None = None) -> ChangeReport:
    """Activate or deactivate a user account; a deactivated owner's tokens stop working."""
    return _user_switch(
        user, "is_active", active, ChangeKind.ACTIVATION, AuditAction.USER_ACTIVATION_CHANGED, actor, ip
    )


@transaction.atomic
def user_create(*, user: User, actor: User | None, ip: str | None = None) -> User:
    """Save a new account built and validated by the console's form (its
    password already hashed), in a tenant the actor administers; audited."""
    _require_user_admin(actor, user.tenant_id)
    user.save()
    audit_record(
        action=AuditAction.USER_CREATED,
        tenant_id=user.tenant_id,
        actor=actor,
        ip=ip,
        changes={"user": user.username, "email": user.email, "can_create_pats": user.can_create_pats},
    )
    return user


@transaction.atomic
def user_update(*, user: User, changes: dict, actor: User | None, ip: str | None = None) -> ChangeReport:
    """Change an account from the console, each field through what it means:
    names and e-mail audited with old and new values; a move to another
    tenant by a main administrator only (the user's tokens stay in their
    tenant and stop working); the PAT right and activation through their own
    operations. Returns what the change did to tokens."""
    _require_user_admin(actor, user.tenant_id)
    unknown = set(changes) - set(USER_FIELDS)
    if unknown:
        raise ValueError(f"not a user setting: {', '.join(sorted(unknown))}")
    user = User.objects.select_for_update().select_related("tenant").get(pk=user.pk)
    report = ChangeReport()
    tenant = changes.get("tenant", user.tenant)
    if tenant.pk != user.tenant_id:
        if actor is not None and not user_is_main_administrator(actor):
            raise NotPermitted("Only a main administrator can move a user to another tenant.", code="not_main_admin")
        old_tenant = user.tenant
        change = IdentityChange(ChangeKind.TENANT_MOVE, f"moved to tenant {tenant}", actor, ip, user_id=user.pk)
        with identity_changing(change) as moved:
            user.tenant = tenant
            user.save(update_fields=["tenant"])
        report.effects.extend(moved.effects)
        for tenant_id in (old_tenant.pk, tenant.pk):  # both tenants' administrators see the move
            audit_record(
                action=AuditAction.USER_CHANGED,
                tenant_id=tenant_id,
                actor=actor,
                ip=ip,
                changes={"user": user.username, "tenant": [old_tenant.slug, tenant.slug]},
            )
    profile = {
        name: [getattr(user, name), changes[name]]
        for name in ("username", "first_name", "last_name", "email")
        if name in changes and getattr(user, name) != changes[name]
    }
    if profile:
        for name, (_, value) in profile.items():
            setattr(user, name, value)
        user.save(update_fields=list(profile))
        audit_record(
            action=AuditAction.USER_CHANGED,
            tenant_id=user.tenant_id,
            actor=actor,
            ip=ip,
            changes={"user": user.username, **profile},
        )
    if "can_create_pats" in changes:
        report.effects.extend(
            user_set_pat_creation_right(user=user, allowed=changes["can_create_pats"], actor=actor, ip=ip).effects
        )
    if "is_active" in changes:
        report.effects.extend(user_set_active(user=user, active=changes["is_active"], actor=actor, ip=ip).effects)
    return report
