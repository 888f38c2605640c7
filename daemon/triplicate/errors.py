"""The few exception classes the scheduler understands.

Every destination maps its SDK's errors onto these; the scheduler decides what
to do from the class alone: TransientError is retried with backoff,
PermanentError waits for an operator (or a slow schedule), SourceChanged makes
the file a new version, VerificationFailed is a transient error whose bad copy
has already been removed.
"""

from __future__ import annotations


class TriplicateError(Exception):
    """Base of every error triplicate raises on purpose."""


class ConfigError(TriplicateError):
    """The configuration cannot be used; `problems` holds one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class JournalError(TriplicateError):
    """The journal file cannot be opened or is damaged."""


class TransientError(TriplicateError):
    """Worth retrying soon: network drops, timeouts, throttling, a full disk."""


class PermanentError(TriplicateError):
    """Retrying will not help until someone changes something (credentials,
    a missing bucket, an unreadable source file)."""


class CopyRefused(PermanentError):
    """This one file cannot be stored at this destination as it is (a name
    that could escape the root, a size over the service's limit). Retried on
    the slow schedule or by `triplicate retry`, like any PermanentError, but
    the destination goes on with its other files meanwhile."""


class SourceUnreadable(PermanentError):
    """The source file cannot be read (permissions, I/O error, gone). The copy
    is marked failed: no destination can help."""


class VerificationFailed(TransientError):
    """The copy at the destination does not match the source hash.

    Raised only after the bad copy has been removed (or was never made visible),
    so a retry starts clean.
    """


class SourceChanged(TriplicateError):
    """The source file changed while it was read; its bytes are not the version
    the journal describes, so nothing read from it may be recorded."""
