from datetime import datetime, timedelta

from django import template
from django.contrib import admin
from django.utils import timezone

from tokens.idle import unused_end
from tokens.rules import expires_soon as lifetime_expires_soon
from tokens.selectors import approver_names
from tokens.services import token_changeable

register = template.Library()


def _span(delta: timedelta) -> str:
    seconds = abs(int(delta.total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "less than a minute"


@register.filter
def relative_to_now(moment: datetime | None) -> str:
    """“in 3 days” / “2 hours ago”."""
    if moment is None:
        return ""
    delta = moment - timezone.now()
    return f"in {_span(delta)}" if delta.total_seconds() >= 0 else f"{_span(delta)} ago"


@register.filter
def expires_soon(moment: datetime | None, days: int = 7) -> bool:
    """True if ``moment`` is in the future but within ``days`` days."""
    if moment is None:
        return False
    now = timezone.now()
    return now < moment <= now + timedelta(days=days)


@register.filter
def token_expires_soon(token) -> bool:
    """Whether the list flags ``token`` as expiring soon (``tokens.rules.expires_soon``)."""
    return lifetime_expires_soon(created_at=token.created_at, expires_at=token.expires_at, now=timezone.now())


@register.filter
def changeable(token) -> bool:
    """Whether the owner may edit and regenerate ``token`` (``tokens.services.token_changeable``)."""
    return token_changeable(token)


@register.simple_tag
def approvers_of(token) -> str:
    """Who may approve a pending token, by name, as its owner reads them."""
    names = approver_names(token)
    return ", ".join(names) if names else "a main administrator of the service"


@register.filter
def ends_unused_on(token) -> datetime | None:
    """When the tenant's unused-token policy will end ``token`` if nobody uses
    it before (as ``tokens.idle`` computes it), or None if it will not."""
    return unused_end(token, timezone.now())


@register.simple_tag(takes_context=True)
def may_open_console(context) -> bool:
    """Whether the signed-in user may open the console: asked of the console
    itself (``IamAdminSite.has_permission``), so the link and the door agree."""
    request = context.get("request")
    return bool(request is not None and admin.site.has_permission(request))
