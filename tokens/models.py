from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class TokenStatus(models.TextChoices):
    """Stored states. EXPIRED and INACTIVE are derived (see ``tokens.rules``)."""

    ACTIVE = "active", "Active"
    REVOKED = "revoked", "Revoked"
    DELETED = "deleted", "Deleted"


class TokenKind(models.TextChoices):
    PERSONAL = "personal", "Personal"
    EMBED = "embed", "Embedding"


class RevocationCause(models.TextChoices):
    """Why a token was revoked: told to its owner, the console and the audit trail."""

    ADMINISTRATOR = "administrator", "Revoked by an administrator"
    INTEGRATION = "integration", "Ended by an integration"
    OPERATOR = "operator", "Revoked by an operator of the service"
    LEAK_REPORT = "leak_report", "Reported leaked"
    EMBED_REPLACED = "embed_replaced", "Replaced by a newer embedding token"
    REUSE_DETECTED = "reuse_detected", "A replaced secret was used after its grace period"
    UNUSED = "unused", "Not used for as long as its tenant allows"


class Approval(models.TextChoices):
    """Whether a user administrator's approval stands between a token and its use.

    Stored, as it is a person's decision, not a fact the rules could derive;
    ``tokens.rules`` turns PENDING and DENIED into the effective states."""

    NOT_NEEDED = "", "Not needed"
    PENDING = "pending", "Awaiting approval"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"


class PersonalAccessToken(models.Model):
    """A scoped, expiring credential a user hands to an integration.

    Only a keyed hash of the secret is stored. State changes go through
    ``tokens.services``; nothing here has side effects.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="tokens")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="tokens")
    application = models.ForeignKey(
        "tenants.Application",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="tokens",
        help_text="Empty for an administrative token of this service's own API.",
    )
    name = models.CharField(max_length=100)
    purpose = models.CharField(max_length=500, blank=True, help_text="What the token is for, in its owner's words.")
    kind = models.CharField(
        max_length=16,
        choices=TokenKind.choices,
        default=TokenKind.PERSONAL,
        help_text="Embedding tokens are issued by an integration for one application and user.",
    )
    embed_session_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="For embedding tokens: how long an embed session opened with it lasts."
    )
    roles = models.ManyToManyField("iam.Role", related_name="tokens")
    status = models.CharField(max_length=16, choices=TokenStatus.choices, default=TokenStatus.ACTIVE)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    allowed_networks = models.JSONField(
        default=list, blank=True, help_text="CIDR ranges it may be used from, within its tenant's. Empty: any."
    )
    last_refused_ip = models.GenericIPAddressField(null=True, blank=True)
    last_refused_at = models.DateTimeField(null=True, blank=True)
    unused_warned_at = models.DateTimeField(
        null=True, blank=True, help_text="When its owner was told it will be ended for not being used."
    )
    approval = models.CharField(max_length=16, choices=Approval.choices, blank=True, default=Approval.NOT_NEEDED)
    approval_requested_at = models.DateTimeField(null=True, blank=True)
    approval_decided_at = models.DateTimeField(null=True, blank=True)
    approval_decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    approval_decided_by_label = models.CharField(max_length=200, blank=True)
    approval_note = models.CharField(
        max_length=500, blank=True, help_text="The approver's note, or the reason a request was denied."
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revocation_cause = models.CharField(max_length=32, choices=RevocationCause.choices, blank=True)
    revoked_by_label = models.CharField(
        max_length=200, blank=True, help_text="Who revoked it, kept when that is no user or the user is removed."
    )
    revocation_reason = models.CharField(max_length=500, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    display_prefix = models.CharField(max_length=16, help_text="The token's non-secret start, e.g. pat_AbC123.")
    digest = models.CharField(max_length=64, help_text="HMAC-SHA256 of the token under a pepper.")
    pepper_id = models.CharField(max_length=16)
    marked_inactive = models.BooleanField(
        default=False,
        editable=False,
        help_text="Kept by the services (and reconciled hourly) so the console can find inactive tokens "
        "through an index; the token's state itself is always computed from the rules.",
    )

    class Meta:
        verbose_name = "personal access token"
        ordering = ["-created_at", "-id"]
        constraints = [
            # A constraint rather than unique=True: no second (LIKE) index on PostgreSQL.
            models.UniqueConstraint(fields=["digest"], name="token_digest_unique"),
            # One name per owner among tokens the owner still sees, whatever their
            # kind: the management API addresses a user's tokens by name.
            models.UniqueConstraint(
                fields=["owner", "name"], condition=~Q(status="deleted"), name="token_name_unique_per_owner"
            ),
            # Seed 000: one active embedding token per application and user.
            models.UniqueConstraint(
                fields=["owner", "application"],
                condition=Q(status="active", kind="embed"),
                name="one_active_embed_token_per_user_and_app",
            ),
            models.CheckConstraint(
                name="token_expires_after_creation", condition=Q(expires_at__gt=models.F("created_at"))
            ),
            models.CheckConstraint(name="token_status_valid", condition=Q(status__in=["active", "revoked", "deleted"])),
            models.CheckConstraint(
                name="token_active_not_ended",
                condition=~Q(status="active") | Q(revoked_at__isnull=True, deleted_at__isnull=True),
            ),
            models.CheckConstraint(
                name="token_revoked_has_time", condition=~Q(status="revoked") | Q(revoked_at__isnull=False)
            ),
            models.CheckConstraint(
                name="token_deleted_has_time", condition=~Q(status="deleted") | Q(deleted_at__isnull=False)
            ),
            models.CheckConstraint(
                name="token_approval_valid", condition=Q(approval__in=["", "pending", "approved", "denied"])
            ),
            models.CheckConstraint(
                name="token_pending_has_time", condition=~Q(approval="pending") | Q(approval_requested_at__isnull=False)
            ),
            models.CheckConstraint(
                name="token_revoked_has_cause", condition=~Q(status="revoked") | ~Q(revocation_cause="")
            ),
        ]
        indexes = [
            models.Index(fields=["owner", "status", "-created_at"], name="token_owner_status_created"),
            models.Index(fields=["tenant", "status", "expires_at"], name="token_tenant_status_expires"),
            models.Index(fields=["status", "expires_at"], name="token_status_expires"),
            # Pattern operator classes (PostgreSQL; ignored elsewhere): the console's
            # prefix search uses them whatever the database's collation.
            models.Index(fields=["display_prefix"], opclasses=["varchar_pattern_ops"], name="token_prefix_search"),
            models.Index(fields=["name"], opclasses=["varchar_pattern_ops"], name="token_name_search"),
            models.Index(fields=["purpose"], opclasses=["varchar_pattern_ops"], name="token_purpose_search"),
            models.Index(fields=["-created_at", "-id"], name="token_created"),
            models.Index(fields=["tenant", "-created_at", "-id"], name="token_tenant_created"),
            models.Index(fields=["last_used_at", "id"], name="token_last_used"),
            models.Index(fields=["expires_at", "id"], name="token_expires"),
            # The console's overview: each status filter and ordering walks an index, newest first.
            models.Index(fields=["status", "-created_at", "-id"], name="token_status_created"),
            models.Index(fields=["tenant", "status", "-created_at", "-id"], name="token_tenant_status_created"),
            models.Index(
                fields=["-created_at", "-id"], condition=Q(marked_inactive=True), name="token_inactive_created"
            ),
            models.Index(
                fields=["tenant", "-created_at", "-id"],
                condition=Q(marked_inactive=True),
                name="token_tenant_inactive_created",
            ),
            # The overview's kind filter: embedding and administrative tokens are a small share.
            models.Index(fields=["-created_at", "-id"], condition=Q(kind="embed"), name="token_embed_created"),
            models.Index(
                fields=["-created_at", "-id"], condition=Q(application__isnull=True), name="token_admin_created"
            ),
            # The approval queue and the denied tokens: a small share, listed newest first.
            models.Index(
                fields=["-created_at", "-id"],
                condition=Q(approval__in=["pending", "denied"]),
                name="token_awaiting_created",
            ),
            models.Index(
                fields=["tenant", "-created_at", "-id"],
                condition=Q(approval__in=["pending", "denied"]),
                name="token_tenant_awaiting_created",
            ),
            models.Index(fields=["name", "id"], name="token_name"),
            models.Index(fields=["tenant", "name", "id"], name="token_tenant_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix}…)"

    @property
    def is_administrative(self) -> bool:
        return self.application_id is None

    @property
    def is_embedding(self) -> bool:
        return self.kind == TokenKind.EMBED

    @property
    def application_label(self) -> str:
        return self.application.name if self.application_id else "This service (administrative)"

    @property
    def revoked_by_name(self) -> str:
        """Who revoked the token, as its owner and the console should read it."""
        if self.revoked_by_id is not None and self.revoked_by is not None:
            return self.revoked_by.get_full_name() or self.revoked_by.username
        return self.revoked_by_label


class RotatedSecret(models.Model):
    """A secret a token had before it was regenerated (GitLab's rotate).

    It works until ``works_until`` (the grace period its owner asked for, at
    most a day) and is kept afterwards, so a later use of it is recognised as
    reuse: someone else holds it, and the token is ended (``services.token_reuse_end``).
    """

    token = models.ForeignKey(PersonalAccessToken, on_delete=models.CASCADE, related_name="rotated_secrets")
    digest = models.CharField(max_length=64, help_text="HMAC-SHA256 of the secret under a pepper.")
    pepper_id = models.CharField(max_length=16)
    display_prefix = models.CharField(max_length=16)
    successor_prefix = models.CharField(max_length=16, help_text="The display prefix of the secret that replaced it.")
    rotated_at = models.DateTimeField()
    works_until = models.DateTimeField()
    reuse_detected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-rotated_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["digest"], name="rotated_secret_digest_unique"),
            # At most a day later too (``services.MAX_GRACE``); not here, as SQLite
            # would need a function of Django's to check it.
            models.CheckConstraint(
                name="rotated_secret_works_after_rotation", condition=Q(works_until__gte=models.F("rotated_at"))
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_prefix}… of token {self.token_id}, replaced by {self.successor_prefix}…"


class TokenUsageDay(models.Model):
    """How many authenticated requests a token made on one day (UTC)."""

    token = models.ForeignKey(PersonalAccessToken, on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token", "day"], name="token_usage_day_unique")]
        indexes = [models.Index(fields=["day"], name="token_usage_day")]

    def __str__(self) -> str:
        return f"{self.token_id} on {self.day}: {self.count}"


class IntegrationCredential(models.Model):
    """A tenant's server-to-server credential (seed 002's ``Authorization: Basic``)."""

    class Scope(models.TextChoices):
        EMBED = "embed", "Issue embedding tokens"
        TOKENS_MANAGE = "tokens.manage", "Manage users' personal access tokens"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="integration_credentials")
    name = models.CharField(max_length=100)
    scopes = models.JSONField(default=list, blank=True)
    display_prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    pepper_id = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"], condition=Q(revoked_at__isnull=True), name="credential_name_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix}…)"


class EmbedSession(models.Model):
    """An isolated session opened with an embedding token, for one user and
    application; it never touches the user's own session with this service."""

    token = models.ForeignKey(PersonalAccessToken, on_delete=models.CASCADE, related_name="embed_sessions")
    digest = models.CharField(max_length=64, unique=True)
    pepper_id = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"embed session of token {self.token_id}"


class OAuthClient(models.Model):
    """An OAuth 2.0 client of one application (RFC 8693 token exchange, RFC 7662/7009)."""

    application = models.ForeignKey("tenants.Application", on_delete=models.PROTECT, related_name="oauth_clients")
    name = models.CharField(max_length=100)
    client_id = models.CharField(max_length=64, unique=True, editable=False)
    secret_digest = models.CharField(max_length=64, editable=False)
    pepper_id = models.CharField(max_length=16, editable=False)
    token_exchange_enabled = models.BooleanField(default=False)
    allowed_scopes = models.JSONField(
        default=list, blank=True, help_text="Permission codes this client may request; empty means any the PAT has."
    )
    access_token_lifetime = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(60), MaxValueValidator(86400)], help_text="Seconds."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OAuth client"

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"


class RevokedAccessToken(models.Model):
    """An exchanged access token revoked before it expired (RFC 7009), by ``jti``."""

    jti = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.jti


class ExpiryReminder(models.Model):
    """An expiry reminder that was sent: one per token, threshold and expiry,
    so retries, overlapping sweeps and several workers send it once."""

    token = models.ForeignKey(PersonalAccessToken, on_delete=models.CASCADE, related_name="reminders")
    days_before = models.PositiveSmallIntegerField()
    expires_at = models.DateTimeField(help_text="The expiry the reminder was about; a new expiry gets new reminders.")
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token", "days_before", "expires_at"], name="expiry_reminder_once")
        ]

    def __str__(self) -> str:
        return f"{self.days_before}-day reminder for token {self.token_id}"


class AdminDigest(models.Model):
    """A weekly digest sent to a user administrator (once per ISO week)."""

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    week = models.CharField(max_length=8, help_text="ISO year and week, e.g. 2026-W48.")
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["recipient", "week"], name="admin_digest_once_a_week")]

    def __str__(self) -> str:
        return f"digest {self.week} for {self.recipient_id}"


class TokenAddress(models.Model):
    """An address a token has been used from (for "used from a new address" notices)."""

    token = models.ForeignKey(PersonalAccessToken, on_delete=models.CASCADE, related_name="addresses")
    ip = models.GenericIPAddressField()
    first_seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token", "ip"], name="token_address_unique")]

    def __str__(self) -> str:
        return f"{self.ip} for token {self.token_id}"


class UsageBatch(models.Model):
    """A batch of usage counts moved from Redis to the database, recorded in the
    same transaction as the counts so a retried flush never counts twice."""

    batch_id = models.CharField(max_length=200, unique=True)
    applied_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.batch_id


class ApprovalDigest(models.Model):
    """A daily digest of pending approval requests sent to an approver (once a day)."""

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["recipient", "day"], name="approval_digest_once_a_day")]

    def __str__(self) -> str:
        return f"approval digest {self.day} for {self.recipient_id}"


class TenantTokenFigures(models.Model):
    """The dashboard's figures for one tenant, computed by a periodic task so
    the dashboard of a large installation reads a row per tenant instead of
    aggregating every token (``tokens.selectors.dashboard_figures``)."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, primary_key=True, related_name="+")
    computed_at = models.DateTimeField()
    tokens = models.PositiveIntegerField(help_text="Every token of the tenant, whatever its state.")
    figures = models.JSONField()

    def __str__(self) -> str:
        return f"figures of tenant {self.tenant_id} at {self.computed_at:%Y-%m-%d %H:%M}"


class WebhookEvent(models.TextChoices):
    """What a webhook endpoint can subscribe to (``type`` in the payload)."""

    CREATED = "token.created", "Created"
    EDITED = "token.edited", "Edited"
    REGENERATED = "token.regenerated", "Regenerated"
    REVOKED = "token.revoked", "Revoked (with its cause)"
    DELETED = "token.deleted", "Deleted by its owner"
    INACTIVE = "token.inactive", "Became inactive (with the reason)"
    ACTIVE = "token.active", "Became active again"
    EXPIRING = "token.expiring", "Expires in N days (the tenant's reminder days)"
    EXPIRED = "token.expired", "Expired"
    REUSE_DETECTED = "token.reuse_detected", "A replaced secret was reused (the token was revoked)"
    APPROVAL_REQUESTED = "token.approval_requested", "Awaits a user administrator's approval"
    APPROVED = "token.approved", "Approved by a user administrator"
    DENIED = "token.denied", "Denied by a user administrator"
    LEAK_REPORTED = "token.leak_reported", "Reported leaked (and revoked)"


class WebhookEndpoint(models.Model):
    """Where a tenant's token events are sent, signed (Standard Webhooks).

    The signing secret must be usable to sign, so it is kept encrypted with a
    key derived from the current token pepper (``tokens.webhooks``), never in
    plain text. Changes go through ``tokens.webhooks``.
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="webhook_endpoints")
    url = models.URLField("URL", max_length=500)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list)
    secret_ciphertext = models.TextField(editable=False)
    pepper_id = models.CharField(max_length=16, editable=False)
    secret_prefix = models.CharField(max_length=16, editable=False)
    is_active = models.BooleanField(default=True, editable=False)
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = "webhook endpoint"
        indexes = [models.Index(fields=["tenant", "is_active"], name="webhook_tenant_active")]

    def __str__(self) -> str:
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Gave up"


class WebhookDelivery(models.Model):
    """One event for one endpoint, and how sending it went. Written in the
    transaction of the change it announces, so none is lost or invented."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=40)
    token_id = models.BigIntegerField(null=True, blank=True)  # deliveries of one token go in order
    payload = models.JSONField()
    created_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["endpoint", "status", "id"], name="webhook_delivery_queue"),
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.message_id}"


class PendingInvalidation(models.Model):
    """A change whose broadcast to the processes' token caches failed (Redis
    was out of this process's reach): ``tokens.tasks.relay_invalidations``
    broadcasts it from a process that can reach Redis. Written when a broadcast
    fails, the first one in the change's own transaction, so none is lost."""

    scope = models.CharField(max_length=200)  # as ``authcache.cache_clear`` takes it
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.scope} at {self.created_at:%Y-%m-%d %H:%M:%S}"
