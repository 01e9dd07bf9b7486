"""Shared CLI plumbing: error handling, output, key resolution, the node client."""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from node import rpc_calls
from node.client import Client, RPCClientError
from node.config import default_home
from node.errors import NodeError
from state.amounts import QNX, QNX_DECIMALS
from state.crypto import PrivateKey
from state.errors import StateError
from state.keyfile import keyfile_warnings, load_keyfile

F = TypeVar("F", bound=Callable[..., Any])

PASSWORD_ENV = "QENEX_PASSWORD"


class CLIError(click.ClickException):
    """One clear line on stderr and exit status 1."""


# What reading a node's answer of the wrong shape raises: a missing field, a field of the wrong type or
# value (a time past what datetime takes is an OverflowError), or nesting deeper than a renderer recurses.
MALFORMED_ANSWER_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError,
                           RecursionError)
MAX_ERROR_CHARS = 1000


def printable(text: str, limit: int | None = None, *, one_line: bool = False) -> str:
    """``text`` safe for a terminal: control and other unprintable characters (a node's text may carry
    escape sequences) shown escaped, newlines kept unless ``one_line``; at most ``limit`` characters."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + f"... ({len(text) - limit} more characters)"
    lines = [text] if one_line else text.split("\n")
    return "\n".join(line if line.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
                     for line in lines)


def _malformed(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no field {exc.args[0]!r:.100}" if exc.args else "a field is missing"
    if isinstance(exc, RecursionError):
        return "nested too deeply to read"
    return f"{type(exc).__name__}: {exc}"


def handle_errors(func: F) -> F:
    """Every failure as one clear CLIError line.  In a command that talks to a node (an ``rpc`` option),
    a KeyError, TypeError, ... is the node's answer not having the shape the command reads: it is
    reported as a malformed answer of that node, not as a traceback."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except RPCClientError as exc:
            raise CLIError(printable(f"rejected by node [{exc.code}]: {exc}{_error_data(exc.data)}",
                                     MAX_ERROR_CHARS, one_line=True)) from None
        except (NodeError, StateError, OSError) as exc:
            raise CLIError(printable(str(exc), MAX_ERROR_CHARS, one_line=True)) from None
        except MALFORMED_ANSWER_ERRORS as exc:
            if "rpc" not in kwargs:
                raise  # not a node's answer: a bug of ours, traceback and all
            raise CLIError(printable(f"node at {kwargs['rpc']} gave a malformed answer: {_malformed(exc)}",
                                     MAX_ERROR_CHARS, one_line=True)) from None

    return wrapper  # type: ignore[return-value]


def _error_data(data: Any) -> str:
    if not data:
        return ""
    try:
        return f" ({json.dumps(data, sort_keys=True)})"
    except (TypeError, ValueError, RecursionError):
        return f" ({data!r:.200})"


def emit(data: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))  # ensure_ascii: no control character passes
    else:
        click.echo(printable(human(data) if human is not None else render(data)))


def render(data: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(data, dict):
        lines = []
        for key, value in data.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.append(render(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {'-' if value is None or value in ({}, []) else value}")
        return "\n".join(lines)
    if isinstance(data, list):
        return "\n".join(
            f"{pad}-\n{render(item, indent + 1)}" if isinstance(item, (dict, list)) else f"{pad}- {item}"
            for item in data
        )
    return f"{pad}{data}"


home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: str(default_home()),
    show_default="platform data dir",
    help="Node home directory.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
rpc_option = click.option(
    "--rpc",
    default="http://127.0.0.1:26657/",
    show_default=True,
    envvar="QENEX_RPC",
    help="JSON-RPC URL of a node (env QENEX_RPC).",
)


def now_ms() -> int:
    """The wall clock in integer milliseconds (block times are compared with it to show ages)."""
    return time.time_ns() // 1_000_000


def decimals_of(client: Client, symbols: Any) -> Callable[[str], int | None]:
    """A lookup of each token's decimals, asked in batches of at most 100 (None for a token the node lacks)."""
    known: dict[str, int | None] = {QNX: QNX_DECIMALS}
    wanted = sorted(set(symbols) - known.keys())
    for start in range(0, len(wanted), 100):
        chunk = wanted[start:start + 100]
        for symbol, answer in zip(chunk, client.batch([rpc_calls.token(s) for s in chunk])):
            known[symbol] = None if isinstance(answer, RPCClientError) else int(answer["decimals"])
    return lambda symbol: known.get(symbol)


def keyring_dir(home: Path) -> Path:
    return home / "keyring"


def password_for(path: Path) -> str | None:
    """The password for an encrypted key file (env QENEX_PASSWORD or prompt)."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # load_keyfile reports the real problem
    if not info.get("encrypted", True):
        return None
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV]
    return click.prompt(f"Password for {path.name}", hide_input=True, err=True)


def resolve_key(name_or_path: str, home: Path) -> PrivateKey:
    path = Path(name_or_path)
    if not path.is_file():
        candidate = keyring_dir(home) / f"{name_or_path}.json"
        if not candidate.is_file():
            raise CLIError(f"no key file {name_or_path!r} and no key named {name_or_path!r} in {keyring_dir(home)}")
        path = candidate
    key = load_keyfile(path, password_for(path))
    for warning in keyfile_warnings(path):
        click.echo(f"warning: {warning}", err=True)
    return key
