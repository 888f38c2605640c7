"""The one place that knows every destination type.

Each entry maps a config `type` to its config model and its class; the config
models join in one pydantic discriminated union, so an unknown type or a key
that belongs to another type is a clear config error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Annotated, Union

from pydantic import Field

from .azure import AzureConfig, AzureDestination
from .base import Destination, DestinationConfig
from .local import LocalConfig, LocalDestination
from .s3 import S3Config, S3Destination
from .sftp import SftpConfig, SftpDestination

TYPES: dict[str, tuple[type[DestinationConfig], type]] = {
    "azure": (AzureConfig, AzureDestination),
    "local": (LocalConfig, LocalDestination),
    "s3": (S3Config, S3Destination),
    "sftp": (SftpConfig, SftpDestination),
}

AnyDestinationConfig = Annotated[
    Union[AzureConfig, LocalConfig, S3Config, SftpConfig],
    Field(discriminator="type"),
]


def create(config: DestinationConfig) -> Destination:
    """A destination object for `config` (not yet opened)."""
    cls = TYPES[config.type][1]  # type: ignore[attr-defined]
    return cls(config)  # type: ignore[no-any-return]


def runs_apart(config: DestinationConfig) -> bool:
    """Whether the daemon runs this destination in a process of its own."""
    if config.own_process is not None:
        return config.own_process
    return config.type != "local" and (os.cpu_count() or 1) > 1  # type: ignore[attr-defined]


def readers_in_daemon(configs: Sequence[DestinationConfig]) -> int:
    """How many of these destinations read sources in the daemon's process."""
    return sum(1 for config in configs if not runs_apart(config))


def create_for_daemon(config: DestinationConfig) -> Destination:
    """Like `create`, in a process of its own where `runs_apart` says so."""
    if runs_apart(config):
        from .process import ProcessDestination

        return ProcessDestination(config)
    return create(config)
