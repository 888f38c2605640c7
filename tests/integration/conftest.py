"""Fixtures the S3 integration tests share: each test runs against both
S3 servers, each with a bucket of its own."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.cases.s3 import fresh_bucket


@pytest.fixture(params=["seaweed", "moto"])
def server(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


@pytest.fixture
def bucket(server: Any, request: pytest.FixtureRequest) -> str:
    return fresh_bucket(server, request)
