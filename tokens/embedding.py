"""Embed sessions: an embedding token is exchanged for a short browser
session of its application (ToolJet's embedding, seed 000)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from iam.audit import audit_record
from iam.models import AuditAction
from tenants.models import Application
from tokens import keys
from tokens.models import EmbedSession, TokenKind
from tokens.verification import TokenContext, credential_use

# The embedding API's documented maximum of a session (seed 000).
MAX_SESSION_MINUTES = 24 * 60


@dataclass(frozen=True)
class OpenedSession:
    session: EmbedSession
    secret: str
    context: TokenContext


@transaction.atomic
def embed_session_open(
    *, plaintext: str, application: Application, ip: str | None = None, now: datetime | None = None
) -> OpenedSession | None:
    """Open an embed session with an embedding token for ``application``, or
    return None if the token is not a usable embedding token of it. The
    session lasts the token's session minutes, never past the token's expiry."""
    now = now or timezone.now()
    context = credential_use(plaintext, ip=ip, now=now, kind=TokenKind.EMBED)
    if context is None or context.token.application_id != application.pk:
        return None
    token = context.token
    expires_at = min(now + timedelta(minutes=token.embed_session_minutes or 60), token.expires_at)
    secret = keys.generate(keys.EMBED_SESSION_PREFIX)
    session = EmbedSession.objects.create(
        token=token, digest=keys.digest(secret), pepper_id=keys.current_pepper_id(), expires_at=expires_at
    )
    audit_record(
        action=AuditAction.EMBED_SESSION_OPENED,
        tenant_id=token.tenant_id,
        actor=token.owner,
        token_id=token.pk,
        ip=ip,
        changes={"application": application.slug, "expires_at": expires_at.isoformat()},
    )
    return OpenedSession(session, secret, context)
