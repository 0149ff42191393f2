"""Errors about the user's input data, shared by every reader, and warnings about weak figures.

A stage or a command reports a `DataError` as one line naming the file and
exits with code 2, whichever module raised it. A warning does not stop
anything: it is printed and counted in the metrics file. Both live here, below
the stages and the modality plug-ins, so that a plug-in never imports the
stage runner.
"""
import os
import sys


class DataError(ValueError):
    """Bad input data; the message names the file."""


class MissingArtifact(FileNotFoundError):
    """A stage's input has not been produced yet."""


def warn(warnings: list[str], message: str) -> None:
    """A figure that is computed but weak (a small set, a cut subset): said on stderr, kept in the metrics file."""
    if os.environ.get("RANK", "0") == "0":   # under torchrun, said once
        print(f"warning: {message}", file=sys.stderr)
    warnings.append(message)


class NonFiniteError(DataError):
    """NaN or inf in numbers a stage was about to write or has just read; the message names the file and the array."""
