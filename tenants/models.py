import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

MAX_TOKEN_LIFETIME_DAYS = 365
MIN_UNUSED_TOKEN_DAYS = 7  # owners are told 7 days before a token is ended for not being used
UNUSED_TOKEN_NOTICE_DAYS = 7


def list_of_default_reminder_days() -> list[int]:
    return [7, 1]


class Tenant(models.Model):
    """An organisation: its users, their grants and their tokens live inside it."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    pat_max_lifetime_days = models.PositiveSmallIntegerField(
        "maximum personal access token lifetime (days)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_TOKEN_LIFETIME_DAYS)],
        help_text="Leave empty for the service maximum of one year.",
    )
    reminder_days = models.JSONField(
        "expiry reminders (days before)",
        default=list_of_default_reminder_days,
        blank=True,
        help_text="Owners are emailed this many days before a token expires, e.g. [7, 1]. Empty: no reminders.",
    )
    token_requests_per_minute = models.PositiveIntegerField(
        "requests per minute per token",
        default=600,
        validators=[MinValueValidator(1)],
        help_text="Requests a single token may make per minute (429 beyond).",
    )
    notify_new_ip = models.BooleanField("email owners when a token is used from a new address", default=True)
    admins_may_issue_pats_via_api = models.BooleanField(
        "administrators may issue PATs through the API",
        default=False,
        help_text="Off by default: administrators do not create tokens for users (Thinkwise).",
    )
    unused_token_days = models.PositiveSmallIntegerField(
        "end tokens not used for (days)",
        null=True,
        blank=True,
        validators=[MinValueValidator(MIN_UNUSED_TOKEN_DAYS), MaxValueValidator(MAX_TOKEN_LIFETIME_DAYS)],
        help_text="Off when empty. A token never used counts from its creation; its owner is told 7 days before.",
    )
    allowed_networks = models.JSONField(
        "allowed networks",
        default=list,
        blank=True,
        help_text="CIDR ranges every token of the tenant must be used from (one per line). Empty: any address.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                name="tenant_pat_max_lifetime_in_range",
                condition=models.Q(pat_max_lifetime_days__isnull=True)
                | models.Q(pat_max_lifetime_days__gte=1, pat_max_lifetime_days__lte=MAX_TOKEN_LIFETIME_DAYS),
            ),
            models.CheckConstraint(
                name="tenant_unused_token_days_in_range",
                condition=models.Q(unused_token_days__isnull=True)
                | models.Q(
                    unused_token_days__gte=MIN_UNUSED_TOKEN_DAYS, unused_token_days__lte=MAX_TOKEN_LIFETIME_DAYS
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def max_token_lifetime_days(self) -> int:
        return self.pat_max_lifetime_days or MAX_TOKEN_LIFETIME_DAYS


class Application(models.Model):
    """A business application whose API accepts tokens issued here."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    embed_url = models.URLField(
        blank=True, help_text="Where the application's embeddable page lives; it receives the embed session."
    )
    embed_parent_origins = models.TextField(
        blank=True,
        help_text="Origins allowed to frame the application (one per line, e.g. https://portal.example.com).",
    )
    tenants = models.ManyToManyField(Tenant, through="TenantApplication", related_name="applications")
    gateway_hosts = models.TextField(
        "gateway host names",
        blank=True,
        help_text="Host names the gateway (forward authentication) protects for this application, one per line, "
        "e.g. crm.example.com. A proxy may name the application with X-IAM-Application instead.",
    )
    gateway_default = models.CharField(
        "when no route rule matches",
        max_length=5,
        choices=[("deny", "Deny the request"), ("allow", "Allow any valid token of the application")],
        default="deny",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TenantApplication(models.Model):
    """An application made available in a tenant, with its PAT switch.

    ``allows_pats`` governs both creating and using personal access tokens
    for the application in the tenant (Thinkwise: "Allow personal access tokens").
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="application_links")
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="tenant_links")
    allows_pats = models.BooleanField("allow personal access tokens", default=False)

    class Meta:
        verbose_name = "application in tenant"
        verbose_name_plural = "applications in tenants"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "application"], name="tenant_application_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.application} in {self.tenant}"


def parse_origins(text: str) -> list[str]:
    """Return the origins in a whitespace- or comma-separated list."""
    return [origin.rstrip("/") for origin in text.replace(",", " ").split() if origin]


class RouteRule(models.Model):
    """One rule of an application's gateway: requests with this method and a
    path matching the pattern need every listed permission (none listed: any
    valid token of the application). The first matching rule decides."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="route_rules")
    position = models.PositiveIntegerField(default=0, help_text="Rules are tried in this order, lowest first.")
    method = models.CharField(max_length=10, default="*", help_text="GET, POST, … or * for any method.")
    path = models.CharField(
        max_length=500, help_text="/orders/* matches one segment, /orders/** anything below /orders (and /orders)."
    )
    permissions = models.JSONField(
        "required permissions", default=list, blank=True, help_text="Every code is required; none: any valid token."
    )

    class Meta:
        ordering = ["application", "position", "id"]
        verbose_name = "route rule"

    def __str__(self) -> str:
        return f"{self.method} {self.path}"
