import math

import pytest
from django.test import override_settings

from tokens import keys


def test_generated_token_has_the_documented_shape():
    token = keys.generate()
    assert token.startswith("pat_")
    assert len(token) == keys.TOKEN_LENGTH == 40
    assert keys.is_well_formed(token)
    # At least 160 random bits in the random part.
    assert keys.RANDOM_LENGTH * math.log2(62) >= 160


def test_tokens_are_unique():
    assert len({keys.generate() for _ in range(2000)}) == 2000


def test_checksum_is_crc32_of_the_body_in_base62():
    token = keys.generate()
    body = token[: -keys.CHECKSUM_LENGTH]
    import zlib

    number = 0
    for char in token[-keys.CHECKSUM_LENGTH :]:
        number = number * 62 + keys.BASE62.index(char)
    assert number == zlib.crc32(body.encode())


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],  # truncated
        lambda t: t + "a",  # too long
        lambda t: t[:10] + ("a" if t[10] != "a" else "b") + t[11:],  # one character mistyped
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # checksum wrong
        lambda t: "PAT_" + t[4:],  # prefix case
        lambda t: t.replace("pat_", "ghp_"),
        lambda t: " " + t[1:],
        lambda t: t[:5] + "é" + t[6:],  # non-ASCII
        lambda t: t[:5] + "٣" + t[6:],  # a Unicode digit
        lambda t: "",
    ],
)
def test_mistyped_or_truncated_tokens_are_not_well_formed(mangle):
    assert not keys.is_well_formed(mangle(keys.generate()))


def test_digest_is_keyed_hmac_and_differs_per_pepper():
    token = keys.generate()
    first, second = keys.candidate_digests(token)
    assert first == keys.digest(token) and first != second
    assert len(first) == 64 and token not in first
    with override_settings(TOKEN_PEPPERS={"other": b"x" * 40}):
        assert keys.digest(token) not in (first, second)


def test_display_prefix_is_short_and_not_the_secret():
    token = keys.generate()
    prefix = keys.display_prefix(token)
    assert token.startswith(prefix) and len(prefix) == 10
