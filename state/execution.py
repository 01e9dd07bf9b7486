"""Executing transactions on an overlay: inclusion checks, fees, per-kind effects.

A transaction is *includable* when its signature is valid, its chain id is
ours, it fits ``max_tx_bytes``, its fee covers ``gas(kind) * min_gas_price``,
its nonce is the sender's next nonce and the sender's QNX balance covers the
fee.  An includable transaction always pays its fee and advances the nonce;
its effect then runs on a child overlay and, if it fails, is dropped and the
receipt says ``failed`` with the reason.  The fees of a block go to its
proposer once the block's transactions have run; on a chain with staking
they go instead, with the per-block issuance, to the validators that signed
the previous block's commit certificate (``reward_signers``), pro rata to
their power (state.staking).
"""

from __future__ import annotations

from typing import Callable

from state.amounts import MAX_AMOUNT, QNX
from state.codec import encode
from state.crypto import Hash, address_to_text, domain_digest, verify
from state.errors import (
    BadConsensusKeyProof,
    BatchOpFailed,
    BadNonce,
    BlockGasExceeded,
    ContractsDisabled,
    GasLimitTooHigh,
    GasLimitTooLow,
    BadSignature,
    BalanceOverflow,
    ExecutionFailed,
    FeeTooLow,
    ModuleAccountTransfer,
    FeeUnpayable,
    NotIssuer,
    PoolAccountTransfer,
    StateInvariantBroken,
    TokenExists,
    TxTooLarge,
    UnknownToken,
    WrongChainId,
)
from state.genesis import Params
from state.ledger import Ledger, Overlay, TokenInfo
from state.payloads import (
    CONTRACT_KINDS,
    Batch,
    ContractCall,
    ContractDeploy,
    FlashBorrow,
    FlashRepay,
    PoolAdd,
    PoolCreate,
    PoolRemove,
    RewardsClaim,
    Redelegate,
    SetRewardRate,
    Stake,
    StakingRewardsWithdraw,
    Swap,
    SwapRoute,
    TokenCreate,
    TokenMint,
    Transfer,
    Unjail,
    Unstake,
    ValidatorCreate,
    ValidatorEdit,
    key_proof_digest,
)
from state.contracts import Execution, call_intrinsic_gas, deploy_intrinsic_gas
from state.pools import FlashLoans, Pools
from state.slashing import CommitVote, Slashing
from state.staking import MODULE_ACCOUNTS, REWARDS_POOL, Staking
from state.transactions import Receipt, ReceiptStatus, SignedTransaction, Transaction

DOMAIN_APP_HASH = b"QENEX/apphash/v1"


def app_hash_of(previous: bytes, height: int, writes: list[tuple[bytes, bytes | None]]) -> Hash:
    """app_hash_h = H(app_hash_{h-1}, h, sorted state writes of block h).

    The chain of these hashes commits to the whole state given the genesis
    (whose hash seeds height 0), but proves nothing about a single key: state
    inclusion proofs are not built.
    """
    return domain_digest(DOMAIN_APP_HASH, encode([previous, height, [[k, v] for k, v in writes]]))


def intrinsic_gas(tx: Transaction) -> int:
    """A contract transaction's gas before any code runs (0 for other kinds)."""
    p = tx.payload
    if isinstance(p, ContractDeploy):
        return deploy_intrinsic_gas(p.code, p.init_args)
    if isinstance(p, ContractCall):
        return call_intrinsic_gas(p.args)
    return 0


def check_stateless(stx: SignedTransaction, *, chain_id: str, params: Params) -> None:
    """Checks that need no state.  Cheapest first; the signature last."""
    tx = stx.tx
    if tx.chain_id != chain_id:
        raise WrongChainId(tx.chain_id, chain_id)
    if stx.size > params.max_tx_bytes:
        raise TxTooLarge(stx.size, params.max_tx_bytes)
    if tx.kind in CONTRACT_KINDS:
        if params.contracts is None:
            raise ContractsDisabled(tx.kind.name.lower())
        gas_limit = tx.payload.gas_limit  # type: ignore[union-attr]
        if gas_limit > params.contracts.max_tx_gas:
            raise GasLimitTooHigh(gas_limit, params.contracts.max_tx_gas)
        intrinsic = intrinsic_gas(tx)
        if gas_limit < intrinsic:
            raise GasLimitTooLow(gas_limit, intrinsic)
    minimum = params.min_tx_fee(tx.kind, tx.payload)
    if tx.fee < minimum:
        raise FeeTooLow(tx.fee, minimum)
    if not stx.verify_signature():
        raise BadSignature(stx.hash)


def check_includable(ledger: Ledger, stx: SignedTransaction, *, chain_id: str, params: Params) -> None:
    """Raises an InvalidTransaction subclass when ``stx`` may not enter the next block."""
    check_stateless(stx, chain_id=chain_id, params=params)
    tx = stx.tx
    want = ledger.nonce(tx.sender)
    if tx.nonce != want:
        raise BadNonce(tx.nonce, want, address_to_text(tx.sender))
    balance = ledger.balance(tx.sender, QNX)
    if balance < tx.fee:
        raise FeeUnpayable(tx.fee, balance, address_to_text(tx.sender))


def outflows(tx: Transaction) -> dict[str, int]:
    """What the sender spends per token, fee included (for the mempool's pending balance check).

    Pool deposits count their full desired amounts and swaps their input.  A
    batch counts only its fee: a flash loan may fund its later operations, so
    its spending cannot be told without running it; if it cannot pay, it
    fails at execution and still pays the fee.
    """
    spend = {QNX: tx.fee}
    p = tx.payload

    def add(token: str, amount: int) -> None:
        spend[token] = spend.get(token, 0) + amount

    if isinstance(p, Transfer):
        add(p.token, p.amount)
    elif isinstance(p, (PoolCreate, PoolAdd)):
        add(p.token_a, p.amount_a)
        add(p.token_b, p.amount_b)
    elif isinstance(p, Swap):
        add(p.token_in, p.amount_in)
    elif isinstance(p, SwapRoute):
        add(p.path[0], p.amount_in)
    elif isinstance(p, Stake):
        add(QNX, p.amount)
    elif isinstance(p, ValidatorCreate):
        add(QNX, p.self_bond)
    elif isinstance(p, (ContractDeploy, ContractCall)):
        for token, amount in p.attached:
            add(token, amount)
    return dict(sorted(spend.items()))


# -- effects (run on a child overlay; raise ExecutionFailed to revert) -----------


class Context:
    """What an effect may know besides the transaction: the block it runs in and the params."""

    __slots__ = ("height", "time_ms", "params")

    def __init__(self, height: int, time_ms: int, params: Params) -> None:
        self.height = height
        self.time_ms = time_ms
        self.params = params


def _pools(ledger: Ledger, ctx: Context) -> Pools:
    return Pools(ledger, height=ctx.height, time_ms=ctx.time_ms)


def _not_pool_account(ledger: Ledger, to: bytes) -> None:
    pid = Pools(ledger).pool_of_account(to)
    if pid is not None:
        raise PoolAccountTransfer(address_to_text(to), pid)
    if to in MODULE_ACCOUNTS:
        raise ModuleAccountTransfer(address_to_text(to), MODULE_ACCOUNTS[to])


def _transfer(ledger: Ledger, tx: Transaction, p: Transfer, ctx: Context) -> None:
    if ledger.token(p.token) is None:
        raise UnknownToken(p.token)
    _not_pool_account(ledger, p.to)
    ledger.debit(tx.sender, p.token, p.amount)
    ledger.credit(p.to, p.token, p.amount)


def _token_create(ledger: Ledger, tx: Transaction, p: TokenCreate, ctx: Context) -> None:
    if ledger.token(p.symbol) is not None:
        raise TokenExists(p.symbol)
    ledger.put_token(TokenInfo(p.symbol, p.name, p.decimals, tx.sender, p.initial_supply))
    if p.initial_supply:
        ledger.credit(tx.sender, p.symbol, p.initial_supply)


def _token_mint(ledger: Ledger, tx: Transaction, p: TokenMint, ctx: Context) -> None:
    info = ledger.token(p.symbol)
    if info is None:
        raise UnknownToken(p.symbol)
    _not_pool_account(ledger, p.to)
    if info.issuer != tx.sender:
        raise NotIssuer(p.symbol, address_to_text(tx.sender), address_to_text(info.issuer))
    supply = info.supply + p.amount
    if supply > MAX_AMOUNT:
        raise BalanceOverflow(f"supply of {p.symbol}", supply, MAX_AMOUNT)
    ledger.put_token(TokenInfo(info.symbol, info.name, info.decimals, info.issuer, supply))
    ledger.credit(p.to, p.symbol, p.amount)


def _pool_create(ledger: Ledger, tx: Transaction, p: PoolCreate, ctx: Context) -> None:
    rate = ctx.params.pool_reward_rates.get(p.pool, 0)
    _pools(ledger, ctx).create(tx.sender, p.token_a, p.token_b, p.amount_a, p.amount_b, p.min_shares, reward_rate=rate)


def _pool_add(ledger: Ledger, tx: Transaction, p: PoolAdd, ctx: Context, locked: frozenset[str] = frozenset()) -> None:
    _pools(ledger, ctx).add(tx.sender, p.token_a, p.token_b, p.amount_a, p.amount_b, p.min_shares, locked)


def _pool_remove(
    ledger: Ledger, tx: Transaction, p: PoolRemove, ctx: Context, locked: frozenset[str] = frozenset()
) -> None:
    _pools(ledger, ctx).remove(tx.sender, p.token_a, p.token_b, p.shares, p.min_a, p.min_b, locked)


def _swap(ledger: Ledger, tx: Transaction, p: Swap | SwapRoute, ctx: Context, locked: frozenset[str] = frozenset()) -> None:
    _pools(ledger, ctx).swap(tx.sender, p.path, p.amount_in, p.min_out, deadline=p.deadline, height=ctx.height, locked=locked)


def _batch(ledger: Ledger, tx: Transaction, p: Batch, ctx: Context) -> None:
    """Every operation on the same layer; the caller drops the layer if anything raises."""
    pools = _pools(ledger, ctx)
    loans = FlashLoans()
    for index, op in enumerate(p.ops):
        try:
            if isinstance(op, FlashBorrow):
                loans.borrowed(op.pool, op.token, pools.flash_borrow(tx.sender, op.pool, op.token, op.amount))
            elif isinstance(op, FlashRepay):
                loans.repaid(op.pool, op.token, op.amount)
                pools.flash_repay(tx.sender, op.pool, op.token, op.amount)
            elif isinstance(op, Transfer):
                _transfer(ledger, tx, op, ctx)
            elif isinstance(op, PoolAdd):
                _pool_add(ledger, tx, op, ctx, loans.locked)
            elif isinstance(op, PoolRemove):
                _pool_remove(ledger, tx, op, ctx, loans.locked)
            else:
                _swap(ledger, tx, op, ctx, loans.locked)
        except ExecutionFailed as exc:
            raise BatchOpFailed(index, exc) from exc
    loans.check_settled()


def _rewards_claim(ledger: Ledger, tx: Transaction, p: RewardsClaim, ctx: Context) -> None:
    _pools(ledger, ctx).claim(tx.sender, p.pool)


def _set_reward_rate(ledger: Ledger, tx: Transaction, p: SetRewardRate, ctx: Context) -> None:
    _pools(ledger, ctx).set_reward_rate(tx.sender, p.pool, p.rate, ctx.params.reward_authority)


def _staking(ledger: Ledger, ctx: Context) -> Staking:
    staking = ctx.params.staking
    if staking is None:  # check_stateless refuses staking kinds first; never reached
        raise StateInvariantBroken("a staking transaction ran on a chain without staking")
    return Staking(ledger, staking, height=ctx.height, epoch_length=ctx.params.epoch_length)


def _validator_create(ledger: Ledger, tx: Transaction, p: ValidatorCreate, ctx: Context) -> None:
    if not verify(p.pubkey, key_proof_digest(tx.chain_id, tx.sender), p.proof):
        raise BadConsensusKeyProof(p.pubkey, address_to_text(tx.sender))
    _staking(ledger, ctx).create(tx.sender, p.pubkey, p.moniker, p.commission_bps, p.self_bond)


def _validator_edit(ledger: Ledger, tx: Transaction, p: ValidatorEdit, ctx: Context) -> None:
    _staking(ledger, ctx).edit(tx.sender, p.moniker, p.commission_bps)


def _stake(ledger: Ledger, tx: Transaction, p: Stake, ctx: Context) -> None:
    _staking(ledger, ctx).stake(tx.sender, p.validator, p.amount)


def _unstake(ledger: Ledger, tx: Transaction, p: Unstake, ctx: Context) -> None:
    _staking(ledger, ctx).unstake(tx.sender, p.validator, p.amount)


def _redelegate(ledger: Ledger, tx: Transaction, p: Redelegate, ctx: Context) -> None:
    _staking(ledger, ctx).redelegate(tx.sender, p.source, p.destination, p.amount)


def _unjail(ledger: Ledger, tx: Transaction, p: Unjail, ctx: Context) -> None:
    _staking(ledger, ctx).unjail(tx.sender)


def _staking_rewards_withdraw(ledger: Ledger, tx: Transaction, p: StakingRewardsWithdraw, ctx: Context) -> None:
    _staking(ledger, ctx).withdraw_rewards(tx.sender)


_EFFECTS: dict[type, Callable[[Ledger, Transaction, object, Context], None]] = {
    Transfer: _transfer,  # type: ignore[dict-item]
    TokenCreate: _token_create,  # type: ignore[dict-item]
    TokenMint: _token_mint,  # type: ignore[dict-item]
    PoolCreate: _pool_create,  # type: ignore[dict-item]
    PoolAdd: _pool_add,  # type: ignore[dict-item]
    PoolRemove: _pool_remove,  # type: ignore[dict-item]
    Swap: _swap,  # type: ignore[dict-item]
    SwapRoute: _swap,  # type: ignore[dict-item]
    Batch: _batch,  # type: ignore[dict-item]
    RewardsClaim: _rewards_claim,  # type: ignore[dict-item]
    SetRewardRate: _set_reward_rate,  # type: ignore[dict-item]
    ValidatorCreate: _validator_create,  # type: ignore[dict-item]
    ValidatorEdit: _validator_edit,  # type: ignore[dict-item]
    Stake: _stake,  # type: ignore[dict-item]
    Unstake: _unstake,  # type: ignore[dict-item]
    Redelegate: _redelegate,  # type: ignore[dict-item]
    Unjail: _unjail,  # type: ignore[dict-item]
    StakingRewardsWithdraw: _staking_rewards_withdraw,  # type: ignore[dict-item]
}


class BlockRun:
    """One block's execution on an overlay over the committed state."""

    def __init__(self, overlay: Overlay, *, chain_id: str, params: Params, height: int, time_ms: int,
                 reward_signers: tuple[tuple[bytes, int], ...] = (),
                 commit_votes: tuple[CommitVote, ...] = ()) -> None:
        """``reward_signers``: (consensus address, power) of the validators that signed the parent's
        commit certificate (the application derives them from ``last_commit``); with staking they
        share this block's fees and issuance.  ``commit_votes``: every member of the parent's set,
        signed or not (downtime tracking, state.slashing)."""
        self.overlay = overlay
        self.reward_signers = reward_signers
        self.commit_votes = commit_votes
        self.ledger = Ledger(overlay)
        self.chain_id = chain_id
        self.params = params
        self.height = height
        self.time_ms = time_ms
        self.context = Context(height, time_ms, params)
        self.txs: list[SignedTransaction] = []
        self.receipts: list[Receipt] = []
        self.fees = 0
        self.block_gas = 0  # the gas the block's contract transactions used (each had to fit by its limit)
        self.validator_updates: tuple[tuple[bytes, int], ...] = ()
        self.evidence: list[bytes] = []  # the evidence this block applied, in order
        # Before any transaction: liquidity-mining accrual of the pools with a reward rate (state.pools).
        Pools(self.ledger, height=height, time_ms=time_ms).begin_block()

    def _slashing(self) -> Slashing:
        params = self.params.staking
        if params is None:
            raise StateInvariantBroken("slashing runs only on a chain with staking")
        return Slashing(Staking(self.ledger, params, height=self.height, epoch_length=self.params.epoch_length))

    def evidence_refusal(self, height: int, validator: bytes) -> str | None:
        """Why verified evidence of (height, validator) may not enter this block, or None (an item
        this block applied already reads as applied: its record is on the block's overlay)."""
        if self.params.staking is None:
            return "this chain has no staking: evidence cannot be applied"
        return self._slashing().refusal(height, validator)

    def apply_evidence(self, height: int, validator: bytes, evidence: bytes) -> None:
        """Before any transaction: slash and tombstone for one verified equivocation."""
        if self.txs:
            raise StateInvariantBroken("evidence is applied before the block's transactions")
        self._slashing().apply_evidence(height, validator, evidence)
        self.evidence.append(evidence)

    def track_commit(self) -> None:
        """After the evidence, before any transaction: downtime tracking of the parent's commit."""
        if self.params.staking is None or not self.commit_votes:
            return
        self._slashing().track(self.commit_votes)

    def include(self, stx: SignedTransaction) -> Receipt:
        """Execute ``stx`` as the next transaction, or raise InvalidTransaction having changed nothing."""
        check_includable(self.ledger, stx, chain_id=self.chain_id, params=self.params)
        tx = stx.tx
        if tx.kind in CONTRACT_KINDS:
            return self._include_contract(stx)
        self.ledger.debit(tx.sender, QNX, tx.fee)
        self.ledger.set_nonce(tx.sender, tx.nonce + 1)
        self.fees += tx.fee

        layer = self.overlay.child()
        try:
            _EFFECTS[type(tx.payload)](Ledger(layer), tx, tx.payload, self.context)
        except ExecutionFailed as exc:
            status, reason = ReceiptStatus.FAILED, exc.reason
        else:
            layer.merge_into(self.overlay)
            status, reason = ReceiptStatus.OK, ""
        receipt = Receipt(
            stx.hash, self.height, len(self.txs), status, reason[:512], self.params.gas_for(tx.kind), tx.fee
        )
        self.txs.append(stx)
        self.receipts.append(receipt)
        return receipt

    def _include_contract(self, stx: SignedTransaction) -> Receipt:
        """A contract transaction: its gas limit must fit in what the block has left of max_block_gas, and
        the block then counts the gas it used; the fee is charged for the gas used (fee * gas_used //
        gas_limit: the price the sender offered), the rest refunded."""
        tx = stx.tx
        p = tx.payload
        contracts = self.params.contracts
        if contracts is None:  # check_stateless refused it first; never reached
            raise StateInvariantBroken("a contract transaction ran on a chain without contracts")
        gas_limit = p.gas_limit  # type: ignore[union-attr]
        if self.block_gas + gas_limit > contracts.max_block_gas:
            raise BlockGasExceeded(gas_limit, self.block_gas, contracts.max_block_gas)
        self.ledger.debit(tx.sender, QNX, tx.fee)
        self.ledger.set_nonce(tx.sender, tx.nonce + 1)
        layer = self.overlay.child()
        execution = Execution(Ledger(layer), contracts, height=self.height, time_ms=self.time_ms, gas_limit=gas_limit)
        events: tuple = ()
        output = b""
        try:
            if isinstance(p, ContractDeploy):
                _, outcome = execution.deploy(tx.sender, tx.nonce, p.code, p.init_args, p.attached)
            else:
                outcome = execution.call(tx.sender, p.contract, p.method, p.args, p.attached)  # type: ignore[union-attr]
        except ExecutionFailed as exc:  # a ContractFailed, which knows its gas_used, or any other effect's refusal
            status, reason = ReceiptStatus.FAILED, exc.reason
            gas_used = getattr(exc, "gas_used", None)
            if gas_used is None:
                gas_used = execution.gas_used
        else:
            layer.merge_into(self.overlay)
            status, reason = ReceiptStatus.OK, ""
            gas_used, events, output = outcome.gas_used, outcome.events, outcome.output
        self.block_gas += gas_used  # the block counts what ran, so a high limit that used little squats nothing
        charged = tx.fee * gas_used // gas_limit
        if tx.fee - charged:
            self.ledger.credit(tx.sender, QNX, tx.fee - charged)
        self.fees += charged
        receipt = Receipt(stx.hash, self.height, len(self.txs), status, reason[:512], gas_used, charged,
                          events, output)
        self.txs.append(stx)
        self.receipts.append(receipt)
        return receipt

    def end_block(self) -> tuple[tuple[bytes, int], ...]:
        """After the last transaction: the validator set changes this block
        makes, as (pubkey, power) with power 0 removing a member; they apply
        from the next height.  With staking, in this order: the block's fees
        and issuance to the parent's commit signers, the unbonding and
        redelegation entries maturing at this height, and at an epoch's last
        height the next epoch's set (state.staking).  Without staking: none."""
        params = self.params.staking
        if params is None:
            return ()
        staking = Staking(self.ledger, params, height=self.height, epoch_length=self.params.epoch_length)
        issuance = params.block_issuance
        if issuance:
            info = self.ledger.token(QNX)
            if info is None:
                raise StateInvariantBroken("the QNX token record is missing")
            if info.supply + issuance > MAX_AMOUNT:
                issuance = 0  # issuance stops at the supply ceiling
            else:
                self.ledger.put_token(TokenInfo(info.symbol, info.name, info.decimals, info.issuer,
                                                info.supply + issuance))
        reward = self.fees + issuance
        if reward:
            try:
                self.ledger.credit(REWARDS_POOL, QNX, reward)
            except BalanceOverflow as exc:  # within the QNX supply, which fits
                raise StateInvariantBroken(f"crediting block rewards overflowed: {exc}") from exc
            staking.allocate(reward, self.reward_signers)
        return staking.end_block()

    def pay_proposer(self, proposer: bytes) -> None:
        if not self.fees or self.params.staking is not None:  # with staking, end_block shared them
            return
        try:
            self.ledger.credit(proposer, QNX, self.fees)
        except BalanceOverflow as exc:  # fees come out of the QNX supply, which fits
            raise StateInvariantBroken(f"crediting block fees overflowed: {exc}") from exc
