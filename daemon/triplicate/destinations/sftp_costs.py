"""Which way of checking an SFTP copy costs less on this link, as measured.

A copy is checked by hashing it on the server (one command over SSH: a fixed
cost of a channel, a login shell and a process, whatever the size) or by
reading it back (its size over the link, plus a few round trips). Which is
cheaper depends on the link: a 20 ms command costs what reading back 6 MB
costs at 300 MB/s on a LAN, or 500 KB on a 200 Mbit/s uplink. So the cut-off is the command's measured time multiplied by
the measured read-back rate, both kept as moving averages per destination.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024

UNMEASURED_CUTOFF = 16 * MiB
"""Before both costs are known: read back what a LAN reads back in ~50 ms."""

MEASURED_READ = 256 * 1024
"""Shorter read-backs are all round trips and tell nothing about the rate."""

SMOOTHING = 0.3


def _moving(old: float | None, new: float) -> float:
    return new if old is None else old + SMOOTHING * (new - old)


@dataclass
class VerifyCosts:
    command_seconds: float | None = None  # a remote hash of a small file, start to answer
    read_rate: float | None = None  # bytes/s of read-backs, under whatever else the link carries

    def note_command(self, seconds: float) -> None:
        self.command_seconds = _moving(self.command_seconds, seconds)

    def note_read_back(self, size: int, seconds: float) -> None:
        if size >= MEASURED_READ and seconds > 0:
            self.read_rate = _moving(self.read_rate, size / seconds)

    def cutoff(self) -> int:
        """Files of this size and more are hashed on the server."""
        if self.command_seconds is None or self.read_rate is None:
            return UNMEASURED_CUTOFF
        return int(self.command_seconds * self.read_rate)
