"""Pydantic models shared by producers and workers; depends on pydantic only."""

from .settings import Settings, get_settings
from .turns import ID_PATTERN, SCHEMA_VERSION, Page, Turn

__all__ = ["ID_PATTERN", "SCHEMA_VERSION", "Page", "Settings", "Turn", "get_settings"]
