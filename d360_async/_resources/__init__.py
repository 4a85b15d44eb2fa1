"""Typed endpoint groups: ``client.drive``, ``.exports``, ``.imports``, ``.api_references``,
``.v2``; and the targets they build for the watch."""

from __future__ import annotations

from ._base import MissingCredential
from ._targets import TARGET_KINDS, ResourceTarget, target_from_spec
from .api_references import ApiReferencesResource
from .drive import DriveResource
from .exports import DownloadProgress, ExportNotReady, ExportsResource
from .imports import ImportsResource
from .v2 import V2ExportsResource, V2ImportsResource, V2Resource

__all__ = [
    "TARGET_KINDS",
    "ApiReferencesResource",
    "DownloadProgress",
    "DriveResource",
    "ExportNotReady",
    "ExportsResource",
    "ImportsResource",
    "MissingCredential",
    "ResourceTarget",
    "V2ExportsResource",
    "V2ImportsResource",
    "V2Resource",
    "target_from_spec",
]
