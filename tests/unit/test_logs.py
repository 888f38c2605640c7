"""The log stream's set-up (logs.py): a crash's traceback says where it
happened, in the console format as in JSON, and never the values of the local
variables of its frames, where a secret can sit."""

from __future__ import annotations

import json

import pytest
import structlog
from triplicate.logs import configure

KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"


def _connect(secret_access_key: str) -> None:
    raise RuntimeError("the endpoint refused the connection")


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_crash_is_logged_with_its_traceback_and_without_local_values(
    log_format: str, capsys: pytest.CaptureFixture[str],
) -> None:
    configure(log_format, "info")
    try:
        try:
            _connect(KEY)
        except RuntimeError:
            structlog.get_logger("triplicate.test").exception("transfer_crashed", destination="offsite")
        err = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
    if log_format == "json":
        err = json.loads(err)["exception"]
    assert "transfer_crashed" in err or log_format == "json"
    assert "_connect" in err and "RuntimeError: the endpoint refused the connection" in err
    assert KEY not in err and KEY[:12] not in err
