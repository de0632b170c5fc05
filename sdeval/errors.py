"""Errors that sdeval raises at its boundaries; the CLI prints them as one line."""

from __future__ import annotations


class SdevalError(Exception):
    """A problem the user can fix (bad input, bad config, mismatched protocol)."""


class ConfigError(SdevalError):
    """A config file or option is invalid; the message names the key."""


class ProtocolMismatchError(SdevalError):
    """Two results or states were made under different protocols; the message names the field."""


class NoImagesError(SdevalError):
    """A folder holds no image that could be decoded."""
