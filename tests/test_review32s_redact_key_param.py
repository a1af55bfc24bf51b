"""Review 32s: ``key=sk%2D...`` (a percent-encoded key in a query string a log line or an error
echoes without its ``?``) was not redacted: the ``key=`` pattern wanted a leading ``?`` or ``&``.
An ``api_key=`` value percent-encoded kept its tail after the first escape (``%2B1234``)."""

from __future__ import annotations

import pytest

from core.redact import redact

SK = "sk%2Dreview32sabcdefghij0123"


@pytest.mark.parametrize("text", [
    f"key={SK}",
    f"GET /v1/models key={SK} 401",
    f'"key={SK}"',
    "token=ya29abcdefghijklmnop0123",
    "x-api-key=abcdefghij0123456789",
])
def test_a_credential_parameter_outside_a_query_is_redacted(text: str) -> None:
    said = redact(text)
    assert "[REDACTED]" in said and "review32s" not in said and "0123" not in said, said


@pytest.mark.parametrize(("text", "masked"), [
    (f"https://api.example/v1?api_key={SK}&x=1", "https://api.example/v1?api_key=[REDACTED]&x=1"),
    ("api_key=abcdefgh%2B1234%2F5678", "api_key=[REDACTED]"),
    ("apikey: abc%2Ddef%2Bxyz", "apikey: [REDACTED]"),
])
def test_a_percent_encoded_value_is_masked_whole(text: str, masked: str) -> None:
    assert redact(text) == masked


@pytest.mark.parametrize("text", [
    "the key=value form",
    "pass key=value pairs, token=abc or code=42",
    "a monkey=abcdefghijklmnop0123 is a word that ends in key",
    "key=configuration_name",
])
def test_prose_with_key_equals_is_left_alone(text: str) -> None:
    assert redact(text) == text
