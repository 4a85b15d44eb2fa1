"""Keeping credentials out of everything the library prints, raises or logs.

Three kinds of secret pass through the client: the V3 bearer token, the V2 ``api_token``, and
signatures embedded in URLs (the export ``download_url`` carries a SAS token valid 30 minutes
that authorises whoever holds the link, per the vendor's export-status page). The rules:

* URLs are redacted *once*, when a `Response` or an error is
  built, so nothing downstream can leak a signature by formatting a URL.
* Tokens live in `Secret`, whose ``repr``/``str`` never show the value and which refuses
  to be pickled, so a token cannot escape through a debugger, a log record or a checkpoint.
* Rate-limit keys and logs identify a token by `fingerprint`, a short one-way digest.
* Free text from a server (an error body that echoes the request) goes through `scrub`
  before it reaches a message, a `repr`, a log record or the CLI: it replaces the value of
  every live `Secret` (each registers itself, weakly, when created), `Bearer` credentials and
  the values of secret-bearing `name=value` pairs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import urllib.parse
import weakref
from collections.abc import Iterable
from typing import Any, NoReturn, final

__all__ = [
    "REDACTED",
    "SECRET_QUERY_PARAMETERS",
    "UNPARSABLE_URL",
    "RedactingFilter",
    "Secret",
    "fingerprint",
    "library_logger",
    "redact_text",
    "redact_url",
    "scrub",
    "secret_query_values",
]

REDACTED = "REDACTED"
"""What the value of a secret-bearing query parameter is replaced with."""

UNPARSABLE_URL = "<unparsable URL>"
"""Returned by `redact_url` for a URL it cannot take apart safely."""

# Compared case-insensitively. Azure SAS tokens (sv, se, st, sp, sig, skoid, sktid, skt, ske,
# sks, skv) sign the export download links; the AWS and GCS presigned-URL parameters are here in
# case storage moves; the rest are the usual ways an API token or OAuth secret rides in a URL.
_SAS_FIELDS: frozenset[str] = frozenset(
    {"se", "st", "sp", "sv", "skoid", "sktid", "skt", "ske", "sks", "skv"}
)
# The parameters whose value alone is a credential (the other SAS fields are dates, versions
# and flags, which appear in ordinary text).
_SIGNATURE_PARAMETERS: frozenset[str] = frozenset(
    {
        "sig",
        "signature",
        "token",
        "access_token",
        "api_token",
        "apitoken",
        "key",
        "code",
        "client_secret",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
    }
)
SECRET_QUERY_PARAMETERS: frozenset[str] = _SAS_FIELDS | _SIGNATURE_PARAMETERS


# URLs that redaction leaves unchanged (the API's own, with no secret in them), remembered so
# the second redaction of a request's URL (when its Response is built) is a dict lookup. Only
# such fixed points are kept, so the memo never holds a secret; it is emptied when full.
_UNCHANGED: dict[str, str] = {}
_UNCHANGED_MAX = 1024


def redact_url(url: str) -> str:
    """Return ``url`` without userinfo and with secret query values replaced by ``REDACTED``.

    Everything else (scheme, host, port, path, harmless parameters, their order and their
    original percent-encoding) is kept byte for byte, so the result stays useful in a log. The
    fragment is treated like a query, because OAuth implicit flows put tokens there.

    It never raises: a URL that cannot be split (``http://[::1``) becomes
    `UNPARSABLE_URL`, because guessing where its query starts could leak one. Applying it
    twice gives the same result as applying it once.
    """
    if type(url) is not str:
        return _redact_url(url)
    known = _UNCHANGED.get(url)
    if known is not None:
        return known
    result = _redact_url(url)
    if result == url:
        if len(_UNCHANGED) >= _UNCHANGED_MAX:
            _UNCHANGED.clear()
        _UNCHANGED[result] = result
    return result


def _redact_url(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
        # "user:password@host": the password is a credential, the user name often an e-mail.
        netloc = parts.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit(
            (
                parts.scheme,
                netloc,
                parts.path,
                _redact_pairs(parts.query),
                _redact_pairs(parts.fragment),
            )
        )
    except Exception:
        return UNPARSABLE_URL


def _redact_pairs(query: str) -> str:
    """Redact ``name=value`` pairs in place, without re-encoding anything else."""
    if not query:
        return query
    pieces = query.split("&")
    for index, piece in enumerate(pieces):
        name, equals, _value = piece.partition("=")
        if equals and urllib.parse.unquote_plus(name).strip().lower() in SECRET_QUERY_PARAMETERS:
            pieces[index] = f"{name}={REDACTED}"
    return "&".join(pieces)


def fingerprint(secret: str) -> str:
    """A short, stable, one-way identifier for a credential, safe to log and to store.

    Used as the token part of rate-limit keys so that two clients sharing a token share a budget
    without the token ever reaching Redis or a log line.
    """
    return "fp:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


@final
class Secret:
    """A credential that never shows itself by accident.

    ``repr``, ``str`` and f-strings print ``Secret('…')``; only `get` returns the value.
    Equality compares values in constant time; pickling and copying through ``__reduce__`` are
    refused, so a token cannot end up in a checkpoint file.
    """

    __slots__ = ("__weakref__", "_value")

    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)
        if value:
            with _LIVE_LOCK:
                _LIVE.add(self)

    def get(self) -> str:
        """Return the wrapped value: call this only where the credential is sent."""
        return self._value

    @property
    def fingerprint(self) -> str:
        """`fingerprint` of the value."""
        return fingerprint(self._value)

    def __repr__(self) -> str:
        return "Secret('…')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode("utf-8"), other._value.encode("utf-8"))

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret refuses to be pickled: store the token somewhere meant for it")


def redact_text(text: str, secrets: Iterable[str | Secret]) -> str:
    """Replace every occurrence of each secret in ``text`` with ``***``.

    The last line of defence for free text (a server message, an exception from a token
    provider) that might echo a credential. Percent-encoded forms are replaced too, since a
    token that went into a URL comes back encoded. Empty secrets are ignored.
    """
    values: set[str] = set()
    for secret in secrets:
        value = secret.get() if isinstance(secret, Secret) else secret
        if value:
            values.add(value)
            values.add(urllib.parse.quote(value, safe=""))
            values.add(urllib.parse.quote_plus(value, safe=""))
    # Longest first, so a secret that contains another is replaced whole.
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


# Every Secret alive in the process, so that `scrub` can remove it from text built
# anywhere (an error message, a log line) without that code holding the credential. Weak: a
# Secret dropped by its owner leaves the set, and nothing here keeps a credential alive.
_LIVE: weakref.WeakSet[Secret] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()  # a Secret may be created in a worker thread while we iterate

_MIN_SCRUBBED = 6
"""Live secrets and signature values shorter than this are not searched for in free text: a
three-letter test token would otherwise be cut out of ordinary words."""


_SECRET_NAMES = "|".join(
    re.escape(name) for name in sorted(SECRET_QUERY_PARAMETERS, key=len, reverse=True)
)
# ``sig=abc``, ``api_token: abc``, ``"sig": "abc"``, ``Bearer abc``: a name that marks a
# secret, a separator, and the value up to the next delimiter. The name must not be the tail
# of a longer word ("episode=3" is not "se=3").
_NAMED_VALUE = re.compile(
    rf"""(?<![A-Za-z0-9_.\-])((?:{_SECRET_NAMES})(?:["']?\s*[=:]\s*["']?|%3D))"""
    r"""(?!REDACTED|\*\*\*)[^\s&"'<>,;)}\]]+""",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?<![A-Za-z0-9])((?:bearer|basic)\s+)(?!\*\*\*)[A-Za-z0-9\-._~+/]+=*", re.I)
_HEADER_VALUE = re.compile(
    r"""(?<![A-Za-z0-9_\-])((?:authorization|api_token|x-api-key|cookie|set-cookie)"""
    r"""["']?\s*[=:]\s*["']?)(?!\*\*\*)[^\s"',;}\]][^"'\r\n,;}\]]*""",
    re.IGNORECASE,
)


def secret_query_values(url: str) -> tuple[str, ...]:
    """The values of the secret-bearing query (and fragment) parameters of ``url``.

    A server that echoes a request may repeat a signature without its name; the caller wraps
    these in `Secret` for as long as the request runs, so `scrub` knows them.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return ()
    found: list[str] = []
    for query in (parts.query, parts.fragment):
        for piece in query.split("&") if query else ():
            name, _, value = piece.partition("=")
            if (
                len(value) >= _MIN_SCRUBBED
                and urllib.parse.unquote_plus(name).strip().lower() in _SIGNATURE_PARAMETERS
            ):
                found.append(urllib.parse.unquote_plus(value))
                found.append(value)
    return tuple(found)


def scrub(text: str, secrets: Iterable[str | Secret] = ()) -> str:
    """Remove every credential this process holds from free text, and anything shaped like one.

    Applies `redact_text` with ``secrets`` plus every live `Secret`, then replaces
    ``Bearer``/``Basic`` credentials, the values of headers that carry credentials
    (``Authorization``, ``api_token``, cookies) and of secret-bearing ``name=value`` pairs
    (``sig=``, ``token=``; see `SECRET_QUERY_PARAMETERS`) with ``***`` or ``REDACTED``.
    It never raises and applying it twice changes nothing more.
    """
    if not isinstance(text, str) or not text:
        return text
    with _LIVE_LOCK:
        held = list(_LIVE)
    live = [secret for secret in held if len(secret.get()) >= _MIN_SCRUBBED]
    text = redact_text(text, [*secrets, *live])
    text = _BEARER.sub(r"\1***", text)
    text = _HEADER_VALUE.sub(r"\1***", text)
    return _NAMED_VALUE.sub(r"\1" + REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record of the library through `scrub`.

    The message is formatted once (``msg % args``) and scrubbed, and a traceback attached to
    the record is formatted and scrubbed into ``exc_text``, which formatters print instead of
    formatting the exception again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the record's message (and its traceback text) in place; always keep it."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


_FILTER = RedactingFilter()


def library_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the `RedactingFilter` attached (once)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
