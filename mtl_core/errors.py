"""Errors that mtl_core raises on purpose. Each message is one line a user can act on."""

from __future__ import annotations

from mtl_core.registry import UnknownNameError


class MTLError(Exception):
    """Base class of mtl_core's own errors."""


class ConfigError(MTLError, ValueError):
    """A trial or component configuration that cannot run (names the bad value)."""


class ExperimentError(ConfigError):
    """An experiment whose tasks, network parts or data do not fit together.

    Raised when the experiment is registered and when its data are first loaded; the message
    names the experiment, the task and what was expected against what was found.
    """


class DataError(MTLError):
    """A data file that is missing, truncated or fails its checksum."""


class TrainingDiverged(MTLError):
    """A loss became NaN or infinite; the message says which task and when."""


class TrialStopped(MTLError):
    """Raised by an epoch callback to stop a trial early (pruning)."""


__all__ = [
    "ConfigError",
    "DataError",
    "ExperimentError",
    "MTLError",
    "TrainingDiverged",
    "TrialStopped",
    "UnknownNameError",
]
