"""The same trivial DRF endpoint behind each authentication under test."""

import json
from pathlib import Path

from django.conf import settings
from django.contrib.auth.hashers import check_password
from rest_framework.authentication import BaseAuthentication, TokenAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from tokens.authentication import BearerTokenAuthentication
from tokens.models import PersonalAccessToken

# display prefix -> Argon2 hash of the token; written by the benchmark, read by every server process.
ARGON2_FILE = Path(settings.BASE_DIR, "var", "bench-argon2.json")
ARGON2_HASHES: dict[str, str] = {}


def argon2_hashes() -> dict[str, str]:
    if not ARGON2_HASHES and ARGON2_FILE.exists():
        ARGON2_HASHES.update(json.loads(ARGON2_FILE.read_text()))
    return ARGON2_HASHES


class Argon2TokenAuthentication(BaseAuthentication):
    """A token stored like a password: look it up, then verify with Argon2."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        token = header.removeprefix("Bearer ")
        stored = argon2_hashes().get(token[:10])
        if stored is None or not check_password(token, stored):
            return None
        pat = PersonalAccessToken.objects.select_related("owner").filter(display_prefix=token[:10]).first()
        return (pat.owner, pat) if pat else None


class Ping(APIView):
    def get(self, request):
        return Response({"ok": True})


class NoAuth(Ping):
    authentication_classes = []
    permission_classes = [AllowAny]


class Ours(Ping):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated]


class DrfToken(Ping):
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]


def knox_view():
    from knox.auth import TokenAuthentication as KnoxAuthentication

    class Knox(Ping):
        authentication_classes = [KnoxAuthentication]
        permission_classes = [IsAuthenticated]

    return Knox


def api_key_view():
    from rest_framework_api_key.permissions import HasAPIKey

    class ApiKey(Ping):
        authentication_classes = []
        permission_classes = [HasAPIKey]

    return ApiKey


class Argon2(Ping):
    authentication_classes = [Argon2TokenAuthentication]
    permission_classes = [IsAuthenticated]


VIEWS = {
    "none": NoAuth,
    "pat": Ours,
    "pat_networks": Ours,  # a PAT bound to three CIDR ranges, the request's address in the last
    "jwt": Ours,
    "drf_token": DrfToken,
    "knox": None,
    "api_key": None,
    "argon2": Argon2,
}


def view_for(variant: str):
    if variant == "knox":
        return knox_view()
    if variant == "api_key":
        return api_key_view()
    return VIEWS[variant]
