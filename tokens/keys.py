"""Token format and keyed hashing.

Format (GitHub's 2021 design): ``pat_`` + 30 random base62 characters (about
178 bits from ``secrets``) + a 6-character base62 CRC32 of everything before
it. The checksum lets us refuse a mistyped or truncated token without a
database query and lets secret scanners recognise ours; it is not secret and
its check reveals nothing an attacker could not compute themselves.

Only an HMAC-SHA256 of the token under a server pepper is stored. Tokens have
enough entropy that a slow password hash adds nothing but ~100 ms a request.
"""

import functools
import hashlib
import hmac
import re
import secrets
import string
import zlib
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings

Found = TypeVar("Found")

PREFIX = "pat_"
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
RANDOM_LENGTH = 30
CHECKSUM_LENGTH = 6
TOKEN_LENGTH = len(PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH
DISPLAY_PREFIX_LENGTH = len(PREFIX) + 6

# Other secrets of the service share the format with their own prefixes, so
# scanners can tell them apart: integration credentials, embed sessions,
# OAuth client secrets.
CREDENTIAL_PREFIX = "itc_"
EMBED_SESSION_PREFIX = "emb_"
CLIENT_SECRET_PREFIX = "ocs_"
_BODY_RE = re.compile(rf"[a-z]{{3}}_[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}", re.ASCII)


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    return "".join(reversed(digits)).rjust(width, BASE62[0])


def checksum(body: str) -> str:
    """Return the 6-character base62 CRC32 of ``body``."""
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def generate(prefix: str = PREFIX) -> str:
    """Return a new random secret in plaintext (a PAT unless another prefix is given)."""
    body = prefix + "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))
    return body + checksum(body)


def is_well_formed(token: str, prefix: str = PREFIX) -> bool:
    """Return True if ``token`` has our exact shape, the prefix and a valid checksum."""
    if len(token) != TOKEN_LENGTH or not token.startswith(prefix) or not _BODY_RE.fullmatch(token):
        return False
    body, check = token[:-CHECKSUM_LENGTH], token[-CHECKSUM_LENGTH:]
    return hmac.compare_digest(checksum(body), check)


def display_prefix(token: str) -> str:
    """Return the short, non-secret start of a token that identifies it to people."""
    return token[:DISPLAY_PREFIX_LENGTH]


def current_pepper_id() -> str:
    return next(iter(settings.TOKEN_PEPPERS))


def digest(token: str, pepper_id: str | None = None) -> str:
    """Return the hex HMAC-SHA256 of ``token`` under a pepper (the current one by default)."""
    mac = _keyed(settings.TOKEN_PEPPERS[pepper_id or current_pepper_id()]).copy()
    mac.update(token.encode("ascii"))
    return mac.hexdigest()


@functools.lru_cache(maxsize=8)
def _keyed(pepper: bytes):
    """An HMAC already keyed with ``pepper``, to copy: keying costs as much as
    hashing the token, and every authentication hashes one."""
    return hmac.new(pepper, digestmod=hashlib.sha256)


def find_by_secret(queryset, secret: str, prefix: str = PREFIX):
    """Return the row of ``queryset`` whose ``digest`` is the secret's under any
    pepper, or None; malformed secrets cost no query."""
    return match_secret(secret, prefix, lambda digests: queryset.filter(digest__in=digests).first())


def match_secret(secret: str, prefix: str, fetch: Callable[[list[str]], Found | None]) -> Found | None:
    """The one way a secret is looked up: refused without a query when
    malformed, fetched by its digest under every pepper (``fetch`` returns
    something with the stored ``digest``, or None), and that digest compared
    in constant time."""
    if not is_well_formed(secret, prefix):
        return None
    digests = candidate_digests(secret)
    found = fetch(digests)
    if found is None or not any(hmac.compare_digest(found.digest, candidate) for candidate in digests):
        return None
    return found


def rehash_on_use(row, secret: str, field: str = "digest") -> None:
    """Move a row hashed under a retired pepper to the current one when its
    secret is used, so the old pepper can be retired (``pepper_usage`` counts
    what is left). The filter on the old digest makes concurrent uses write once."""
    if row.pepper_id == current_pepper_id():
        return
    type(row)._default_manager.filter(pk=row.pk, **{field: getattr(row, field)}).update(
        **{field: digest(secret), "pepper_id": current_pepper_id()}
    )


def candidate_digests(token: str) -> list[str]:
    """Return the token's digest under every configured pepper, current first,
    so tokens issued before a pepper rotation keep working."""
    return [digest(token, pepper_id) for pepper_id in settings.TOKEN_PEPPERS]
