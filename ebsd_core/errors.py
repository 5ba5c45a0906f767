"""The project's own error types.

Every problem a user can cause (a bad file, an unknown phase, a model that
does not fit the data) raises an :class:`EbsdError` whose message names the
file or value and the problem, so that the CLI and the dashboard can show it
as one clear line instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

#: What an empty file is told, whatever it was given as.
EMPTY_FILE = "the file is empty"
#: A named pipe or a device where a file is to be read or written: reading one waits for a writer for good.
NOT_A_FILE = "is not a file (a pipe or device)"


class EbsdError(Exception):
    """Base class for every error a user can act on."""


class InputError(EbsdError, ValueError):
    """A file or value given by the user cannot be used."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = message  # without the path
        super().__init__(f"{self.path}: {message}" if self.path else message)


class PhaseError(InputError):
    """An unknown phase or space group, or a malformed crystal structure."""


class ModelError(InputError):
    """A saved model is missing, tampered with, or does not fit the data."""


class StoreError(EbsdError):
    """The model store refused an operation (for example an overwrite)."""


class CancelledError(EbsdError):
    """A long job was cancelled by its caller."""


def os_error_text(exc: OSError) -> str:
    """One line for a file operation that failed: ``FILE: reason`` (``reason`` alone when it names no file)."""
    where = exc.filename2 or exc.filename
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


def out_of_memory_text(exc: BaseException) -> str | None:
    """One line for an allocation that failed, on a GPU or the CPU, with what to try; None for any other error.

    A GPU shared with other programs runs out when they hold its memory; torch is not imported here, so its
    ``OutOfMemoryError`` is known by name.
    """
    message = str(exc).strip().split("\n")[0]
    if type(exc).__name__ == "OutOfMemoryError":
        return (
            f"the GPU ran out of memory ({message}): use a smaller batch size, close what else uses the GPU, "
            "or run on the CPU"
        )
    if isinstance(exc, MemoryError) or "can't allocate memory" in message:
        return f"out of memory ({message}): use a smaller batch size or fewer patterns at once"
    return None
