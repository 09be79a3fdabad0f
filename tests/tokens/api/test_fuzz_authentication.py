"""Property-based tests of the Authorization header: whatever arrives, nothing
crashes, and only the exact valid token authenticates."""

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from tokens import keys

pytestmark = pytest.mark.django_db

LOOKALIKES = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "0": "О", "_": "‗"}  # Cyrillic etc.


@st.composite
def mangled(draw, token: str) -> str:
    """The valid token, changed a little: a character replaced, dropped, added, or a look-alike."""
    chars = list(token)
    index = draw(st.integers(0, len(chars) - 1))
    action = draw(st.sampled_from(["replace", "drop", "insert", "lookalike", "case", "space"]))
    if action == "replace":
        chars[index] = draw(st.characters(blacklist_characters=chars[index]))
    elif action == "drop":
        del chars[index]
    elif action == "insert":
        chars.insert(index, draw(st.characters()))
    elif action == "lookalike":
        swappable = [i for i, c in enumerate(chars) if c in LOOKALIKES]
        if not swappable:
            return token + "x"
        i = draw(st.sampled_from(swappable))
        chars[i] = LOOKALIKES[chars[i]]
    elif action == "case":
        chars[index] = chars[index].swapcase() if chars[index].swapcase() != chars[index] else chars[index] + "x"
    else:
        chars.insert(index, draw(st.sampled_from([" ", "\t", "\u00a0", "\u200b", "\n"])))
    return "".join(chars)


def headers(token: str):
    schemes = st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", "Api-Key", "", "Bearer Bearer"])
    separators = st.sampled_from([" ", "  ", "\t", "", " \u200b"])
    return st.one_of(
        st.text(),
        st.binary(max_size=300).map(lambda raw: raw.decode("latin-1")),
        st.builds(lambda s, sep, value: f"{s}{sep}{value}", schemes, separators, mangled(token)),
        st.builds(lambda s, value: f"{s} {value}", schemes, st.text(max_size=200)),
        st.text(min_size=5000, max_size=20000),
        st.just(f"Bearer {token}"),
        st.just(f"Bearer {token} "),
        st.just(f"Bearer {token},Bearer {token}"),
    )


@pytest.fixture
def valid_token(world):
    return world.issue("fuzzed").plaintext


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_only_the_exact_token_authenticates_and_nothing_crashes(valid_token, data):
    header = data.draw(headers(valid_token))
    cache.clear()  # keep the per-address failure limit out of the picture
    response = APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=header)
    assert response.status_code in (200, 400, 401), response.status_code
    scheme, _, rest = header.partition(" ")
    exact = scheme.lower() == "bearer" and rest == valid_token
    assert (response.status_code == 200) == exact, header[:80]
    if response.status_code == 401:
        assert response.json()["error"]["code"] in ("invalid_token", "not_authenticated")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_is_well_formed_never_raises_and_accepts_only_our_shape(text):
    result = keys.is_well_formed(text)
    assert isinstance(result, bool)
    if result:
        assert text.startswith("pat_") and len(text) == keys.TOKEN_LENGTH and text.isascii()
