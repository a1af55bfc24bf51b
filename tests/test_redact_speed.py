"""Redaction of a blob (an image given inline as base64): the same text out as the general path,
without scanning megabytes of it pattern by pattern (that took ~26 s for a 25 MB image, before the
job could even say it was too large). Timings live in the report, not here: these tests check what
comes out, and that a blob does not take the general path."""

from __future__ import annotations

import base64
import random
import string

import pytest

B64 = string.ascii_letters + string.digits + "+/"
UPPER = string.ascii_uppercase + string.digits
VALUES = frozenset({"Q1w2E3r4t5", "abc+def/ghi=", "sk-live-0123456789abcdef", "pw;base64,AAAA"})
HEADS = ["", "data:image/png;base64,", "DATA:IMAGE/JPEG;BASE64,", "data:image/svg+xml;base64,",
         "data:image/x-sk-0123456789abcdefgh;base64,", "data:image/x-pw;base64,"]


def _chars(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choices(alphabet, k=n))


def _plant(rng: random.Random) -> str:
    """A piece of base64 that a pattern or a secret value may match, or nearly."""
    kind = rng.randrange(9)
    if kind == 0:
        return "AIza" + _chars(rng, B64 if rng.random() < 0.5 else string.ascii_letters, rng.randint(27, 36))
    if kind == 1:
        return rng.choice(["AKIA", "ASIA"]) + _chars(rng, UPPER, rng.randint(14, 18))
    if kind == 2:
        return rng.choice(["bearer", "Bearer", "BEARER"]) + rng.choice(["\n", " ", "\r\n", ""]) + _chars(rng, B64, 10)
    if kind == 3:
        return rng.choice(["password", "passwd", "apikey", "cookie", "secretaccesskey", "authorization", "token"])
    if kind == 4:
        return rng.choice(["Q1w2E3r4t5", "abc+def/ghi", "Q1w2E3r4"])  # values whole and cut short
    if kind == 5:
        return rng.choice(["\n", "\r\n", " ", "\t"])
    return _chars(rng, B64, rng.randint(0, 40))


def _blob(rng: random.Random) -> str:
    body = "".join(_plant(rng) for _ in range(rng.randint(1, 14)))
    body += "=" * rng.randint(0, 2) + rng.choice(["", "\n", "\r\n"])
    return rng.choice(HEADS) + body


def test_a_blob_comes_out_exactly_as_the_general_path_makes_it() -> None:
    """Fuzz: base64 with key shapes, near misses, ``bearer`` before a line break, secret values
    (plain, with ``+/=``, and one only a head can hold) and data: URL heads, through the blob path
    and the general one; each kind of mask must have happened often enough to count."""
    from core.redact import MASK
    from core.redact_blob import _blob_start, _redact_blob
    from core.redact_patterns import _redact_text, _values_pattern

    scan = _values_pattern(VALUES)
    rng = random.Random(29)
    masked = {"AIza": 0, "AKIA/ASIA": 0, "bearer": 0, "value": 0, "head": 0}
    for _ in range(20_000):
        text = _blob(rng)
        start = _blob_start(text)
        assert start is not None, text
        expected = _redact_text(text, scan)
        assert _redact_blob(text, start, scan) == expected, text
        if expected != text:
            masked["AIza"] += "AIza" in text and "AIza" not in expected
            masked["AKIA/ASIA"] += ("AKIA" in text or "ASIA" in text) and expected.count(MASK) > text.count(MASK)
            masked["bearer"] += "bearer" in text.lower() and "bearer" in expected.lower() and MASK in expected
            masked["value"] += "Q1w2E3r4t5" in text or "abc+def/ghi=" in text
            masked["head"] += MASK in expected[:start + 10]
    assert min(masked.values()) >= 20, masked


def test_text_with_characters_base64_lacks_is_no_blob() -> None:
    from core.redact import redact_data
    from core.redact_blob import BLOB_MIN_CHARS, _blob_start

    base = "A" * BLOB_MIN_CHARS
    for text in (base + "=x", base + "-sk", "data:text/plain;base64," + base, base + "?key=1", "x " + base + "\x0b"):
        assert _blob_start(text) is None, text[-12:]
    # and such text keeps its masks: an api_key after a long run of letters
    assert redact_data({"note": base + " api_key=abcdefgh1234"})["note"].endswith("api_key=[REDACTED]")


def test_a_large_blob_keeps_its_secrets_masked_without_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 MB image with a Google key shape in it is masked the same as before, and neither the
    blob nor the text beside it is scanned pattern by pattern (the ~1 s a megabyte that made a
    25 MB image wait 66-107 s for its size error)."""
    import core.redact as redact_module
    import core.redact_blob as redact_blob_module

    rng = random.Random(3)
    key = "AIza" + "SyA" + "x" * 33
    body = base64.b64encode(rng.randbytes(1024 * 1024)).decode()
    image = "data:image/png;base64," + body[:1000] + "+" + key + "/" + body[1000:]
    data = {"image": image, "images": [{"image": body}], "note": "plain words", "n": 2}
    expected = {**data, "image": image.replace(key, redact_module.MASK), "images": [{"image": body}]}
    general = []

    def counting(text: str, scan: object) -> str:
        general.append(len(text))
        return original(text, scan)

    original = redact_module._redact_text
    monkeypatch.setattr(redact_module, "_redact_text", counting)
    monkeypatch.setattr(redact_blob_module, "_redact_text", counting)
    assert redact_module.redact_data(data) == expected
    assert general, "the general path was not patched where redact_data calls it"
    assert all(n < 100 for n in general), general  # at most the data: URL's head


def test_a_secret_value_inside_a_blob_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.redact import redact, redact_data
    from core.redact_blob import BLOB_MIN_CHARS

    monkeypatch.setenv("BLOB_TEST_API_KEY", "Zq9Xw8Vc7Bn6")
    blob = "A" * BLOB_MIN_CHARS + "Zq9Xw8Vc7Bn6" + "B" * 8 + "=="
    assert redact_data({"image": blob})["image"] == "A" * BLOB_MIN_CHARS + "[REDACTED]" + "B" * 8 + "=="
    assert redact(blob) == "A" * BLOB_MIN_CHARS + "[REDACTED]" + "B" * 8 + "=="
