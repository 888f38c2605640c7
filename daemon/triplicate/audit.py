"""`triplicate verify`: re-read copies at a destination and repair bad ones.

Bit rot, a flaky RAID controller or someone editing a file at the destination
are found only by reading the copies again. A copy that no longer matches is
deleted and its row queued again, so the next run re-sends it from the source.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import structlog

from .destinations.base import Destination
from .errors import PermanentError, TransientError, TriplicateError, VerificationFailed
from .journal import Journal

log = structlog.get_logger("triplicate.audit")


@dataclass
class AuditResult:
    destination: str
    checked: int = 0
    bytes_read: int = 0
    bad: list[str] = field(default_factory=list)  # copies found wrong or missing, queued again
    unreachable: list[str] = field(default_factory=list)  # could not be read now; nothing changed


async def audit(journal: Journal, dest: Destination, sample: int | None = None, offload: str | None = None) -> AuditResult:
    """Check verified copies at `dest` (all, or a random `sample` of them)."""
    rows = journal.verified_copies(dest.name, offload)
    if sample is not None and sample < len(rows):
        rows = random.sample(rows, sample)
    result = AuditResult(dest.name)
    try:
        await dest.open()
    except (PermanentError, TransientError) as exc:  # nothing can be read: every copy stays as it is
        log.error("destination_unavailable", destination=dest.name, error=str(exc))
        result.unreachable = [key for _, key, _, _ in rows]
        return result
    try:
        for copy_id, key, size, xxh64 in rows:
            await _check(journal, dest, result, copy_id, key, size, xxh64)
    finally:
        await dest.close()
    return result


async def _check(journal: Journal, dest: Destination, result: AuditResult, copy_id: int, key: str, size: int, xxh64: str) -> None:
    try:
        await dest.verify(key, xxh64, size)
    except (VerificationFailed, PermanentError) as exc:
        log.error("copy_bad", destination=dest.name, file=key, error=str(exc))
        try:
            await dest.delete(key)
        except TriplicateError as stuck:
            # Not re-queued: a put could take the bad copy still there for the
            # one it already has (S3 compares metadata). The next verify tries again.
            log.error("bad_copy_not_deleted", destination=dest.name, file=key, error=str(stuck))
            result.unreachable.append(key)
            return
        journal.requeue(copy_id, f"found bad by verify: {exc}")
        result.bad.append(key)
    except TransientError as exc:
        log.warning("copy_unreachable", destination=dest.name, file=key, error=str(exc))
        result.unreachable.append(key)
    else:
        result.checked += 1
        result.bytes_read += size
