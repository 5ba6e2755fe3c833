"""User-facing errors.

A :class:`UserError` is a problem with the user's input (a file, a column, a config key, an argument).
The CLI prints its message without a traceback and exits with status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: the message names the file, row or key and what is wrong."""


class ConfigError(UserError):
    """A config file or override names an unknown key or has a value of the wrong type."""


class DataError(UserError):
    """A manifest, lesions table, image file or prediction file is malformed."""
