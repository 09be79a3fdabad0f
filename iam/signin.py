"""Sign-in throttling: failed password attempts per client address and per
username tried, in fixed windows (``iam.ratelimit``; fails open if the cache
is down).

Every attempt is counted before the password is checked and a successful one
is refunded, so concurrent guesses cannot slip past the limit between a check
and a count. Over the limit the password is not checked at all.
"""

import hashlib
from dataclasses import dataclass

from django.conf import settings

from iam.ratelimit import rate_limit_hit, rate_limit_refund


@dataclass(frozen=True)
class SignInAttempt:
    keys: tuple[str, ...]
    allowed: bool
    retry_after: int


def _username_key(username: str) -> str:
    # Hashed: people type their password into the username field, and the
    # cache (Redis) is no place for it. Case-insensitive like the sign-in itself.
    return hashlib.sha256(username.strip().casefold().encode()).hexdigest()[:32]


def sign_in_attempt_count(*, ip: str | None, username: str) -> SignInAttempt:
    """Count one sign-in attempt against the address and the username tried;
    return whether it may go on to the password check and, if not, how many
    seconds remain until it may."""
    window = settings.SIGN_IN_WINDOW_SECONDS
    limits = {
        f"sign-in-ip:{ip}": settings.SIGN_IN_FAILURES_PER_IP,
        f"sign-in-username:{_username_key(username)}": settings.SIGN_IN_FAILURES_PER_USERNAME,
    }
    verdicts = [rate_limit_hit(key, limit=limit, window=window) for key, limit in limits.items()]
    refused = [verdict for verdict in verdicts if not verdict.allowed]
    return SignInAttempt(
        keys=tuple(limits), allowed=not refused, retry_after=max((v.retry_after for v in refused), default=0)
    )


def sign_in_attempt_succeeded(attempt: SignInAttempt) -> None:
    """Refund a successful attempt: only failures count towards the limits."""
    for key in attempt.keys:
        rate_limit_refund(key, window=settings.SIGN_IN_WINDOW_SECONDS)
