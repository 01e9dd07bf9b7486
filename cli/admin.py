"""``qenexd admin``: enrol the TOTP second factor, and call a running node's admin API."""

from __future__ import annotations

import functools
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import click

from cli.common import CLIError, emit, handle_errors, json_option
from node.admin_auth import OTP_HEADER, enroll as enroll_secret
from node.config import Home

DEFAULT_ADMIN_URL = "http://127.0.0.1:26700/"
TOKEN_ENV = "QENEX_ADMIN_TOKEN"


def admin_call(url: str, token: str, method: str, params: Any, otp: str | None = None) -> Any:
    """One JSON-RPC call to the admin API; a refusal or error is one CLIError line."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    if otp is not None:
        headers[OTP_HEADER] = otp
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise CLIError(f"cannot reach the admin API at {url}: {getattr(exc, 'reason', exc)}") from None
    try:
        reply = json.loads(raw or b"{}")
    except ValueError:
        raise CLIError(f"the admin API at {url} answered HTTP {status} with a body that is not JSON") from None
    if not isinstance(reply, dict):
        raise CLIError(f"the admin API at {url} answered HTTP {status} with {type(reply).__name__}")
    if "error" in reply:
        error = reply["error"] if isinstance(reply["error"], dict) else {}
        raise CLIError(f"admin API refused (HTTP {status}) [{error.get('code')}]: {error.get('message')}")
    return reply.get("result")


def _endpoint(home: Path | None, url: str | None, token: str | None) -> tuple[str, str]:
    """The URL and token: given, or read from the node home's config ([admin], or the old [risk] keys)."""
    if home is not None and (url is None or token is None):
        settings = Home(home).load_config().admin_settings()
        if url is None:
            if not settings.port:
                raise CLIError(f"{Home(home).config_file} sets no admin port: the admin API is off")
            url = f"http://{settings.host}:{settings.port}/"
        token = token if token is not None else settings.token
    if not token:
        raise CLIError(f"give the admin token: --token, ${TOKEN_ENV}, or --home of the node")
    return url or DEFAULT_ADMIN_URL, token


def client_command(*, otp: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An admin API command: --admin, --token, --home (where to find them), --otp when it changes state."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def run(admin_url: str | None, token: str | None, home: Path | None, as_json: bool,
                otp_code: str | None = None, **kwargs: Any) -> None:
            url, tok = _endpoint(home, admin_url, token)
            method, params = func(**kwargs)
            emit(admin_call(url, tok, method, params, otp_code), as_json)

        command = handle_errors(run)
        command = json_option(command)
        if otp:
            command = click.option("--otp", "otp_code", required=True,
                                   help="The current TOTP code (6 digits) of the enrolled secret.")(command)
        command = click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
                               help="Node home: take the admin URL and token from its node.toml.")(command)
        command = click.option("--token", default=None, envvar=TOKEN_ENV,
                               help=f"The [admin] token (env {TOKEN_ENV}).")(command)
        command = click.option("--admin", "admin_url", default=None, envvar="QENEX_ADMIN",
                               help=f"Admin API URL (env QENEX_ADMIN; default {DEFAULT_ADMIN_URL}).")(command)
        return command

    return wrap


@click.group()
def admin() -> None:
    """A running node's admin API (loopback, token; TOTP for state changes) and TOTP enrolment."""


@admin.command()
@click.option("--home", required=True, type=click.Path(file_okay=False, path_type=Path), help="Node home directory.")
@click.option("--force", is_flag=True, help="Replace an existing secret (codes from the old one stop working).")
@json_option
@handle_errors
def enroll(home: Path, force: bool, as_json: bool) -> None:
    """Create the admin TOTP secret (0600, unencrypted, in the home) and print it ONCE with an otpauth:// URI."""
    h = Home(home)
    config = h.load_config()  # a node home, not any directory
    secret, uri = enroll_secret(h.admin_totp_file, name=config.name, force=force)
    out = {"secret": secret, "otpauth_uri": uri, "file": str(h.admin_totp_file),
           "note": "shown once: add it to an authenticator app now (the file is 0600 and not encrypted)"}
    emit(out, as_json, lambda d: (f"TOTP secret: {d['secret']}\notpauth URI: {d['otpauth_uri']}\n"
                                  f"stored in {d['file']} (0600, not encrypted); shown once: add it to an "
                                  "authenticator app now"))


@admin.command()
@client_command(otp=False)
def status() -> tuple[str, Any]:
    """Height, peers, mempool, risk model, enrolment and audit log position."""
    return "admin_status", []


@admin.command()
@client_command(otp=False)
def peers() -> tuple[str, Any]:
    """Connected and banned peers."""
    return "admin_peers", []


@admin.command()
@click.argument("peer")
@client_command(otp=True)
def ban(peer: str) -> tuple[str, Any]:
    """Ban a peer (libp2p peer id) for the p2p ban period."""
    return "admin_ban", [peer]


@admin.command()
@click.argument("peer")
@client_command(otp=True)
def unban(peer: str) -> tuple[str, Any]:
    """Lift a peer's ban now."""
    return "admin_unban", [peer]


@admin.command("flush-mempool")
@client_command(otp=True)
def flush_mempool() -> tuple[str, Any]:
    """Drop every pending and queued transaction."""
    return "admin_flush_mempool", []


@admin.command()
@click.option("--params", "params_json", default="{}", show_default=True,
              help="Named parameters of admin_snapshot, as a JSON object.")
@client_command(otp=True)
def snapshot(params_json: str) -> tuple[str, Any]:
    """Ask the node for a state snapshot."""
    try:
        params = json.loads(params_json)
    except ValueError as exc:
        raise CLIError(f"--params is not JSON: {exc}") from None
    if not isinstance(params, dict):
        raise CLIError("--params must be a JSON object")
    return "admin_snapshot", params


@admin.command()
@client_command(otp=True)
def shutdown() -> tuple[str, Any]:
    """Stop the node gracefully (as SIGTERM does)."""
    return "admin_shutdown", []


@admin.command("risk-versions")
@client_command(otp=False)
def risk_versions() -> tuple[str, Any]:
    """The running node's kept risk model versions and the current one."""
    return "risk_versions", []


def feedback_params(tx_hash: str | None, raw: str | None, label: str, steps: int) -> dict[str, Any]:
    params: dict[str, Any] = {"label": 1 if label == "fraud" else 0, "steps": steps}
    if tx_hash:
        params["hash"] = tx_hash
    if raw:
        params["raw"] = raw
    return params


@admin.command("risk-feedback")
@click.option("--hash", "tx_hash", default=None, help="A transaction the node has seen ...")
@click.option("--raw", default=None, help="... or a signed transaction (0x-hex).")
@click.option("--label", required=True, type=click.Choice(["fraud", "legit"]))
@click.option("--steps", default=30, show_default=True, type=click.IntRange(1, 500))
@client_command(otp=True)
def risk_feedback(tx_hash: str | None, raw: str | None, label: str, steps: int) -> tuple[str, Any]:
    """Labelled feedback: the node trains, saves and switches to a new model version."""
    return "risk_feedback", feedback_params(tx_hash, raw, label, steps)


@admin.command("risk-rollback")
@client_command(otp=True)
def risk_rollback() -> tuple[str, Any]:
    """Make the running node's previous model version current."""
    return "risk_rollback", []


@admin.command("risk-restore")
@click.option("--version", "version", required=True, type=int)
@client_command(otp=True)
def risk_restore(version: int) -> tuple[str, Any]:
    """Make a kept model version current on the running node."""
    return "risk_restore", [version]
