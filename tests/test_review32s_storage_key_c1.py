"""Review 32s: ``check_key`` refused C0 control characters and DEL but took C1 ones (U+0080 to
U+009F: U+0085 is a newline to some readers, U+009B a terminal's CSI), in a storage key and in an
S3 ``prefix`` alike."""

from __future__ import annotations

import pytest

from core.errors import InputError
from core.storage_keys import check_key, check_prefix


@pytest.mark.parametrize("char", ["\x80", "\x85", "\x9b", "\x9f"])
def test_a_c1_control_character_is_refused_naming_the_field(char: str) -> None:
    with pytest.raises(InputError) as refused:
        check_key(f"jobs/a{char}b.png", field="images[0].key")
    assert refused.value.field == "images[0].key" and "control character" in str(refused.value)
    with pytest.raises(InputError) as refused:
        check_prefix(f"team{char}/")
    assert refused.value.field == "prefix"


def test_the_characters_around_c1_are_still_taken() -> None:
    assert check_key("jobs/caf\xe9\xa0x-\x7e.png") == "jobs/caf\xe9\xa0x-\x7e.png"  # é, NBSP, ~
