"""The fake Document360 server, one room per idea: see `_server` for the map.

`FakeDocument360` (in `_server`) is the public facade; everything else here is private to it.
"""

from ._server import DEFAULT_PROJECT_ID, FakeDocument360

__all__ = ["DEFAULT_PROJECT_ID", "FakeDocument360"]
