"""`triplicate init`: a commented starter config for the user's case, so that
nobody starts from a blank file.

It asks a few questions on a terminal (each with a default), or takes every
answer from flags (`--watch-folder`, `--nearline`, `--offsite s3://bucket/prefix`,
...) for scripts. The file it writes is validated by the same loader the
daemon uses before it is written, and is never written over without `--force`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import platformdirs

from .errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class Answers:
    output: Path
    watch: str
    source_media: str = "ssd"
    nearline: str | None = None
    nearline_media: str = "raid"
    offsite: str | None = None  # s3://bucket/prefix, azure://container/prefix, sftp://user@host:port/path
    s3_region: str | None = None
    s3_endpoint: str | None = None
    azure_account_url: str | None = None
    sftp_key: str = "~/.ssh/id_ed25519"
    journal: str | None = None
    http_port: int | None = None
    webhook_env: str | None = None
    webhook_format: str = "slack"
    problems: list[str] = field(default_factory=list)


def run_init(args: argparse.Namespace) -> int:
    from .cli import default_config

    output = args.output or args.config or default_config()
    if output.exists() and not args.force:
        return _say([f"{output} exists; pass --force to replace it, or --output to write elsewhere"], EXIT_USAGE)
    ask = _asker() if sys.stdin.isatty() and not args.non_interactive else None
    try:
        answers = _answers(args, Path(output), ask)
    except (EOFError, KeyboardInterrupt):
        return _say(["cancelled; nothing written"], EXIT_USAGE)
    if answers.problems:
        return _say(answers.problems, EXIT_USAGE)
    text = render(answers)
    problems = _validate(text, Path(output))
    if problems:
        return _say(["the config this produced does not load (please report this):", *problems], EXIT_FAILED)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(text, encoding="utf-8")
    print(f"wrote {output}\nnext: triplicate --config {output} doctor   (checks every folder and destination)\n"
          f"      triplicate --config {output} run")
    return EXIT_OK


def _say(lines: list[str], code: int) -> int:
    for line in lines:
        print(f"triplicate: {line}", file=sys.stderr)
    return code


# ---- questions ---------------------------------------------------------------------


Ask = Callable[[str, str | None], str]


def _asker() -> Ask:
    def ask(question: str, default: str | None) -> str:
        hint = f" [{default}]" if default else ""
        reply = input(f"{question}{hint}: ").strip()
        return reply or (default or "")

    return ask


def _answers(args: argparse.Namespace, output: Path, ask: Ask | None) -> Answers:
    def get(value: str | None, question: str, default: str | None) -> str | None:
        if value is not None or ask is None:
            return value if value is not None else default
        return ask(question, default) or None

    watch = get(args.watch_folder, "Watch folder (where verified card copies land)", None)
    a = Answers(output=output, watch=watch or "")
    if not watch:
        a.problems.append("a watch folder is needed: pass --watch-folder PATH (the folder your offload tool copies cards into)")
        return a
    a.source_media = get(args.source_media, "Media of the watch folder (ssd, raid, ...)", "ssd") or "ssd"
    a.nearline = get(args.nearline, "Nearline copy: a mounted folder (empty for none)", None)
    if a.nearline:
        a.nearline_media = get(args.nearline_media, "Media of the nearline copy (raid, nas, disk, lto)", "raid") or "raid"
    a.offsite = get(args.offsite, "Off-site copy: s3://BUCKET/PREFIX, azure://CONTAINER/PREFIX, sftp://USER@HOST/PATH (empty for none)", None)
    _offsite_details(a, args, get)
    a.journal = get(args.journal, "Journal file (empty: the platform's state folder)", None)
    port = get(None if args.http_port is None else str(args.http_port), "Port for /metrics and /healthz on 127.0.0.1 (empty for none)", None)
    a.http_port = int(port) if port and port.isdigit() else None
    if port and not port.isdigit():
        a.problems.append(f"--http-port {port!r} is not a port number")
    a.webhook_env = get(args.webhook_env, "Environment variable holding a Slack webhook URL (empty for none)", None)
    if not a.nearline and not a.offsite:
        a.problems.append("no destination: pass --nearline PATH and/or --offsite URL (3-2-1 needs two more copies)")
    return a


def _offsite_details(a: Answers, args: argparse.Namespace, get: Callable[..., str | None]) -> None:
    if not a.offsite:
        return
    scheme = urlparse(a.offsite).scheme
    if scheme not in ("s3", "azure", "sftp"):
        a.problems.append(f"--offsite {a.offsite!r}: start it with s3://, azure:// or sftp://")
    elif scheme == "s3":
        a.s3_region = get(args.s3_region, "S3 region", "us-east-1")
        a.s3_endpoint = get(args.s3_endpoint, "S3-compatible endpoint URL (empty for AWS)", None)
    elif scheme == "azure":
        a.azure_account_url = get(args.azure_account_url, "Azure blob endpoint (empty: use a connection string)", None)
    else:
        a.sftp_key = get(args.sftp_key, "Private key for the SFTP login", "~/.ssh/id_ed25519") or a.sftp_key


# ---- the file ------------------------------------------------------------------------


def _q(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is JSON's string syntax for these values


def render(a: Answers) -> str:
    dests = (["nearline"] if a.nearline else []) + (["offsite"] if a.offsite else [])
    out = [
        "# triplicate: every camera file gets three verified copies (3-2-1), each checked by",
        "# xxHash64 and recorded in an ASC MHL history at the destination.",
        "# Written by `triplicate init`. Relative paths resolve against this file's folder.",
        "# Check it: triplicate --config THIS_FILE doctor",
        "",
        "[daemon]",
        f"journal = {_q(a.journal)}   # the only truth about every copy; keep it on a local disk"
        if a.journal else "# journal = \"/var/lib/triplicate/journal.db\"   # default: the platform's state folder",
        'log_format = "console"           # "json" for log shippers',
        "rescan_seconds = 300             # full rescan: file events get lost on network shares",
        "shutdown_grace_seconds = 20      # a stop waits this long for copies in progress",
        "",
        "[daemon.retry]",
        "first_delay = 5                  # seconds before the first retry, then doubling...",
        "max_delay = 900                  # ...up to this; retries go on forever",
        "",
        "[[watch]]",
        f"path = {_q(a.watch)}",
        f"media = {_q(a.source_media)}    # copy 1 of 3 is the source itself",
        "settle_seconds = 10              # a file is ready when it held still this long",
        f"destinations = {json.dumps(dests)}",
        "",
    ]
    if a.nearline:
        out += _nearline(a)
    if a.offsite:
        out += _offsite(a)
    out += _extras(a)
    return "\n".join(_align(line) for line in out) + "\n"


_TRAILING = re.compile(r"^(?!#)(.*?\S)\s{2,}# (.*)$")


def _align(line: str) -> str:
    """Trailing comments in one column."""
    m = _TRAILING.match(line)
    return line if m is None else f"{m.group(1):<33} # {m.group(2)}"


def _nearline(a: Answers) -> list[str]:
    return [
        "[[destination]]",
        'name = "nearline"',
        'type = "local"                   # a mounted path: RAID, NAS, second disk',
        f"path = {_q(a.nearline or '')}",
        f"media = {_q(a.nearline_media)}     # counts toward 3-2-1's two kinds of media",
        "offsite = false",
        "concurrency = 2                  # files copied at once",
        "",
    ]


def _offsite(a: Answers) -> list[str]:
    url = urlparse(a.offsite or "")
    prefix = url.path.strip("/")
    head = ["[[destination]]", 'name = "offsite"']
    if url.scheme == "s3":
        body = ['type = "s3"', f"bucket = {_q(url.netloc)}", f"prefix = {_q(prefix)}",
                f"region = {_q(a.s3_region or 'us-east-1')}"]
        body += [f"endpoint_url = {_q(a.s3_endpoint)}   # S3-compatible service"] if a.s3_endpoint else \
                ["# endpoint_url = \"https://s3.wasabisys.com\"   # for S3-compatible services"]
        body += ["# credentials: the standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws),",
                 '# or name the variables: access_key_id_env = "MY_KEY_ID", secret_access_key_env = "MY_SECRET"']
    elif url.scheme == "azure":
        body = ['type = "azure"', f"container = {_q(url.netloc)}", f"prefix = {_q(prefix)}"]
        body += [f"account_url = {_q(a.azure_account_url)}", '# account_key_env = "AZURE_STORAGE_KEY"   # NAME of the variable']\
            if a.azure_account_url else ['connection_string_env = "AZURE_STORAGE_CONNECTION_STRING"   # NAME of the variable, never the string']
    else:
        body = ['type = "sftp"', f"host = {_q(url.hostname or '')}", f"port = {url.port or 22}",
                f"username = {_q(url.username or 'triplicate')}", f"key_file = {_q(a.sftp_key)}",
                '# known_hosts = "~/.ssh/known_hosts"   # must hold the server\'s host key',
                f"path = {_q('/' + prefix if url.path.startswith('/') else prefix or '.')}"]
    return head + body + ["offsite = true                   # counts toward 3-2-1's one off-site copy", ""]


def _extras(a: Answers) -> list[str]:
    out = []
    if a.http_port:
        out += ["[http]                           # /healthz /readyz /metrics /api/status",
                'host = "127.0.0.1"',
                f"port = {a.http_port}",
                '# token_env = "TRIPLICATE_TOKEN"   # NAME of a variable holding a bearer token for /metrics and /api/', ""]
    else:
        out += ["# [http]                         # /healthz /readyz /metrics /api/status", "# port = 9321", ""]
    if a.webhook_env:
        out += ["[[notify]]                       # offload ready / safe to format / failures",
                f"url_env = {_q(a.webhook_env)}   # NAME of the variable holding the webhook URL",
                f"format = {_q(a.webhook_format)}", ""]
    else:
        out += ["# [[notify]]                     # a webhook or a command per event",
                '# url_env = "SLACK_WEBHOOK_URL"', '# format = "slack"', ""]
    return out


def _validate(text: str, output: Path) -> list[str]:
    """Load it as the daemon would, from the folder it will live in (relative paths)."""
    # imported here, not at the top: cli.py imports this module for every command
    from .config import load_config

    folder = output.parent if output.parent.is_dir() else Path(platformdirs.user_config_dir("triplicate"))
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", dir=folder if folder.is_dir() else None,
                                         delete=True, encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            load_config(fh.name)
    except ConfigError as exc:
        return exc.problems
    return []
