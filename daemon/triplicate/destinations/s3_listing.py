"""Which keys a folder of the bucket held when this run last listed it.

Before a file whose hash is known is sent, the destination looks for an
identical copy already there (a crash after the upload, a journal started
anew). A HeadObject per file is one round trip per frame of a sequence; one
ListObjectsV2 per folder (1,000 keys a page) tells which files cannot be there,
and only those that might be get the HeadObject.

A listing only ever spares a HeadObject: a key missing from a stale listing
means the file is sent again, never that a copy is taken for verified. A
listing is trusted for `TTL_SECONDS`, folders larger than `MAX_KEYS` are not
kept, and a bucket that refuses ListBucket (a write-only policy) simply gets
the HeadObjects.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..errors import PermanentError, TransientError

MAX_KEYS = 50_000
TTL_SECONDS = 600.0


class FolderListings:
    def __init__(self, api: Any) -> None:
        self.api = api
        self._folders: dict[str, tuple[float, set[str] | None]] = {}  # folder -> (listed at, keys or None)
        self._locks: dict[str, asyncio.Lock] = {}
        self._refused = False

    async def surely_absent(self, full: str) -> bool:
        """True when the folder's listing has no such key."""
        keys = await self._keys(_folder(full))
        return keys is not None and full not in keys

    def stored(self, full: str) -> None:
        """This run put `full`: a later look in the same listing must find it."""
        entry = self._folders.get(_folder(full))
        if entry is not None and entry[1] is not None:
            entry[1].add(full)

    async def _keys(self, folder: str) -> set[str] | None:
        if self._refused:
            return None
        entry = self._folders.get(folder)
        if entry is not None and time.monotonic() - entry[0] < TTL_SECONDS:
            return entry[1]
        lock = self._locks.setdefault(folder, asyncio.Lock())
        async with lock:  # the workers that reach a new folder together wait for one listing
            entry = self._folders.get(folder)
            if entry is None or time.monotonic() - entry[0] >= TTL_SECONDS:
                entry = (time.monotonic(), await self._list(folder))
                self._folders[folder] = entry
        self._forget_old()
        return entry[1]

    async def _list(self, folder: str) -> set[str] | None:
        keys: set[str] = set()
        params: dict[str, Any] = {"Prefix": folder, "Delimiter": "/"}
        try:
            while True:
                page = await self.api.request("list_objects_v2", f"listing {folder or 'the bucket'}", **params)
                keys.update(item["Key"] for item in page.get("Contents", []))
                if len(keys) > MAX_KEYS:
                    return None
                if not page.get("IsTruncated"):
                    return keys
                params["ContinuationToken"] = page["NextContinuationToken"]
        except PermanentError as exc:
            self._refused = True
            self.api.log.info("s3_listing_unavailable", error=str(exc), fallback="head-object")
            return None
        except TransientError:
            return None

    def _forget_old(self) -> None:
        now = time.monotonic()
        for folder, (listed, _) in list(self._folders.items()):
            if now - listed >= TTL_SECONDS:
                del self._folders[folder]
                self._locks.pop(folder, None)


def _folder(full: str) -> str:
    return full.rsplit("/", 1)[0] + "/" if "/" in full else ""
