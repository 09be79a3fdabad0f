"""Sign-in throttling: failed password attempts per client address and per
username tried, in fixed windows (``core.ratelimit``; fails open if the cache
is down).

Every attempt is counted before the password is checked and a successful one
is refunded, so concurrent guesses cannot slip past the limit between a check
and a count. Over the limit the password is not checked at all.
"""

import hashlib
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q

from core.ratelimit import rate_limit_hit, rate_limit_refund
from iam.models import User


@dataclass(frozen=True)
class SignInAttempt:
    keys: tuple[str, ...]
    allowed: bool
    retry_after: int


def normalized_identifier(username: str) -> str:
    """The username or e-mail as the sign-in looks it up: NFKC-normalised, as
    Django's UsernameField does before ``authenticate()`` (a fullwidth
    ``b`` is a ``b``), stripped as the backend does, and case-folded."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def _username_key(username: str) -> str:
    # Hashed: people type their password into the username field, and the
    # cache (Redis) is no place for it.
    return hashlib.sha256(normalized_identifier(username).encode()).hexdigest()[:32]


def _account_id(username: str) -> int | None:
    """The account the sign-in would check, whichever way it was named
    (username or e-mail, any case or compatibility form)."""
    identifier = unicodedata.normalize("NFKC", username).strip()
    if not identifier:
        return None
    return (
        User.objects.filter(Q(username__iexact=identifier) | Q(email__iexact=identifier))
        .values_list("pk", flat=True)
        .first()
    )


def sign_in_attempt_count(*, ip: str | None, username: str) -> SignInAttempt:
    """Count one sign-in attempt against the address and the username tried;
    return whether it may go on to the password check and, if not, how many
    seconds remain until it may."""
    window = settings.SIGN_IN_WINDOW_SECONDS
    limits = {
        f"sign-in-ip:{ip}": settings.SIGN_IN_FAILURES_PER_IP,
        f"sign-in-username:{_username_key(username)}": settings.SIGN_IN_FAILURES_PER_USERNAME,
    }
    account = _account_id(username)
    if account is not None:
        # The same account named another way (its e-mail, another form of its
        # username) shares the limit.
        limits[f"sign-in-account:{account}"] = settings.SIGN_IN_FAILURES_PER_USERNAME
    verdicts = [rate_limit_hit(key, limit=limit, window=window) for key, limit in limits.items()]
    refused = [verdict for verdict in verdicts if not verdict.allowed]
    return SignInAttempt(
        keys=tuple(limits), allowed=not refused, retry_after=max((v.retry_after for v in refused), default=0)
    )


def sign_in_attempt_succeeded(attempt: SignInAttempt) -> None:
    """Refund a successful attempt: only failures count towards the limits."""
    for key in attempt.keys:
        rate_limit_refund(key, window=settings.SIGN_IN_WINDOW_SECONDS)


def wait_text(seconds: int) -> str:
    """How long until the limit lets another attempt through, in words."""
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
