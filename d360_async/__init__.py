"""d360-async: an asyncio client for the Document360 and SmartDocumentor APIs."""

from ._version import __version__

__all__ = ["__version__"]
