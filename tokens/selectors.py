"""Reads of tokens that apply the rules: what a user or administrator may see."""

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, QuerySet

from iam.models import Role, RoleGrant, ServiceRole, User
from tenants.models import Application, TenantApplication
from tokens.models import PersonalAccessToken, TokenStatus
from tokens.rules import TokenState, token_states


@dataclass(frozen=True)
class TokenRow:
    token: PersonalAccessToken
    state: TokenState


def token_list_for_owner(owner: User) -> list[TokenRow]:
    """Return the owner's tokens that are not deleted, newest first, with their
    effective state. Revoked tokens stay listed (read-only) until deleted."""
    tokens = list(
        PersonalAccessToken.objects.filter(owner=owner)
        .exclude(status=TokenStatus.DELETED)
        .select_related("application", "revoked_by")
        .prefetch_related("roles")
        .order_by("-created_at", "-id")
    )
    states = token_states(tokens)
    return [TokenRow(token, states[token.pk]) for token in tokens]


def token_get_for_owner(owner: User, token_id: int) -> PersonalAccessToken | None:
    """Return one of the owner's tokens that is not deleted, or None; never another user's."""
    return (
        PersonalAccessToken.objects.filter(owner=owner, pk=token_id)
        .exclude(status=TokenStatus.DELETED)
        .select_related("application", "tenant", "revoked_by")
        .first()
    )


def roles_for_token(user: User, application: Application | None) -> QuerySet[Role]:
    """Return the PAT-eligible roles ``user`` holds in ``application`` (service roles when None)."""
    return (
        Role.objects.filter(application=application, pat_eligible=True, grants__user=user)
        .select_related("application")
        .order_by("name")
    )


def applications_for_token_creation(user: User) -> QuerySet[Application]:
    """Return the applications ``user`` can create a token for: PATs allowed in
    the user's tenant and at least one PAT-eligible role held there."""
    return Application.objects.filter(
        Exists(
            TenantApplication.objects.filter(application=OuterRef("pk"), tenant_id=user.tenant_id, allows_pats=True)
        ),
        Exists(RoleGrant.objects.filter(role__application=OuterRef("pk"), role__pat_eligible=True, user=user)),
    ).order_by("name")


def user_administrators_of(user: User) -> list[User]:
    """Return who can give ``user`` the right to create tokens: the user
    administrators of the user's tenant (or, failing those, the main administrators)."""
    admins = list(
        User.objects.filter(
            tenant_id=user.tenant_id,
            is_active=True,
            role_grants__role__code=ServiceRole.USER_ADMINISTRATOR,
            role_grants__role__application__isnull=True,
        ).order_by("username")
    )
    if admins:
        return admins
    return list(
        User.objects.filter(
            is_active=True,
            role_grants__role__code=ServiceRole.MAIN_ADMINISTRATOR,
            role_grants__role__application__isnull=True,
        ).order_by("username")
    )
