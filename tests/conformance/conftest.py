from __future__ import annotations

import dataclasses
import importlib

import pytest
import pytest_asyncio
from triplicate.destinations.process import ProcessDestination

from .cases.base import Case, Context

# One entry per destination type (and per server dialect). Every case runs the
# whole suite in test_destinations.py. "+process": the same destination in a
# process of its own, as the daemon runs network destinations
# (destinations/process.py); the suite must not be able to tell.
CASES = ["local", "sftp", "sftp-readback", "azure", "s3-seaweed", "s3-moto", "s3-seaweed+process", "sftp+process", "azure+process"]


def _in_process(made: Case) -> Case:
    return dataclasses.replace(
        made,
        dest=ProcessDestination(made.dest.config),
        missing_target=lambda: ProcessDestination(made.missing_target().config),
        bad_credentials=lambda: ProcessDestination(made.bad_credentials().config),
    )


# The test body runs in a per-test loop: open() must run in that same loop
# (aiohttp / asyncssh connections belong to the loop that made them).
@pytest_asyncio.fixture(params=CASES, loop_scope="function")
async def case(request: pytest.FixtureRequest, tmp_path) -> Case:  # type: ignore[no-untyped-def]
    variant, _, apart = request.param.partition("+")
    module = importlib.import_module(f"tests.conformance.cases.{variant.split('-')[0]}")
    made: Case = await module.make(Context(tmp_path=tmp_path, request=request, variant=variant))
    if apart:
        made = _in_process(made)
    await made.dest.open()
    yield made
    await made.dest.close()
