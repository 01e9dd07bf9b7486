"""Staking commands (issue 10): ``qenexd tx validator create|edit``, ``tx stake|unstake|redelegate|unjail``,
``tx rewards withdraw``, ``query staking ADDRESS``, ``query epoch``.

Amounts on the command line are whole QNX (``--amount 12.5``); ``--validator`` is the validator's
operator address (``qnx1...``: the account that created it; for a genesis validator, its node key's
address).  They register on the ``tx`` and ``query`` groups from ``cli.main``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.common import CLIError, emit, handle_errors, json_option, resolve_key, rpc_option
from cli.tx import _common, _send
from node import txbuild
from node.client import Client
from state.amounts import QNX_DECIMALS, format_amount, parse_amount
from state.crypto import address_to_text


def _qnx(text: str, what: str) -> int:
    try:
        return parse_amount(text, QNX_DECIMALS)
    except Exception as exc:
        raise CLIError(f"{what}: {exc}") from None


@click.group()
def validator() -> None:
    """Register and edit a validator."""


@validator.command("create")
@_common
@click.option("--consensus-key", default=None,
              help="The consensus key (a key name or key file, e.g. a node's config/node_key.json): it signs the "
                   "proof that it agrees to validate for the --from operator; default: the --from key.")
@click.option("--moniker", required=True, help="A name for people (1-64 printable characters).")
@click.option("--commission-bps", default=0, show_default=True, type=click.IntRange(0, 10_000),
              help="Commission on delegators' rewards, in basis points (bounded by params.staking.max_commission_bps).")
@click.option("--self-bond", required=True, help="QNX bonded by you, whole units (at least min_self_bond).")
@handle_errors
def validator_create(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
                     consensus_key: str | None, moniker: str, commission_bps: int, self_bond: str) -> None:
    """Register the --from account as the operator of a validator; it joins the set from the next epoch."""
    amount = _qnx(self_bond, "--self-bond")
    key = resolve_key(sender, home)
    signer = key if consensus_key is None else resolve_key(consensus_key, home)
    _send(sender, home, rpc, fee, wait, timeout, as_json,
          lambda c: txbuild.validator_create(signer, key.address, c.status()["chain_id"], moniker, commission_bps,
                                             amount))


@validator.command("edit")
@_common
@click.option("--moniker", required=True)
@click.option("--commission-bps", required=True, type=click.IntRange(0, 10_000),
              help="New commission (moves at most max_commission_change_bps, once per epoch).")
@handle_errors
def validator_edit(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
                   moniker: str, commission_bps: int) -> None:
    """Change your validator's moniker and commission."""
    payload = txbuild.validator_edit(moniker, commission_bps)
    _send(sender, home, rpc, fee, wait, timeout, as_json, lambda c: payload)


@click.command()
@_common
@click.option("--validator", "operator", required=True, help="The validator's operator address (qnx1...).")
@click.option("--amount", required=True, help="QNX, whole units.")
@handle_errors
def stake(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
          operator: str, amount: str) -> None:
    """Delegate QNX to a validator (it counts from the next epoch)."""
    payload = txbuild.stake(txbuild.address(operator, "--validator"), _qnx(amount, "--amount"))
    _send(sender, home, rpc, fee, wait, timeout, as_json, lambda c: payload)


@click.command()
@_common
@click.option("--validator", "operator", required=True, help="The validator's operator address (qnx1...).")
@click.option("--amount", default=None, help="QNX, whole units.")
@click.option("--all", "everything", is_flag=True, help="Everything you have staked with that validator.")
@handle_errors
def unstake(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
            operator: str, amount: str | None, everything: bool) -> None:
    """Start unbonding: the stake stops counting at the next epoch and returns after unbonding_blocks."""
    if (amount is None) == (not everything):
        raise CLIError("give exactly one of --amount and --all")
    validator_address = txbuild.address(operator, "--validator")
    key = resolve_key(sender, home)

    def build(client: Client) -> Any:
        if not everything:
            return txbuild.unstake(validator_address, _qnx(amount or "", "--amount"))
        staked = client.staking(address_to_text(key.address))
        target = address_to_text(validator_address)
        held = next((int(d["amount"]) for d in staked["delegations"] if d["validator"] == target), 0)
        if not held:
            raise CLIError(f"{address_to_text(key.address)} has no stake with {target}")
        return txbuild.unstake(validator_address, held)

    _send(sender, home, rpc, fee, wait, timeout, as_json, build)


@click.command()
@_common
@click.option("--source", required=True, help="Operator address of the validator the stake leaves.")
@click.option("--destination", required=True, help="Operator address of the validator it moves to.")
@click.option("--amount", required=True, help="QNX, whole units.")
@handle_errors
def redelegate(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
               source: str, destination: str, amount: str) -> None:
    """Move bonded stake to another validator without unbonding (one per destination per unbonding period)."""
    payload = txbuild.redelegate(txbuild.address(source, "--source"), txbuild.address(destination, "--destination"),
                                 _qnx(amount, "--amount"))
    _send(sender, home, rpc, fee, wait, timeout, as_json, lambda c: payload)


@click.command()
@_common
@handle_errors
def unjail(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool) -> None:
    """Make your jailed validator eligible again after its jail period (never once tombstoned)."""
    _send(sender, home, rpc, fee, wait, timeout, as_json, lambda c: txbuild.unjail())


@click.command("withdraw")
@_common
@handle_errors
def rewards_withdraw(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float,
                     as_json: bool) -> None:
    """Withdraw your staking rewards from every delegation, and your commission as an operator."""
    _send(sender, home, rpc, fee, wait, timeout, as_json, lambda c: txbuild.staking_rewards_withdraw())


def _q(units: str) -> str:
    return f"{format_amount(int(units), QNX_DECIMALS)} QNX"


def render_staking(s: dict[str, Any]) -> str:
    lines = [f"address          {s['address']}", f"height           {s['height']:,}",
             f"pending rewards  {_q(s['pending_rewards'])}"]
    for d in s["delegations"]:
        lines.append(f"delegation       {_q(d['amount'])} with {d['validator']} (rewards {_q(d['pending_rewards'])})")
    for e in s["unbonding"]:
        lines.append(f"unbonding        {_q(e['balance'])} from {e['validator']}, returns at height "
                     f"{e['maturity_height']:,}")
    for r in s["redelegations"]:
        lines.append(f"redelegation     {_q(r['amount'])} {r['source']} -> {r['destination']} until "
                     f"{r['maturity_height']:,}")
    v = s.get("validator")
    if v:
        state = "tombstoned" if v["tombstoned"] else f"jailed until {v['jailed_until']:,}" if v["jailed"] else "active"
        lines.append(f"validator        {v['moniker']}: stake {_q(v['stake'])}, self-bond {_q(v['self_bond'])}, "
                     f"commission {v['commission_bps']} bps, {state}, set power {v['active_power'] or 0}")
    return "\n".join(lines)


@click.command("staking")
@click.argument("address")
@click.option("--height", default=None, type=int, help="State at a past height.")
@rpc_option
@json_option
@handle_errors
def query_staking(address: str, height: int | None, rpc: str, as_json: bool) -> None:
    """Delegations, unbonding entries (with maturity heights), redelegations and pending rewards of ADDRESS."""
    client = Client(rpc)
    answer = client.staking(address) if height is None else client.staking(address, height)
    emit(answer, as_json, render_staking)


@click.command("epoch")
@rpc_option
@json_option
@handle_errors
def query_epoch(rpc: str, as_json: bool) -> None:
    """The next block's epoch: its heights, and the height from which the next validator set signs."""
    emit(Client(rpc).epoch(), as_json)


def render_evidence(page: dict[str, Any]) -> str:
    if not page["evidence"]:
        return f"no equivocation applied (as of height {page['height']:,})"
    lines = []
    for e in page["evidence"]:
        lines.append(f"height {e['height']:,}  {e['validator']} (operator {e['operator']}): slashed {_q(e['burned'])}, "
                     f"tombstoned, in block {e['included_height']:,}")
    if page["next"]:
        lines.append(f"more: --from-height {page['next']['from_height']} --after {page['next']['after']}")
    return "\n".join(lines)


@click.command("evidence")
@click.option("--from-height", default=0, type=click.IntRange(min=0), help="First infraction height listed.")
@click.option("--after", default=None, help="At --from-height, list only validators after this address (paging).")
@click.option("--limit", default=100, type=click.IntRange(1, 100), show_default=True)
@rpc_option
@json_option
@handle_errors
def query_evidence(from_height: int, after: str | None, limit: int, rpc: str, as_json: bool) -> None:
    """Equivocations the chain applied: who, at what height, what was burned, in which block."""
    emit(Client(rpc).evidence(from_height, after, limit), as_json, render_evidence)


def register(tx: click.Group, rewards: click.Group, query: click.Group) -> None:
    tx.add_command(validator)
    for command in (stake, unstake, redelegate, unjail):
        tx.add_command(command)
    rewards.add_command(rewards_withdraw)
    query.add_command(query_staking)
    query.add_command(query_epoch)
    query.add_command(query_evidence)
