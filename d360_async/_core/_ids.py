"""Local validation of every identifier that goes into a request URL.

An id is interpolated into a path (``/v3/projects/{project_id}/exports/{export_id}``), so a
value such as ``"../other"``, ``"a%2Fb"``, ``"a/b"``, ``"x?y"`` or one with whitespace could
address a different resource than the caller meant.  Every path id therefore passes through
one of these functions *before* any request is built, and a malformed id raises
`ValueError` locally: no request is ever sent for it.

Rules:

* Where the vendor's spec types an id as ``string (uuid)`` (project ids, V3 export ids), only a
  canonical, hyphenated UUID is accepted (or a `uuid.UUID`), and the lowercase canonical
  text is what goes into the URL.
* Every other path id (V3 drive task, import, API-reference and log ids; V2 task, export and
  import ids such as ``65868a00c536f34594713fec``) must be a *safe token*: 1-128 ASCII letters,
  digits, ``_`` or ``-``.  No ``.`` (so no dot segments), ``%``, ``/``, ``?``, ``#``, ``:`` or
  whitespace can pass.
* SmartDocumentor task ids are integers >= 1; external ids travel in the query string (which
  is percent-encoded) and need only be non-empty text without control characters.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

__all__ = [
    "MAX_EXTERNAL_ID_LENGTH",
    "MAX_TOKEN_LENGTH",
    "external_id",
    "safe_token",
    "sd_task_id",
    "uuid_id",
]

MAX_TOKEN_LENGTH: Final = 128
MAX_EXTERNAL_ID_LENGTH: Final = 512

_UUID_RE: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII | re.IGNORECASE
)
_TOKEN_RE: Final = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_TOKEN_LENGTH}}}", re.ASCII)


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Text ids already checked, to their canonical form: a status check sends the same ids again
# and again. Only accepted values are kept (a refused one raises every time); emptied when full.
_CANONICAL: dict[str, str] = {}
_CANONICAL_MAX: Final = 1024


def uuid_id(value: object, *, name: str = "id") -> str:
    """A UUID path id in canonical lowercase form; ``ValueError`` otherwise.

    Accepts a `uuid.UUID` or its hyphenated 36-character text (any case).  Braces,
    ``urn:uuid:`` prefixes and the 32-digit form are refused: they are not what the API
    returns, and refusing them keeps every accepted value free of URL-significant characters.
    """
    if type(value) is str:
        known = _CANONICAL.get(value)
        if known is not None:
            return known
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and _UUID_RE.fullmatch(value):
        # The pattern admits only the hyphenated 8-4-4-4-12 hex form, whose canonical text
        # (``str(uuid.UUID(value))``) is the same characters lower-cased: no parse needed.
        canonical = value.lower()
        if type(value) is str:
            if len(_CANONICAL) >= _CANONICAL_MAX:
                _CANONICAL.clear()
            _CANONICAL[value] = canonical
        return canonical
    raise ValueError(f"{name} must be a UUID, got {_describe(value)}")


def safe_token(value: object, *, name: str = "id") -> str:
    """A path id made of 1-128 ASCII letters, digits, ``_`` or ``-``; ``ValueError`` otherwise.

    UUIDs (as `uuid.UUID` or text) pass, as do the hexadecimal ids the V2 API returns.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and _TOKEN_RE.fullmatch(value):
        return value
    raise ValueError(
        f"{name} must be 1-{MAX_TOKEN_LENGTH} ASCII letters, digits, '_' or '-', "
        f"got {_describe(value)}"
    )


def sd_task_id(value: object) -> int:
    """A SmartDocumentor task id: an ``int`` >= 1 (``bool`` refused); ``ValueError`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"task_id must be an integer >= 1, got {_describe(value)}")


def external_id(value: object) -> str:
    """A SmartDocumentor external id: non-empty text, no control characters, bounded length.

    The vendor lets customers choose any unique string, so the charset is not restricted; the
    value is sent as a percent-encoded query parameter, never as a path segment.
    """
    if (
        isinstance(value, str)
        and value.strip()
        and len(value) <= MAX_EXTERNAL_ID_LENGTH
        and all(ch.isprintable() for ch in value)
    ):
        return value
    raise ValueError(
        f"external_id must be non-empty printable text of at most {MAX_EXTERNAL_ID_LENGTH} "
        f"characters, got {_describe(value)}"
    )
