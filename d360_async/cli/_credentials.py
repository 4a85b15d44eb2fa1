"""Credentials come from the environment only.

A token on the command line would be visible to every user of the machine (``ps``) and end up
in shell history, so there is deliberately no ``--token`` option.  Values are never printed:
errors name the variable, not its content.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

import attrs

from d360_async import MissingCredential

from ._kinds import API

__all__ = [
    "API_TOKEN_VAR",
    "SD_CLIENT_ID_VAR",
    "SD_CLIENT_SECRET_VAR",
    "V2_API_TOKEN_VAR",
    "Credentials",
    "read_credentials",
]

API_TOKEN_VAR: Final = "D360_API_TOKEN"
V2_API_TOKEN_VAR: Final = "D360_V2_API_TOKEN"
SD_CLIENT_ID_VAR: Final = "SD_CLIENT_ID"
SD_CLIENT_SECRET_VAR: Final = "SD_CLIENT_SECRET"


@attrs.frozen(slots=True, repr=False)
class Credentials:
    """What one command needs to authenticate; ``repr`` never shows a value."""

    api_token: str | None = None
    v2_api_token: str | None = None
    sd_client_id: str | None = None
    sd_client_secret: str | None = None

    def __repr__(self) -> str:
        present = [f.name for f in attrs.fields(Credentials) if getattr(self, f.name)]
        return f"<Credentials {', '.join(present) or 'none'}>"


def _require(env: Mapping[str, str], name: str, purpose: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise MissingCredential(f"{name} is not set: export it with your {purpose}")
    return value


def read_credentials(api: API, env: Mapping[str, str] | None = None) -> Credentials:
    """The credentials ``api`` needs, from ``env`` (default ``os.environ``).

    Raises:
        MissingCredential: a required variable is unset or blank (exit code 3).
    """
    env = os.environ if env is None else env
    if api is API.V3:
        return Credentials(api_token=_require(env, API_TOKEN_VAR, "Document360 API token"))
    if api is API.V2:
        return Credentials(v2_api_token=_require(env, V2_API_TOKEN_VAR, "Document360 V2 api_token"))
    return Credentials(
        sd_client_id=_require(env, SD_CLIENT_ID_VAR, "SmartDocumentor client id"),
        sd_client_secret=_require(env, SD_CLIENT_SECRET_VAR, "SmartDocumentor client secret"),
    )
