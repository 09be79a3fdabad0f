"""Signing and verifying the access tokens the token exchange issues: RS256
JWTs whose keys come from ``JWT_SIGNING_KEYS`` (the first signs; all are
published in the JWKS, so tokens signed before a rotation still verify)."""

from functools import cache

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.conf import settings
from django.core.signals import setting_changed

from tenants.models import Application

ALGORITHM = "RS256"
# RFC 9068 §2.1: the media type of a JWT access token, in its header; checked on the way in (§4), so
# no other JWT signed with these keys (an ID token, a client assertion) passes for an access token.
ACCESS_TOKEN_TYP = "at+jwt"
ACCESS_TOKEN_TYPS = {ACCESS_TOKEN_TYP, f"application/{ACCESS_TOKEN_TYP}"}


@cache
def _signing_keys() -> list[tuple[str, object]]:
    return [(kid, _load_private(pem)) for kid, pem in settings.JWT_SIGNING_KEYS.items()]


def _load_private(pem: str):
    return load_pem_private_key(pem.encode(), password=None)


def _reset_keys(*, setting: str, **kwargs) -> None:
    if setting == "JWT_SIGNING_KEYS":
        _signing_keys.cache_clear()


setting_changed.connect(_reset_keys)


def jwks() -> dict:
    """The public signing keys (RFC 7517), current first; rotated-out keys stay
    published while tokens they signed can still be alive."""
    published = []
    for kid, private in _signing_keys():
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        published.append({**jwk, "kid": kid, "use": "sig", "alg": ALGORITHM})
    return {"keys": published}


def issuer() -> str:
    return settings.PUBLIC_URL


def api_audience() -> str:
    """The audience of this service's own API."""
    return settings.PUBLIC_URL


def application_audience(application: Application) -> str:
    return application_audience_of(application.pk)


def application_audience_of(application_id: object) -> str:
    return f"urn:iam:application:{application_id}"


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and len(value) < 8192


def access_token_claims(value: str, *, audience: str | list[str] | None = None) -> dict | None:
    """Return the verified claims of one of our access tokens (for ``audience``,
    or for any of a list), or None."""
    try:
        header = jwt.get_unverified_header(value)
        keys_by_id = dict(_signing_keys())
        key = keys_by_id.get(header.get("kid"))
        if key is None or header.get("alg") != ALGORITHM:
            return None
        if str(header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPS:
            return None
        return jwt.decode(
            value,
            key.public_key(),
            algorithms=[ALGORITHM],
            issuer=issuer(),
            audience=audience,
            options={
                "require": ["iss", "exp", "aud", "sub", "client_id", "iat", "jti", "pat_id"],
                "verify_aud": audience is not None,
            },
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        return None


def access_token_sign(claims: dict) -> str:
    """Sign ``claims`` with the current key."""
    kid, key = _signing_keys()[0]
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid, "typ": ACCESS_TOKEN_TYP})
