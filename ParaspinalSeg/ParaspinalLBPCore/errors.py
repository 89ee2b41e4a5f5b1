"""Errors a user can fix: the command lines print their message as one line and exit with status 2.

Raise a :class:`UserError` subclass for bad input (a missing or unreadable file, a missing column or
seed, an invalid value or parameter), with a message naming the file, field or structure. Any other
exception is a bug: the command line lets it through with its traceback (exit status 1).
``BadInputError``, ``MissingInputError`` and ``MissingKeyError`` are also ``ValueError`` /
``FileNotFoundError`` / ``KeyError``, so callers that catch those keep working.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of the errors whose message tells the user what to fix (one line on the command line)."""


class BadInputError(UserError, ValueError):
    """An input file, column, value or parameter is wrong (the message names it and what is expected)."""


class MissingInputError(UserError, FileNotFoundError):
    """A named input file or folder does not exist."""


class MissingKeyError(UserError, KeyError):
    """A column, key or name the input must have (or that the user asked for) is not there; the message
    names it and, where useful, the ones that exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""  # KeyError would print the message in quotes
