"""Secrets that other users of the machine could read through the config.

A config names environment variables for its credentials (S3 keys, Azure
connection strings and keys, SAS tokens, SSH key passphrases, HTTP tokens). A
credential pasted into such a *_env setting is refused without being echoed,
also when it happens to be shaped like a variable name (`pasted_secrets`: an
error saying "variable X is not set" would otherwise print it). Two things can
still hold a secret by themselves:

- a URL setting that carries its credential: `user:password@`, a query string
  (SAS `sig=`, `token=`), or a path segment that is a token — webhook URLs of
  Slack, Discord and Teams are their own password ([[notify]] url; url_env
  keeps them out of the file);
- the private key file an SFTP destination points at.

Such a file readable by other users (group or world read bit) stops the
daemon, as ssh stops at an unprotected key, unless `[daemon]
allow_readable_secrets = true`, which turns each finding into a warning.
Findings name the setting and the file, never the secret.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_TOKEN_SEGMENT = re.compile(r"^[A-Za-z0-9_]{20,}$")  # and mixed: digits, or upper and lower case
_WEBHOOK_HOSTS = ("hooks.slack.com", "discord.com", "discordapp.com", "webhook.office.com", "hooks.zapier.com")
_READABLE_BY_OTHERS = stat.S_IRGRP | stat.S_IROTH


def url_holds_secret(value: str) -> bool:
    """True when a URL carries a credential of its own."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if not parts.scheme or not parts.netloc:
        return False
    if parts.password or parts.query:
        return True
    if (parts.hostname or "").endswith(_WEBHOOK_HOSTS) and parts.path.strip("/"):
        return True
    return any(_is_token(segment) for segment in parts.path.split("/"))


def _is_token(segment: str) -> bool:
    mixed = any(c.isdigit() for c in segment) or (segment.lower() != segment and segment.upper() != segment)
    return bool(_TOKEN_SEGMENT.match(segment)) and mixed


def exposures(config: Any) -> list[str]:
    """Secrets in or beside `config` that other users can read, one sentence
    each (naming the setting and the file, never the secret)."""
    found: list[str] = []
    source = config.source_file
    if source is not None and _readable_by_others(source):
        found += [
            f"{source}: {where} holds a secret and the file is readable by other users (mode {_mode(source)}); "
            f"run `chmod 600 {source}` or move the secret into an environment variable"
            for where in _inline_secrets(config)
        ]
    for i, dest in enumerate(config.destination):
        key_file = getattr(dest, "key_file", None)
        if key_file is not None and Path(key_file).is_file() and _readable_by_others(Path(key_file)):
            found.append(
                f"destination[{i}] ({dest.name!r}).key_file {key_file} is a private key readable by other users "
                f"(mode {_mode(Path(key_file))}); run `chmod 600 {key_file}`"
            )
    return found


def problems(config: Any) -> tuple[list[str], list[str]]:
    """(problems that stop the start, warnings)."""
    found = exposures(config)
    if config.daemon.allow_readable_secrets:
        return [], [f"{s} (allowed by allow_readable_secrets = true)" for s in found]
    return [f"{s}, or set allow_readable_secrets = true under [daemon] to accept the risk" for s in found], []


def looks_like_secret(value: str) -> bool:
    """A value of a *_env setting that is a credential rather than a variable
    name: names are short words joined by "_"; keys and tokens have a long run
    mixing letters of both cases with digits, or 20+ letters and digits of one case."""
    return any(_token_like(part) for part in value.split("_"))


def _token_like(part: str) -> bool:
    if len(part) < 16:
        return False
    digit, lower, upper = (any(test(c) for c in part) for test in (str.isdigit, str.islower, str.isupper))
    return (digit and lower and upper) or (digit and (lower or upper) and len(part) >= 20)


def pasted_secrets(config: Any) -> list[str]:
    """*_env settings whose value looks like the secret itself, one sentence
    each, naming the setting but never the value."""
    places: list[tuple[str, Any]] = [(f"destination[{i}] ({d.name!r})", d) for i, d in enumerate(config.destination)]
    places += [(f"notify[{i}]", n) for i, n in enumerate(config.notify)]
    if config.http is not None:
        places.append(("[http]", config.http))
    return [
        f"{where}.{key} takes the NAME of an environment variable, but its value looks like a secret itself; keep the "
        "secret in the environment and write the variable's name here (e.g. WASABI_SECRET_KEY)"
        for where, model in places
        for key, value in model.model_dump().items()
        if key.endswith("_env") and isinstance(value, str) and looks_like_secret(value)
    ]


def _inline_secrets(config: Any) -> list[str]:
    places = [f"notify[{i}].url" for i, n in enumerate(config.notify) if n.url and url_holds_secret(n.url)]
    for i, dest in enumerate(config.destination):
        for key, value in dest.model_dump().items():
            if isinstance(value, str) and url_holds_secret(value):
                places.append(f"destination[{i}] ({dest.name!r}).{key}")
    return places


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & _READABLE_BY_OTHERS)
    except OSError:
        return False


def _mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"
