"""The configuration file: pydantic models, loading, and problems as sentences.

The TOML has `[daemon]`, `[[watch]]` and `[[destination]]` tables. Paths
resolve against the config file's folder. Every problem is reported as one
sentence naming the file and the key, never as a traceback.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic_core import ErrorDetails

from .config_secrets import pasted_secrets
from .destinations.registry import AnyDestinationConfig
from .errors import ConfigError
from .fields import ConfigPath

DEFAULT_EXCLUDE = [
    # what Finder, Spotlight, Windows and Office leave on volumes
    ".DS_Store", "._*", ".Spotlight-V100", ".Trashes", ".fseventsd", ".TemporaryItems", ".DocumentRevisions-V100",
    ".apdisk", "Icon\r", "Thumbs.db", "desktop.ini", "$RECYCLE.BIN", "System Volume Information", "~$*", ".~lock.*",
    # partial copies: browsers, WinSCP, Aspera, generic tools, and rsync's ".name.XXXXXX" before its final rename
    "*.tmp", "*.part", "*.partial", "*.crdownload", "*.download", "*.filepart", "*.aspx", "*.inprogress",
    ".*.[A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9]",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetrySettings(_Strict):
    first_delay: float = Field(default=5.0, gt=0, description="Seconds before the first retry of a failed copy.")
    max_delay: float = Field(default=900.0, gt=0, description="Backoff cap in seconds; retries go on forever at this pace.")
    permanent_delay: float = Field(default=3600.0, gt=0, description="Seconds between retries of errors that need an operator.")
    once_attempts: int = Field(default=3, ge=1, description="Attempts per copy within one `run --once`.")
    degraded_after: int = Field(default=5, ge=1, description="Failed copies in a row that mark a destination degraded.")


class HttpSettings(_Strict):
    """`[http]`: liveness, readiness, Prometheus metrics and status JSON (http_api.py)."""

    host: str = Field(default="127.0.0.1", description="Address to listen on; keep 127.0.0.1 unless a proxy or scraper elsewhere needs it.")
    port: int = Field(default=9321, ge=1, le=65535, description="TCP port.")
    token_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of an environment variable holding a bearer token that /metrics and /api/ require (never the token itself).",
    )


NotifyEvent = Literal["offload_ready", "offload_safe", "file_failed", "destination_degraded", "destination_recovered"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = get_args(NotifyEvent)



def token_problem(settings: HttpSettings | None, where: str = "") -> str | None:
    if settings is None or settings.token_env is None or os.environ.get(settings.token_env):
        return None
    return (f"{where}[http].token_env names the environment variable {settings.token_env}, which is not set; "
            "set it to the bearer token (or remove token_env)")

class NotifySettings(_Strict):
    """One `[[notify]]`: a webhook (generic JSON or Slack-compatible) or a command (notify.py)."""

    name: str | None = Field(default=None, description="Shown in logs instead of the URL (which may hold a secret).")
    url: str | None = Field(default=None, pattern=r"^https?://", description="Webhook URL to POST to.")
    url_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Name of an environment variable holding the webhook URL (Slack URLs are secrets).")
    format: Literal["json", "slack"] = Field(default="json", description='"json": the event as a JSON object; "slack": {"text": ...} for Slack-compatible webhooks.')
    command: list[str] | None = Field(default=None, min_length=1, description="Program and arguments to run per event; the event arrives as JSON on stdin.")
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS), description="Which events to send.",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per attempt.")
    max_attempts: int = Field(default=8, ge=1, description="Attempts per event, with exponential backoff (1 s doubling, at most 5 min apart).")

    @model_validator(mode="after")
    def _one_target(self) -> "NotifySettings":
        targets = [k for k in ("url", "url_env", "command") if getattr(self, k) is not None]
        if len(targets) != 1:
            raise ValueError("a [[notify]] needs exactly one of url, url_env or command")
        return self

    def label(self, index: int) -> str:
        return self.name or f"notify[{index}]"


class DaemonSettings(_Strict):
    journal: ConfigPath | None = Field(default=None, description="SQLite journal; default: the platform's state folder.")
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    rescan_seconds: float = Field(default=300.0, gt=0, description="Full rescan of every watch folder, for events the OS lost.")
    shutdown_grace_seconds: float = Field(default=20.0, ge=0, description="How long a stop waits for copies in progress.")
    allow_readable_secrets: bool = Field(
        default=False, description="Start even when a secret in or beside the config (a webhook URL, an SFTP key "
        "file) is readable by other users; each one is logged as a warning instead (config_secrets.py).",
    )
    retry: RetrySettings = RetrySettings()

    def journal_path(self) -> Path:
        if self.journal is not None:
            return self.journal
        return Path(platformdirs.user_state_dir("triplicate")) / "journal.db"


class WatchConfig(_Strict):
    path: ConfigPath
    media: str = Field(default="ssd", description="Media kind of the source copy (copy 1 of 3).")
    ready: Literal["stable", "mhl", "marker"] = Field(
        default="stable",
        description='"stable": each file once it held still; "mhl": an offload once its ASC MHL history lists it '
        'and every file matches; "marker": an offload once its marker file exists (readiness.py).',
    )
    settle_seconds: float = Field(default=5.0, ge=0)
    marker: str | None = Field(default=None, description='ready = "marker": a file name or glob ("*.done") inside the offload folder, or "<offload>.<ext>" beside it.')
    send_marker: bool = Field(default=False, description="Copy the marker file too.")
    verify_workers: int = Field(default=2, ge=1, le=32, description='ready = "mhl": files checked against the manifest at once.')
    polling: bool | Literal["auto"] = Field(
        default="auto",
        description='true: find changes by scanning every poll_seconds (network shares deliver no events); '
        '"auto": poll where the folder is on NFS, SMB/CIFS, AFP or FUSE, use events elsewhere.',
    )
    poll_seconds: float = Field(default=10.0, gt=0, description="Scan interval when polling.")
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    destinations: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _marker_fits_rule(self) -> "WatchConfig":
        if self.ready == "marker" and not self.marker:
            raise ValueError('ready = "marker" needs marker = a file name or a glob such as "*.done"')
        if self.marker is not None and self.ready != "marker":
            raise ValueError(f'marker is only used with ready = "marker" (ready is {self.ready!r}); remove it or change ready')
        if self.marker is not None and ("/" in self.marker or "\\" in self.marker):
            raise ValueError(f"marker {self.marker!r} must be a file name or glob without folders")
        return self


class Config(_Strict):
    daemon: DaemonSettings = DaemonSettings()
    watch: list[WatchConfig] = Field(min_length=1)
    destination: list[AnyDestinationConfig] = Field(min_length=1)
    http: HttpSettings | None = None  # absent: no HTTP endpoint
    notify: list[NotifySettings] = Field(default_factory=list)
    _source_file: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _references(self) -> "Config":
        problems = _reference_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def source_file(self) -> Path | None:
        return self._source_file

    def destination_named(self, name: str) -> Any:
        return next(d for d in self.destination if d.name == name)


def _reference_problems(config: Config) -> list[str]:
    problems: list[str] = []
    names = [d.name for d in config.destination]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"destination name {dup!r} is used twice; give each [[destination]] its own name")
    for i, watch in enumerate(config.watch):
        for name in watch.destinations:
            if name not in names:
                problems.append(
                    f"watch[{i}].destinations names {name!r}, which no [[destination]] defines; "
                    f"defined: {', '.join(names)}"
                )
        for dest in config.destination:
            root = getattr(dest, "path", None)
            if dest.type == "local" and root is not None and _overlaps(watch.path, root):
                problems.append(
                    f"watch[{i}].path {watch.path} and destination {dest.name!r} path {root} overlap; "
                    "copies would be watched and copied again — use separate folders"
                )
    return problems + pasted_secrets(config)


def _overlaps(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def load_config(path: Path | str) -> Config:
    """Read and validate a config file; raises ConfigError with sentences."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found; pass an existing file with --config"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: the config file is not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}; check quotes and brackets on that line"]) from None
    try:
        config = Config.model_validate(raw, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError([f"{path}: {sentence}" for sentence in describe_errors(exc, raw)]) from None
    config._source_file = path.resolve()
    return config


def describe_errors(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    """pydantic errors as one sentence each, naming the key as written in TOML."""
    sentences = []
    for err in exc.errors(include_url=False):
        key = _key_name(err["loc"], raw)
        kind, msg = err["type"], err["msg"]
        if kind == "missing":
            sentences.append(f"{key} is required but missing; add it")
        elif kind == "extra_forbidden":
            sentences.append(f"{key} is not a known setting; remove it or check its spelling")
        elif kind == "union_tag_invalid" or kind == "union_tag_not_found":
            sentences.append(f"{key}: {_tag_message(err)}")
        elif kind == "value_error" and not err["loc"]:
            sentences.extend(part.strip() for part in msg.removeprefix("Value error, ").split("\n"))
        else:
            shown = f" (got {err['input']!r})" if not isinstance(err.get("input"), (dict, list)) else ""
            if err["loc"] and str(err["loc"][-1]).endswith("_env"):
                shown = ""  # a *_env setting may hold a pasted secret: never echo it
            sentences.append(f"{key}: {msg.removeprefix('Value error, ')}{shown}")
    return sentences


def _tag_message(err: ErrorDetails) -> str:
    ctx = err.get("ctx") or {}
    expected = ctx.get("expected_tags", "")
    if err["type"] == "union_tag_not_found":
        return f"type is required; use one of {expected}"
    return f"unknown destination type {ctx.get('tag')!r}; use one of {expected}"


def _key_name(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """("destination", 1, "local", "path") -> "destination[1] ('nearline').path"."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int) and parts:
            parts[-1] += f"[{item}]"
            node = node[item] if isinstance(node, list) and item < len(node) else None
            if isinstance(node, dict) and "name" in node:
                parts[-1] += f" ({node['name']!r})"
            continue
        if isinstance(node, dict) and item not in node and node.get("type") == item:
            continue  # the union's tag, not a key the user wrote
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) if parts else "the file"
