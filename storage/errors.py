"""Errors that storage/ raises on purpose. Each message is one line a user can act on."""

from __future__ import annotations


class StorageError(Exception):
    """The database refused or failed an operation (the message says which database and why)."""


class NotFoundError(StorageError, LookupError):
    """No row with the given key; the message names the resource and the key."""


class StudyExistsError(StorageError):
    """A study with this name (or Optuna study name) already exists."""


__all__ = ["NotFoundError", "StorageError", "StudyExistsError"]
