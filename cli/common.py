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


def handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except RPCClientError as exc:
            detail = f" ({json.dumps(exc.data, sort_keys=True)})" if exc.data else ""
            raise CLIError(f"rejected by node [{exc.code}]: {exc}{detail}") from None
        except (NodeError, StateError, OSError) as exc:
            raise CLIError(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def emit(data: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    elif human is not None:
        click.echo(human(data))
    else:
        click.echo(render(data))


def render(data: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(data, dict):
        lines = []
        for key, value in data.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.append(render(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {value if value not in ({}, []) else '-'}")
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
