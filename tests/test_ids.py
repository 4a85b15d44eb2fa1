"""Path ids are validated locally: nothing URL-significant can ever pass."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from d360_async._core._ids import (
    MAX_TOKEN_LENGTH,
    external_id,
    safe_token,
    sd_task_id,
    uuid_id,
)

# Characters that would change which resource a path addresses, or break out of the path.
URL_SIGNIFICANT = set("/\\?#%&;=+:@!$'()*,[]<>\"{}|^` ") | {".", "\t", "\n", "\r", "\x00"}

HOSTILE = [
    "../other",
    "..",
    ".",
    "a/b",
    "a%2Fb",
    "%2e%2e",
    "a?b=1",
    "a#frag",
    "a b",
    " a",
    "a\n",
    "a\tb",
    "a\\b",
    "",
    "\uff41\uff42\uff43",  # fullwidth letters
    "\u0661\u0662\u0663",  # Arabic-Indic digits
    "x" * (MAX_TOKEN_LENGTH + 1),
]


def _is_clean(text: str) -> bool:
    return text.isascii() and not (set(text) & URL_SIGNIFICANT) and text.isprintable()


@given(st.text())
@example("../etc/passwd")
@example("a%2Fb")
@example("f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b\n")
def test_no_accepted_token_contains_a_url_significant_char(value: str) -> None:
    try:
        accepted = safe_token(value)
    except ValueError:
        return
    assert _is_clean(accepted)
    assert accepted == value
    assert accepted not in ("", ".", "..")


@given(st.text())
@example("{f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b}")
@example("urn:uuid:f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b")
@example("f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b\n")
def test_no_accepted_uuid_contains_a_url_significant_char(value: str) -> None:
    try:
        accepted = uuid_id(value)
    except ValueError:
        return
    assert _is_clean(accepted)
    assert uuid.UUID(accepted)
    assert len(accepted) == 36


@given(st.uuids())
def test_every_uuid_is_accepted_in_canonical_form(value: uuid.UUID) -> None:
    assert uuid_id(value) == str(value)
    assert uuid_id(str(value).upper()) == str(value)
    assert safe_token(value) == str(value)


@given(st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True))
def test_safe_charset_is_accepted(value: str) -> None:
    assert safe_token(value) == value


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_hostile_tokens_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="id"):
        safe_token(value)
    with pytest.raises(ValueError, match="UUID"):
        uuid_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "f1a2b3c4d5e67f890a1b2c3d4e5f6a7b",
        "{f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b}",
        "urn:uuid:f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b",
        "f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7",
        "g1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b",
        12,
        None,
        b"f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b",
    ],
    ids=["no-hyphens", "braces", "urn", "short", "non-hex", "int", "none", "bytes"],
)
def test_non_canonical_uuids_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="UUID"):
        uuid_id(value, name="export_id")


def test_error_names_the_argument() -> None:
    with pytest.raises(ValueError, match="project_id"):
        uuid_id("nope", name="project_id")


def test_v2_vendor_id_is_a_safe_token() -> None:
    assert safe_token("65868a00c536f34594713fec") == "65868a00c536f34594713fec"


@pytest.mark.parametrize("value", [1, 44, 2**40], ids=str)
def test_sd_task_id_accepts_positive_ints(value: int) -> None:
    assert sd_task_id(value) == value


@pytest.mark.parametrize(
    "value",
    [0, -1, True, "44", 4.0, None],
    ids=["zero", "negative", "bool", "text", "float", "none"],
)
def test_sd_task_id_refuses_everything_else(value: object) -> None:
    with pytest.raises(ValueError, match="task_id"):
        sd_task_id(value)


@pytest.mark.parametrize("value", ["INV-2024/001", "a b", "ключ", "x?y#z&w"], ids=repr)
def test_external_ids_may_be_any_printable_text(value: str) -> None:
    # They travel percent-encoded in the query string, never as a path segment.
    assert external_id(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "   ", "a\nb", "a\x00b", "x" * 513, 5],
    ids=["empty", "blank", "nl", "nul", "long", "int"],
)
def test_external_ids_refuse_empty_control_and_huge(value: object) -> None:
    with pytest.raises(ValueError, match="external_id"):
        external_id(value)
