"""A `put` in a child process that the test can SIGKILL mid-transfer.

Run as `python -m tests.conformance.crash_put SPEC.json`; SPEC holds the
destination config (as in the TOML), the source path and key, and a file where
the resume state is kept (standing in for the journal). Prints
"progress <bytes>" lines while sending and "done <bytes_sent> <xxh64>" at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from triplicate.destinations import registry
from triplicate.destinations.base import SourceFile


class FileResume:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        return json.loads(self.path.read_text()) if self.path.exists() else None

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


async def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    config = TypeAdapter(registry.AnyDestinationConfig).validate_python(spec["destination"])
    dest = registry.create(config)
    src_path = Path(spec["source"])
    st = src_path.stat()
    src = SourceFile(src_path, spec["key"], st.st_size, st.st_mtime_ns)
    sent = 0

    def progress(n: int) -> None:
        nonlocal sent
        sent += n
        print(f"progress {sent}", flush=True)

    await dest.open()
    try:
        receipt = await dest.put(src, FileResume(Path(spec["resume"])), progress)
    finally:
        await dest.close()
    print(f"done {receipt.bytes_sent} {receipt.xxh64}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
