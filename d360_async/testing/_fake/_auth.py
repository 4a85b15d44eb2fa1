"""Who may call: the credential each API family checks, and the 401 each answers.

V3 takes ``Authorization: Bearer <api_token>``, V2 the ``api_token`` header, SmartDocumentor a
bearer access token from its token endpoint (until it expires on the server clock). A valid
credential yields the rate-limit key it spends from: (token, project) per the vendor's spec,
(token, None) with ``per="token"`` and for V2, (client id,) for SmartDocumentor.
"""

from __future__ import annotations

from collections.abc import Hashable

from aiohttp import web

from ._bodies import problem, v2_envelope
from ._replies import PROBLEM_JSON, Family, Reply
from ._state import FakeState
from ._stats import token_fingerprint

__all__ = ["authenticate", "unauthorized"]


def authenticate(
    state: FakeState, request: web.Request, family: Family, now: float
) -> Hashable | None:
    """The rate-limit key of a valid credential, or ``None`` (answer 401)."""
    project = request.match_info.get("project_id")
    if family == "v2":
        token = request.headers.get("api_token")
    else:
        token = _bearer(request.headers.get("Authorization"))
    state.stats.by_token[token_fingerprint(token) if token else "-"] += 1
    if token is None:
        return None
    if family == "v3":
        if token not in state.v3_tokens:
            return None
    elif family == "v2":
        if token not in state.v2_tokens:
            return None
        project = None
    else:
        entry = state.sd_tokens.get(token)
        if entry is None or entry[0] <= now:
            return None
        return (entry[1],)
    config = state.limiter.config if state.limiter is not None else None
    if config is not None and config.per == "token":
        project = None
    return (token, project)


def unauthorized(state: FakeState, request: web.Request, family: Family) -> Reply:
    """The family's 401, with ``WWW-Authenticate`` as RFC 6750 describes it."""
    # RFC 6750: no error code when no credential was sent; invalid_token otherwise.
    sent = "Authorization" in request.headers or "api_token" in request.headers
    parts = [] if family == "sd" else ['realm="Document360"']
    if sent:
        parts += ['error="invalid_token"', 'error_description="The token is invalid"']
    headers = {"WWW-Authenticate": " ".join(["Bearer", ", ".join(parts)]).strip()}
    if family == "sd" or state.empty_401:
        return Reply(401, headers=headers)
    if family == "v2":
        body = v2_envelope(False, error="Invalid or missing api_token.", error_code="401")
        return Reply(401, payload=body, headers=headers)
    return Reply(
        401, payload=problem(401, state.trace_id()), content_type=PROBLEM_JSON, headers=headers
    )


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
