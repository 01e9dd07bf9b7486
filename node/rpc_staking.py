"""JSON-RPC methods of staking (issue 10), and the staking fields of ``qenex_getValidators``.

| method | params | result |
|---|---|---|
| ``qenex_getStaking`` | address, height? | ``{address, height, delegations: [{validator, shares, amount, pending_rewards}], unbonding: [{validator, initial, balance, creation_height, maturity_height}], redelegations: [{source, destination, amount, creation_height, maturity_height}], pending_rewards, validator (the one it operates, or null)}`` |
| ``qenex_getEpoch`` | — | ``{epoch, epoch_length, first_height, last_height, next_set_height, height}`` for the next block's epoch |
| ``qenex_getStakingValidators`` | height? | every validator record (candidates, the active set and the ones that left) |
| ``qenex_getEvidence`` | from_height?, after?, limit? | ``{height, evidence: [{height, validator, operator, included_height, burned, evidence}], next: {from_height, after} or null}``: equivocations the chain applied, by infraction height then validator, one page; pass ``next`` back for the following one |

Validator records carry ``missed_blocks`` (the commits it missed in the current downtime window)
and ``window_start`` (the first height of that window, null while it is not tracked).

Amounts and shares are decimal strings of QNX base units.  On a chain
without staking ``qenex_getStaking`` and ``qenex_getStakingValidators`` are
-32004 ("this chain has no staking").
"""

from __future__ import annotations

from typing import Any, Callable

from node.jsonrpc import NOT_FOUND, RPCError
from node.rpc_context import RpcContext
from node.rpc_params import hex0x, parse_address, parse_int, state_at
from state.app import Application
from state.crypto import address_of, address_to_text
from state.errors import HeightUnavailable
from state.staking import Validator
from state.staking_queries import StakingQueries


EVIDENCE_PAGE_MAX = 100


def _signing(q: StakingQueries, v: Validator) -> dict[str, Any]:
    info = q.signing_info(address_of(v.pubkey))
    return {"missed_blocks": 0 if info is None else info.missed,
            "window_start": None if info is None else info.start_height}


def validator_json(v: Validator, self_bond: int, active_power: int | None, q: StakingQueries) -> dict[str, Any]:
    return {
        **_signing(q, v),
        "operator": address_to_text(v.operator),
        "address": address_to_text(address_of(v.pubkey)),
        "pubkey": hex0x(v.pubkey),
        "moniker": v.moniker,
        "stake": str(v.tokens),
        "shares": str(v.shares),
        "self_bond": str(self_bond),
        "commission_bps": v.commission_bps,
        "commission_unclaimed": str(v.commission),
        "jailed": v.jailed,
        "jailed_until": v.jailed_until,
        "tombstoned": v.tombstoned,
        "power": str(v.power),
        "active_power": None if active_power is None else str(active_power),
        "created_height": v.created_height,
    }


def _queries(app: Application, height: Any) -> tuple[StakingQueries, int]:
    if app.params.staking is None:
        raise RPCError(NOT_FOUND, "this chain has no staking (its genesis has no staking section)")
    view = state_at(app, height)
    return StakingQueries(view.store, app.params), view.height


def staking_fields(app: Application, set_height: int) -> dict[bytes, dict[str, Any]]:
    """Staking's view of each member of the set that signs ``set_height``, by consensus address:
    read from the state that fixed that set (the end of block ``set_height − 1``, or the head if
    later), {} without staking or when that state is no longer kept."""
    if app.params.staking is None:
        return {}
    try:
        view = app.at(min(max(set_height - 1, 0), app.height))
    except HeightUnavailable:
        return {}
    q = StakingQueries(view.store, app.params)
    out = {}
    for v in q.validators():
        out[bytes(address_of(v.pubkey))] = {
            "operator": address_to_text(v.operator), "moniker": v.moniker, "stake": str(v.tokens),
            "self_bond": str(q.self_bond(v)), "commission_bps": v.commission_bps, "jailed": v.jailed,
            "tombstoned": v.tombstoned, **_signing(q, v),
        }
    return out


def staking_methods(ctx: RpcContext) -> dict[str, Callable[..., Any]]:
    app = ctx.app

    def get_staking(address: Any, height: Any = None) -> dict[str, Any]:
        who = parse_address(address)
        q, at = _queries(app, height)
        account = q.account(who)
        own = account.validator
        active = q.active()
        return {
            "address": address_to_text(who),
            "height": at,
            "delegations": [{"validator": address_to_text(d.validator), "shares": str(d.shares),
                             "amount": str(d.amount), "pending_rewards": str(d.pending_rewards)}
                            for d in account.delegations],
            "unbonding": [{"validator": address_to_text(e.validator), "initial": str(e.initial),
                           "balance": str(e.balance), "creation_height": e.creation_height,
                           "maturity_height": e.maturity_height} for e in account.unbonding],
            "redelegations": [{"source": address_to_text(r.source), "destination": address_to_text(r.destination),
                               "amount": str(r.amount), "creation_height": r.creation_height,
                               "maturity_height": r.maturity_height} for r in account.redelegations],
            "pending_rewards": str(sum(d.pending_rewards for d in account.delegations)
                                   + (own.commission if own is not None else 0)),
            "validator": None if own is None else validator_json(own, account.self_bond, active.get(own.pubkey), q),
        }

    def get_epoch() -> dict[str, Any]:
        info = app.epoch_info()
        return {"epoch": info.epoch, "epoch_length": info.epoch_length, "first_height": info.first_height,
                "last_height": info.last_height, "next_set_height": info.next_set_height, "height": app.height,
                "staking": app.params.staking is not None}

    def get_staking_validators(height: Any = None) -> dict[str, Any]:
        q, at = _queries(app, height)
        active = q.active()
        return {"height": at, "validators": [validator_json(v, q.self_bond(v), active.get(v.pubkey), q)
                                             for v in q.validators()]}

    def get_evidence(from_height: Any = 0, after: Any = None, limit: Any = EVIDENCE_PAGE_MAX) -> dict[str, Any]:
        start = parse_int(from_height, "from_height", 0, 2**63 - 1)
        past = None if after is None else parse_address(after)
        count = parse_int(limit, "limit", 1, EVIDENCE_PAGE_MAX)
        q, at = _queries(app, None)
        records = q.evidence(from_height=start, after=past, limit=count + 1)
        page = records[:count]
        return {
            "height": at,
            "evidence": [{"height": r.height, "validator": address_to_text(r.validator),
                          "operator": address_to_text(r.operator), "included_height": r.included_height,
                          "burned": str(r.burned), "evidence": hex0x(r.evidence)} for r in page],
            "next": ({"from_height": page[-1].height, "after": address_to_text(page[-1].validator)}
                     if len(records) > count else None),
        }

    return {
        "qenex_getStaking": get_staking,
        "qenex_getEpoch": get_epoch,
        "qenex_getStakingValidators": get_staking_validators,
        "qenex_getEvidence": get_evidence,
    }
