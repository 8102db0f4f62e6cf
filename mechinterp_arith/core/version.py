"""The package version (recorded in every checkpoint's config.json)."""

__version__ = "0.2.0"
