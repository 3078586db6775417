"""The two kinds of failure: the user's input (stop at once) and one trial (record, go on)."""

from __future__ import annotations


class AutoMLError(Exception):
    """Base class of every error this package raises on purpose."""


class UserInputError(AutoMLError):
    """Bad input from the user: a one-line message naming the problem and the fix.

    The CLI prints it without a traceback and exits with status 2; nothing is left half-written.
    """


class SpaceError(UserInputError):
    """A malformed search-space file."""


class DataError(UserInputError):
    """A dataset that cannot be used as given."""


class ResourcesUnavailable(UserInputError):
    """No worker could be placed on the cluster within the time allowed."""


class TrialError(AutoMLError):
    """A failure inside one trial: recorded on that trial, the search goes on."""


class InfeasibleArchitecture(TrialError):
    """A candidate that cannot be built for the data (feature maps below 1x1, constraints)."""
