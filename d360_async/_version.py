__version__ = "0.1.0"
"""The installed version of d360-async."""
