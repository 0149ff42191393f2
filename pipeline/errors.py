"""Errors about the user's input data, shared by every reader.

A stage or a command reports a `DataError` as one line naming the file and
exits with code 2, whichever module raised it.
"""


class DataError(ValueError):
    """Bad input data; the message names the file."""


class MissingArtifact(FileNotFoundError):
    """A stage's input has not been produced yet."""


class NonFiniteError(DataError):
    """NaN or inf in numbers a stage was about to write or has just read; the message names the file and the array."""
