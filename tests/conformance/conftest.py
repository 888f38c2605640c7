from __future__ import annotations

import importlib

import pytest

from .cases.base import Case, Context

# One entry per destination type (and per server dialect). Every case runs the
# whole suite in test_destinations.py.
CASES = ["local"]


@pytest.fixture(params=CASES)
async def case(request: pytest.FixtureRequest, tmp_path) -> Case:  # type: ignore[no-untyped-def]
    module = importlib.import_module(f"tests.conformance.cases.{request.param.split('-')[0]}")
    made: Case = await module.make(Context(tmp_path=tmp_path, request=request, variant=request.param))
    await made.dest.open()
    yield made
    await made.dest.close()
