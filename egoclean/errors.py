"""Exceptions raised where bad input is first seen; each CLI turns them into one clear line.

Every message names the file or setting at fault, what is wrong with it, and what to do.
"""


class EgoCleanError(Exception):
    """Base class: the message is the whole one-line explanation shown to the user."""


class CalibrationError(EgoCleanError):
    """intrinsics.json is missing, malformed, or has a field out of range."""


class VideoError(EgoCleanError):
    """A video file is missing, truncated, undecodable, or not what its sidecar says."""


class FetchError(EgoCleanError):
    """The dataset could not be listed or downloaded (network, unknown worker or clip).

    transient: the same request may well succeed later (the network, the Hub's load: 429, 5xx), so the
    scale-out retries it; never for bad data, a missing file or a refused token."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class AuthError(FetchError):
    """No token, a wrong token, or the dataset's terms not yet accepted."""


class OutputError(EgoCleanError):
    """An output folder is not writable, or the disk is full."""


class InputError(EgoCleanError):
    """A data file other than video (embeddings, timestamps, settings) is missing or malformed."""


class SettingError(EgoCleanError, ValueError):
    """A setting (a command-line option or a settings field) has a value it cannot have."""


class CrashLoopError(EgoCleanError):
    """An item took down the process working on it, attempt after attempt (a crash, or out of memory)."""

    def __init__(self, message: str, attempts: int = 0) -> None:
        super().__init__(message)
        self.attempts = attempts
