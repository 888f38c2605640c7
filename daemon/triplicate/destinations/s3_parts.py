"""How an S3 object is cut into the parts of a multipart upload.

S3 takes parts of 5 MiB to 5 GiB (the last one may be smaller), at most 10,000
of them, for objects of at most 5 TiB. The configured `part_size` is clamped
to that range and grown in MiB steps so that no upload needs more than 10,000
parts: 5 TiB, S3's largest object, takes 525 MiB parts.

A file in flight holds one buffer per part being sent. When its parts grow past
the configured size, fewer of them go at once (base.pieces_in_flight): a 200
GiB file at 8 MiB x 8 takes 21 MiB parts, 3 at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import CopyRefused
from ..fields import format_size

MiB = 1024**2
GiB = 1024**3
TiB = 1024**4
MIN_PART = 5 * MiB  # S3's smallest part (all but the last)
MAX_PART = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT = 5 * TiB


@dataclass(frozen=True)
class PartPlan:
    """How one object is cut into parts: all `part_size` but the last."""

    size: int
    part_size: int
    count: int

    def span(self, number: int) -> tuple[int, int]:
        """(offset, length) of part `number` (1-based)."""
        offset = (number - 1) * self.part_size
        return offset, min(self.part_size, self.size - offset)


def plan_parts(size: int, part_size: int) -> PartPlan:
    """Parts for an object of `size` bytes: `part_size` clamped to S3's limits
    and grown (in MiB steps) until at most 10,000 parts are needed."""
    if size > MAX_OBJECT:
        raise CopyRefused(
            f"{format_size(size)} is larger than S3's largest object (5 TiB); "
            "such a file cannot be stored in S3"
        )
    part = min(max(part_size, MIN_PART), MAX_PART)
    if math.ceil(size / part) > MAX_PARTS:
        part = math.ceil(math.ceil(size / MAX_PARTS) / MiB) * MiB
    return PartPlan(size=size, part_size=part, count=max(1, math.ceil(size / part)))
