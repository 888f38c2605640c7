from __future__ import annotations

import importlib

import pytest
import pytest_asyncio

from .cases.base import Case, Context

# One entry per destination type (and per server dialect). Every case runs the
# whole suite in test_destinations.py.
CASES = ["local", "sftp", "sftp-readback", "azure", "s3-seaweed", "s3-moto"]


# The test body runs in a per-test loop: open() must run in that same loop
# (aiohttp / asyncssh connections belong to the loop that made them).
@pytest_asyncio.fixture(params=CASES, loop_scope="function")
async def case(request: pytest.FixtureRequest, tmp_path) -> Case:  # type: ignore[no-untyped-def]
    module = importlib.import_module(f"tests.conformance.cases.{request.param.split('-')[0]}")
    made: Case = await module.make(Context(tmp_path=tmp_path, request=request, variant=request.param))
    await made.dest.open()
    yield made
    await made.dest.close()
