"""Layer 3, the resources: typed endpoint groups (``client.drive``, ``.exports``, ``.imports``,
``.api_references``, ``.v2``) and the targets they build for the watch.

What it may import: `d360_async._transport`, the `RateLimiter` protocol and everything else in
`d360_async._core`. Never the limiters' implementations, the watch or the clients.
"""

from __future__ import annotations

from d360_async._resources._resource_target import (
    ResourceTarget,
    TargetSource,
    registered_kinds,
    target_from_spec,
)
from d360_async._resources.api_references import ApiReferencesResource
from d360_async._resources.drive import DriveResource
from d360_async._resources.exports import DownloadProgress, ExportsResource
from d360_async._resources.imports import ImportsResource
from d360_async._resources.v2 import V2ExportsResource, V2ImportsResource, V2Resource

__all__ = [
    "ApiReferencesResource",
    "DownloadProgress",
    "DriveResource",
    "ExportsResource",
    "ImportsResource",
    "ResourceTarget",
    "TargetSource",
    "V2ExportsResource",
    "V2ImportsResource",
    "V2Resource",
    "registered_kinds",
    "target_from_spec",
]
