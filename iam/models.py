from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower

from core.text import PERMISSION_CODE

SERVICE_PERMISSION_PREFIX = "iam."  # codes of this service's own roles; no application's role carries them


class AdminPermission(models.TextChoices):
    """Permission codes of this service's own admin API (administrative PATs)."""

    HEALTH_ADVANCED = "iam.health.advanced", "Read the advanced health check"
    AUDIT_READ = "iam.audit.read", "Read the audit trail"
    TOKENS_MANAGE = "iam.tokens.manage", "Manage users' personal access tokens through the API"


class ServiceRole(models.TextChoices):
    """Roles of the IAM service itself (roles without an application).

    The administrator kinds are grants of these roles, so the console and the
    administrative PATs rely on one mechanism: a role grant.
    """

    MAIN_ADMINISTRATOR = "main_administrator", "Main administrator"
    USER_ADMINISTRATOR = "user_administrator", "User administrator"
    APPLICATION_ADMINISTRATOR = "application_administrator", "Application administrator"
    DEVELOPER = "developer", "Developer"


ADMINISTRATOR_ROLES = (
    ServiceRole.MAIN_ADMINISTRATOR,
    ServiceRole.USER_ADMINISTRATOR,
    ServiceRole.APPLICATION_ADMINISTRATOR,
)


class IamUserManager(UserManager):
    def get_by_natural_key(self, username: str):
        return self.get(**{f"{self.model.USERNAME_FIELD}__iexact": username})


class User(AbstractUser):
    """An end user or administrator; belongs to exactly one tenant."""

    email = models.EmailField("email address")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="users")
    can_create_pats = models.BooleanField(
        "allow personal access token creation",
        default=False,
        help_text="Governs both creating and using personal access tokens.",
    )

    REQUIRED_FIELDS = ["email", "tenant"]
    objects = IamUserManager()

    class Meta:
        ordering = ["username"]
        constraints = [
            # The message says only that the address cannot be used: a user
            # administrator must not learn it exists in another tenant.
            models.UniqueConstraint(
                Lower("email"),
                name="user_email_unique_ci",
                violation_error_message="This email address cannot be used.",
            ),
            models.UniqueConstraint(Lower("username"), name="user_username_unique_ci"),
        ]

    def save(self, *args, **kwargs):
        self.email = (self.email or "").strip().lower()
        super().save(*args, **kwargs)


class Role(models.Model):
    """A set of permission codes in an application (or in this service when
    ``application`` is empty) that users are granted."""

    application = models.ForeignKey(
        "tenants.Application", on_delete=models.CASCADE, null=True, blank=True, related_name="roles"
    )
    code = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="Shown to users choosing token permissions.")
    permissions = models.JSONField(default=list, blank=True, help_text="Permission codes, e.g. orders.read.")
    pat_eligible = models.BooleanField("available for personal access tokens", default=False)
    needs_token_approval = models.BooleanField(
        "tokens need approval",
        default=False,
        help_text="A token that grants this role works only once a user administrator of its tenant approves it.",
    )

    class Meta:
        ordering = ["application__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["application", "code"],
                condition=models.Q(application__isnull=False),
                name="role_code_unique_per_application",
            ),
            models.UniqueConstraint(
                fields=["code"], condition=models.Q(application__isnull=True), name="service_role_code_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.application.slug if self.application_id else 'iam'}:{self.code}"

    @property
    def is_service_role(self) -> bool:
        return self.application_id is None

    def clean(self) -> None:
        permissions = self.permissions
        if not isinstance(permissions, list) or not all(
            isinstance(code, str) and PERMISSION_CODE.fullmatch(code) for code in permissions
        ):
            raise ValidationError({"permissions": 'A list of permission codes, e.g. ["orders.read", "orders.write"].'})
        if self.application_id is not None and any(code.startswith(SERVICE_PERMISSION_PREFIX) for code in permissions):
            raise ValidationError({"permissions": "Codes starting with iam. belong to this service's own roles."})


class RoleGrant(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="role_grants")
    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="grants")
    granted_at = models.DateTimeField(auto_now_add=True)
    granted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "role"], name="role_grant_unique")]

    def __str__(self) -> str:
        return f"{self.user} holds {self.role}"


class AuditAction(models.TextChoices):
    TOKEN_CREATED = "token.created", "Token created"
    TOKEN_EDITED = "token.edited", "Token edited"
    TOKEN_DELETED = "token.deleted", "Token deleted"
    TOKEN_REVOKED = "token.revoked", "Token revoked"
    TOKEN_INACTIVATED = "token.inactivated", "Token became inactive"
    TOKEN_REACTIVATED = "token.reactivated", "Token became active again"
    ROLE_PAT_ELIGIBILITY_CHANGED = "role.pat_eligibility_changed", "Role availability for PATs changed"
    ROLE_GRANTED = "role.granted", "Role granted"
    ROLE_GRANT_REMOVED = "role.grant_removed", "Role grant removed"
    USER_PAT_RIGHT_CHANGED = "user.pat_right_changed", "User's PAT creation right changed"
    USER_ACTIVATION_CHANGED = "user.activation_changed", "User activated or deactivated"
    USER_CREATED = "user.created", "User created"
    USER_CHANGED = "user.changed", "User changed"
    ROLE_CREATED = "role.created", "Role created"
    TENANT_CREATED = "tenant.created", "Tenant created"
    APPLICATION_CREATED = "application.created", "Application created"
    APPLICATION_CHANGED = "application.changed", "Application changed"
    APPLICATION_PATS_SWITCHED = "application.pats_switched", "Application's PAT switch changed"
    APPLICATION_ROUTES_CHANGED = "application.routes_changed", "Application's gateway route rules changed"
    TOKEN_REPORTED_LEAKED = "token.reported_leaked", "Token reported leaked (and revoked)"
    TOKEN_ROTATED = "token.rotated", "Token regenerated"
    TOKEN_REUSE_DETECTED = "token.reuse_detected", "Replaced secret reused (token revoked)"
    TOKEN_EXCHANGED = "token.exchanged", "Token exchanged for an access token"
    EMBED_SESSION_OPENED = "embed.session_opened", "Embed session opened"
    CREDENTIAL_CREATED = "integration.credential_created", "Integration credential created"
    CREDENTIAL_REVOKED = "integration.credential_revoked", "Integration credential revoked"
    OAUTH_CLIENT_CREATED = "oauth.client_created", "OAuth client created"
    OAUTH_CLIENT_REVOKED = "oauth.client_revoked", "OAuth client revoked"
    TENANT_POLICY_CHANGED = "tenant.policy_changed", "Tenant policy changed"
    TOKEN_EXPIRY_SHORTENED = "token.expiry_shortened", "Token expiry shortened by a tenant policy"
    ROLE_CHANGED = "role.changed", "Role changed"
    TENANT_API_ISSUANCE_SWITCHED = "tenant.api_issuance_switched", "Administrators may issue PATs through the API"
    WEBHOOK_ENDPOINT_CREATED = "webhook.endpoint_created", "Webhook endpoint created"
    WEBHOOK_ENDPOINT_DISABLED = "webhook.endpoint_disabled", "Webhook endpoint disabled"
    WEBHOOK_ENDPOINT_ENABLED = "webhook.endpoint_enabled", "Webhook endpoint enabled"
    TOKEN_APPROVAL_REQUESTED = "token.approval_requested", "Token awaits approval"
    TOKEN_APPROVED = "token.approved", "Token approved"
    TOKEN_DENIED = "token.denied", "Token denied"


class AuditEvent(models.Model):
    """One security-relevant event. Written in the same transaction as the
    change it records, never updated afterwards."""

    occurred_at = models.DateTimeField(auto_now_add=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    actor = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=200, blank=True, help_text="Who acted, kept if the actor is removed.")
    action = models.CharField(max_length=64, choices=AuditAction.choices)
    token = models.ForeignKey(
        "tokens.PersonalAccessToken", on_delete=models.PROTECT, null=True, blank=True, related_name="events"
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name = "audit event"
        verbose_name_plural = "audit events"
        ordering = ["-occurred_at", "-id"]
        # Each ends with the list's tie-break (-id), so a page of the newest
        # events is read off the index with no sort, however many share a time.
        indexes = [
            models.Index(fields=["tenant", "-occurred_at", "-id"], name="audit_tenant_newest"),
            models.Index(fields=["token", "-occurred_at", "-id"], name="audit_token_newest"),
            models.Index(fields=["actor", "-occurred_at", "-id"], name="audit_actor_newest"),
            models.Index(fields=["action", "-occurred_at", "-id"], name="audit_action_newest"),
            models.Index(fields=["-occurred_at", "-id"], name="audit_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"
