"""The deterministic application: the one way to apply a block.

``execute_block`` validates and runs a block on an overlay and returns a
``BlockResult`` (receipts, app hash, write set, the next validator set)
without writing; ``commit_block`` writes that result, the block and its
indexes in one synced batch.  A proposer gets the same pair from
``build_block``, so each node executes a block once and commits the cached
result (the node keys it by block hash).  ``apply_block`` does both, for
block sync.

The application owns the validator set: it stores the set that signs each
height (``validator_set(h)``, past heights included), checks a block's
``last_commit`` against its parent's set through the ``CommitVerifier`` it
was given (``state.abc``), and derives the next height's set from the
block's ``validator_updates`` (``ValidatorSet.updated(...).increment(1)``).

State at past heights (``at(h)``) is read through the changelog each commit
writes and prunes in its own batch (``state.history``), within a retention
window of ``history_blocks`` blocks (0 keeps every height).

Nothing here reads a clock: a block's time enters as a header field, checked
against the previous block's time and, when the caller passes its own
``now_ms``, against ``params.max_clock_drift_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple

from state import history, keys
from state.abc import CommitVerifier, KVStore
from state.amounts import QNX, QNX_DECIMALS
from state.blocks import (
    BLOCK_VERSION,
    EMPTY_COMMIT,
    MAX_BLOCK_EVIDENCE,
    Block,
    BlockHeader,
    Height,
    evidence_hash,
    tx_root,
)
from state.codec import encode
from state.crypto import ADDRESS_LEN, Address, Hash, address_to_text, sha256
from state.errors import (
    GenesisMismatch,
    HeightAboveHead,
    HeightPruned,
    InvalidBlock,
    InvalidCommit,
    InvalidEvidence,
    InvalidLastCommit,
    InvalidValidatorSet,
    InvalidTransaction,
    MalformedTransaction,
    StateInvariantBroken,
    StoreNotFound,
)
from state.contracts import ContractQueries
from state.execution import BlockRun, app_hash_of, check_stateless, outflows
from state.genesis import NATIVE_ISSUER, NATIVE_NAME, Genesis, Params
from state.ledger import (
    EMPTY,
    Account,
    Ledger,
    Overlay,
    TokenInfo,
    ValidatorInfo,
    _stored,
)
from state.history import DEFAULT_HISTORY_BLOCKS, StateAt, StateView
from state.merkle import merkle_proof
from state.pool_queries import PoolQueries, Quote, Twap
from state.pools import Observation, Pool, Position
from state.slashing import CommitVote, Slashing
from state.staking import Staking, genesis_staking
from state.staking_queries import EpochInfo, StakingQueries
from state.transactions import Receipt, SignedTransaction
from state.validators import ValidatorSet

HEAD_VERSION = 1
BLOCK_RECORD_VERSION = 1  # [1, header, last_commit, tx count, evidence]: a 4-field record (before evidence) is refused
TX_INDEX_VERSION = 1
_ZERO_HASH = bytes(32)


@dataclass(frozen=True, slots=True)
class BlockResult:
    """The outcome of executing one block on one base state; commit it with ``commit_block``."""

    height: Height
    block_hash: Hash
    prev_app_hash: Hash  # the app hash of the state this result was computed on
    app_hash: Hash
    receipts: tuple[Receipt, ...]
    state_writes: tuple[tuple[bytes, bytes | None], ...]  # sorted; what app_hash commits to
    prior_values: tuple[bytes | None, ...]  # each written key's value before the block (state.history)
    fees: int
    # (pubkey, power) changes the block made (power 0 removes); empty until staking
    validator_updates: tuple[tuple[bytes, int], ...]
    next_validators: ValidatorSet  # the set that signs the next height


@dataclass(frozen=True, slots=True)
class TxLocation:
    height: Height
    index: int
    stx: SignedTransaction
    receipt: Receipt


class TxProof(NamedTuple):
    height: Height
    index: int
    tx_root: Hash
    proof: list[bytes]
    tree_size: int


@dataclass(frozen=True, slots=True)
class _Head:
    height: Height
    block_hash: Hash
    app_hash: Hash
    time_ms: int

    def encode(self) -> bytes:
        return encode([HEAD_VERSION, self.height, self.block_hash, self.app_hash, self.time_ms])


def genesis_validator_set(genesis: Genesis) -> ValidatorSet:
    """The set that signs height 1."""
    return ValidatorSet([(v.pubkey, v.power) for v in genesis.validators])


_VSET_CACHE = 64  # decoded past sets kept (sync and evidence read recent ones)


def genesis_writes(genesis: Genesis) -> list[tuple[bytes, bytes | None]]:
    """The state keys a genesis document creates, sorted."""
    overlay = Overlay(EMPTY)
    ledger = Ledger(overlay)
    ledger.put_token(TokenInfo(QNX, NATIVE_NAME, QNX_DECIMALS, NATIVE_ISSUER, genesis.supply(QNX)))
    for t in genesis.tokens:
        ledger.put_token(TokenInfo(t.symbol, t.name, t.decimals, t.issuer, genesis.supply(t.symbol)))
    for v in genesis.validators:
        ledger.put_validator(ValidatorInfo(v.name, v.pubkey, v.power))
    for a in genesis.accounts:
        for symbol, amount in a.balances.items():
            ledger.set_balance(a.address, symbol, amount)
    genesis_staking(ledger, genesis)
    return overlay.changes(EMPTY)


class Application:
    def __init__(self, kv: KVStore, genesis: Genesis, *, initialise: bool = True,
                 commit_verifier: CommitVerifier | None = None,
                 history_blocks: int = DEFAULT_HISTORY_BLOCKS) -> None:
        """Open the application on ``kv``; an empty store gets the genesis state
        only with ``initialise`` (a node's start passes False: only ``init``
        creates a chain, so an emptied store is refused, never re-created).

        ``commit_verifier`` checks commit certificates (the node passes
        consensus/'s); without one, validating a block above height 1 fails
        closed (StateInvariantBroken), it is never skipped.

        ``history_blocks``: how many blocks back ``at(height)`` can read (0 = every height)."""
        self._kv = kv
        self.set_history_blocks(history_blocks)
        self._verifier = commit_verifier
        self._vsets: dict[int, ValidatorSet] = {}
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.params: Params = genesis.params
        stored = kv.get(keys.META_GENESIS_HASH)
        if stored is None and not initialise:
            raise StoreNotFound("the store holds no genesis record: it was not initialised by init", path="")
        if stored is None:
            self._init_genesis()
        elif stored != genesis.hash:
            raise GenesisMismatch(stored, genesis.hash)
        self._head = self._read_head()
        self._open_validator_sets()
        # A store from before the changelog records it from the first block it commits.
        stored_oldest = history.read_oldest(kv)
        self._history_recorded = stored_oldest is not None
        self._history_oldest = self.height if stored_oldest is None else stored_oldest
        self._last_receipts: tuple[int, tuple[Receipt, ...]] | None = None

    # -- startup ----------------------------------------------------------------

    def _init_genesis(self) -> None:
        if next(iter(self._kv.iterate()), None) is not None:
            raise StateInvariantBroken("the store holds data but no genesis record; refusing to initialise over it")
        writes = genesis_writes(self.genesis)
        app_hash = app_hash_of(self.genesis.hash, 0, writes)
        head = _Head(Height(0), self.genesis.hash, app_hash, self.genesis.genesis_time_ms)
        batch: dict[bytes, bytes | None] = dict(writes)
        batch[keys.META_GENESIS_HASH] = self.genesis.hash
        batch[keys.META_GENESIS] = self.genesis.encode()
        batch[keys.META_HEAD] = head.encode()
        batch[keys.META_HISTORY_OLDEST] = keys.encode_height(0)
        batch[keys.validator_set_key(1)] = genesis_validator_set(self.genesis).encode()
        self._kv.write_batch(batch, sync=True)

    def _read_head(self) -> _Head:
        raw = self._kv.get(keys.META_HEAD)
        if raw is None:
            raise StateInvariantBroken("the store has a genesis record but no head")
        _, height, block_hash, app_hash, time_ms = _stored(keys.META_HEAD, raw, 5)
        return _Head(Height(height), Hash(block_hash), Hash(app_hash), time_ms)

    def _open_validator_sets(self) -> None:
        """Load the set of the next height.  A store written before sets were
        stored per height (no record for the next height) gets them derived
        from genesis, which was the rule while sets could not change: one
        batch, written once."""
        nxt = self.height + 1
        if self._kv.get(keys.validator_set_key(nxt)) is None:
            if self.height and any(self._kv.iterate(keys.VALIDATOR_SET)):
                raise StateInvariantBroken(f"the validator set of height {nxt} is missing")
            vset = genesis_validator_set(self.genesis)
            batch = {keys.validator_set_key(1): vset.encode()}
            for height in range(2, nxt + 1):
                vset = vset.increment(1)
                batch[keys.validator_set_key(height)] = vset.encode()
            self._kv.write_batch(batch, sync=True)
        self._current = self._read_validator_set(nxt)
        if self.height:
            # The next block's last_commit is checked against the head's set:
            # an unreadable one is found now, not as a verdict on a proposal.
            self._vsets[self.height] = self._read_validator_set(self.height)

    def _read_validator_set(self, height: int) -> ValidatorSet:
        raw = self._kv.get(keys.validator_set_key(height))
        if raw is None:
            raise StateInvariantBroken(f"the validator set of height {height} is missing")
        try:
            return ValidatorSet.decode(raw)
        except InvalidValidatorSet as exc:
            raise StateInvariantBroken(f"the stored validator set of height {height} is unreadable: {exc}") from exc

    # -- committed head -----------------------------------------------------------

    @property
    def height(self) -> Height:
        """Last committed height; 0 at genesis."""
        return self._head.height

    @property
    def last_block_hash(self) -> Hash:
        """Hash of the last committed block; the genesis hash at height 0."""
        return self._head.block_hash

    @property
    def app_hash(self) -> Hash:
        return self._head.app_hash

    @property
    def last_time_ms(self) -> int:
        """Time of the last committed block; genesis_time_ms at height 0."""
        return self._head.time_ms

    def validators(self) -> list[tuple[bytes, int]]:
        """(pubkey, power) of the set that validates the next block, sorted by address."""
        return [(v.pubkey, v.power) for v in self._current]

    @property
    def validators_hash(self) -> Hash:
        """The hash of the set that signs the next block (its header carries it)."""
        return Hash(self._current.hash())

    def validator_set(self, height: int) -> ValidatorSet | None:
        """The set (with proposer priorities) that signs ``height``, for
        1 <= height <= self.height + 1; None outside that range."""
        if height == self.height + 1:
            return self._current
        if not 1 <= height <= self.height:
            return None
        vset = self._vsets.get(height)
        if vset is None:
            vset = self._read_validator_set(height)
            if len(self._vsets) >= _VSET_CACHE:
                del self._vsets[next(iter(self._vsets))]
            self._vsets[height] = vset
        return vset

    def verify_commit(self, height: int, block_hash: bytes, commit: bytes) -> None:
        """Raise InvalidCommit unless ``commit`` certifies ``block_hash`` at
        ``height`` by the set that signs ``height`` (through the verifier)."""
        vset = self.validator_set(height)
        if vset is None:
            raise InvalidCommit(f"no validator set is known for height {height}")
        if self._verifier is None:
            raise StateInvariantBroken("this application was opened without a commit verifier")
        self._verifier.verify_commit(self.chain_id, vset, height, block_hash, commit)

    # -- mempool support ----------------------------------------------------------

    def check_tx_stateless(self, stx: SignedTransaction) -> None:
        """Chain id, size, minimum fee, signature: raises WrongChainId, TxTooLarge, FeeTooLow, BadSignature."""
        if not isinstance(stx, SignedTransaction):
            raise MalformedTransaction(f"expected a SignedTransaction, got {type(stx).__name__}")
        check_stateless(stx, chain_id=self.chain_id, params=self.params)

    def tx_outflows(self, stx: SignedTransaction) -> dict[str, int]:
        return outflows(stx.tx)

    # -- state at past heights (state.history) ----------------------------------------

    @property
    def history_blocks(self) -> int:
        return self._history_blocks

    def set_history_blocks(self, blocks: int) -> None:
        """The retention window: ``at`` reads back ``blocks`` blocks (0 = every height).  A smaller
        window than before is pruned down gradually, a bounded amount per committed block."""
        if isinstance(blocks, bool) or not isinstance(blocks, int) or not 0 <= blocks < 2**63:
            raise StateInvariantBroken(f"history_blocks must be an integer in [0, 2**63), got {blocks!r}")
        self._history_blocks = blocks

    @property
    def oldest_height(self) -> Height:
        """The lowest height whose state ``at`` can read."""
        return Height(self._history_oldest)

    def at(self, height: int) -> StateView:
        """The committed state at the end of block ``height`` (0: genesis), for
        ``oldest_height <= height <= self.height``; raises HeightAboveHead or HeightPruned."""
        if height > self.height:
            raise HeightAboveHead(height, head=self.height, oldest=self._history_oldest)
        if height < self._history_oldest:
            raise HeightPruned(height, head=self.height, oldest=self._history_oldest)
        if height == self.height:
            return StateView(self._kv, height)
        return StateView(StateAt(self._kv, height), height)

    # -- state queries (committed) -------------------------------------------------

    def _head_view(self) -> StateView:
        return StateView(self._kv, self.height)

    def account(self, address: bytes) -> Account:
        """Committed nonce and non-zero balances of ``address`` (zero nonce and {} if unknown)."""
        return self._head_view().account(address)

    def nonce(self, address: bytes) -> int:
        """Committed nonce of ``address``: one point read (``account`` scans every balance too)."""
        return Ledger(self._kv).nonce(address)

    def balance(self, address: bytes, symbol: str) -> int:
        """Committed balance of one token: one point read."""
        return Ledger(self._kv).balance(address, symbol)

    def token(self, symbol: str) -> TokenInfo | None:
        return self._head_view().token(symbol)

    def tokens(self) -> list[TokenInfo]:
        return self._head_view().tokens()

    # -- pools (issue #3): committed state, read-only ------------------------------
    #
    # The API the RPC layer and the risk hook read.  Pool ids are "AAA/BBB"
    # (symbols sorted); ``state.payloads.pool_id(a, b)`` builds one.  Amounts are
    # base units; prices are exact (see state.pool_queries).

    def _pool_queries(self) -> PoolQueries:
        return PoolQueries(self._kv, self.height)

    def pool(self, pool_id: str) -> Pool | None:
        """The pool record (reserves, shares, reward rate and index, cumulative prices), or None."""
        return self._head_view().pool(pool_id)

    def pools(self) -> list[Pool]:
        """Every pool, in id order."""
        return self._head_view().pools()

    def pool_position(self, address: bytes, pool_id: str) -> Position:
        """``address``'s shares of a pool; ``.pending(pool.reward_index)`` is its claimable reward."""
        return self._head_view().pool_position(address, pool_id)

    def pool_observation(self, pool_id: str, height: int) -> Observation | None:
        return self._pool_queries().observation(pool_id, height)

    def pool_history(self, pool_id: str, from_height: int, to_height: int) -> list[Observation]:
        """The pool at the end of every block in [from_height, to_height] (clipped to its life and the head),
        carried exactly from the stored observations."""
        return self._pool_queries().history(pool_id, from_height, to_height)

    def pool_changes(self, pool_id: str, from_height: int, to_height: int) -> list[Observation]:
        """The stored observations in [from_height, to_height]: the blocks that created the pool or changed
        its reserves (the reserves hold until the next one)."""
        return self._pool_queries().stored_observations(pool_id, from_height, to_height)

    def pool_twap(self, pool_id: str, from_height: int, to_height: int) -> Twap:
        return self._pool_queries().twap(pool_id, from_height, to_height)

    def pool_twap_window(self, pool_id: str, window_ms: int) -> Twap:
        return self._pool_queries().twap_window(pool_id, window_ms)

    def quote_swap(self, token_in: str, token_out: str, amount_in: int, *, path: tuple[str, ...] | None = None,
                   max_hops: int = 3) -> Quote:
        """Exact-in quote on the committed reserves: best path (or ``path``), output, fees, price impact."""
        return self._pool_queries().quote(token_in, token_out, amount_in, path=path, max_hops=max_hops)

    # -- staking (issue 10): committed state, read-only ------------------------------

    def staking(self, height: int | None = None) -> StakingQueries | None:
        """Staking reads at the head (or at ``height``, within the history window); None without staking."""
        if self.params.staking is None:
            return None
        store = self._kv if height is None or height == self.height else self.at(height).store
        return StakingQueries(store, self.params)

    # -- contracts (issue 11): committed state, read-only ---------------------------------

    def contracts(self, height: int | None = None) -> ContractQueries | None:
        """Contract reads at the head (or at ``height``, within the history window); None without contracts.

        Queries see the block height and time of the state they read."""
        if self.params.contracts is None:
            return None
        if height is None or height == self.height:
            return ContractQueries(self._kv, self.params.contracts, height=self.height, time_ms=self.last_time_ms)
        view = self.at(height)
        block = self.get_block(height)
        time_ms = block.header.time_ms if block is not None else self.genesis.genesis_time_ms
        return ContractQueries(view.store, self.params.contracts, height=height, time_ms=time_ms)

    def epoch_info(self) -> EpochInfo:
        """The epoch of the next height, its bounds, and the height from which the next set signs."""
        return EpochInfo.of(self.height + 1, self.params.epoch_length)

    # -- blocks ------------------------------------------------------------------

    def _new_run(self, height: int, time_ms: int, last_commit: bytes = b"") -> BlockRun:
        votes = self._commit_votes(height, last_commit)
        signed = tuple((address, power) for address, power, did in votes if did)
        return BlockRun(Overlay(self._kv), chain_id=self.chain_id, params=self.params, height=height,
                        time_ms=time_ms, reward_signers=signed,
                        commit_votes=tuple(CommitVote(address, did) for address, _, did in votes))

    def _commit_votes(self, height: int, last_commit: bytes) -> tuple[tuple[bytes, int, bool], ...]:
        """(consensus address, power, signed) of each member of the parent's set (staking only):
        whether ``last_commit`` carries its signature; every member counts as signed when the
        verifier cannot tell, and at height 1 (no parent) the members of the set of height 1."""
        if self.params.staking is None:
            return ()
        vset = self.validator_set(max(height - 1, 1))
        if vset is None:
            raise StateInvariantBroken(f"no validator set for height {max(height - 1, 1)}")
        signers: tuple[bytes, ...] = ()
        if height > 1 and self._verifier is not None:
            signers = self._verifier.commit_signers(last_commit)
        signed = set(signers)
        return tuple((bytes(v.address), v.power, not signed or v.address in signed) for v in vset)

    def verify_evidence(self, evidence: bytes) -> tuple[int, bytes]:
        """(infraction height, consensus address) that ``evidence`` proves, checked by the verifier
        against the set of its own height; raises InvalidEvidence."""
        if self._verifier is None:
            raise StateInvariantBroken("this application was opened without a commit verifier")
        infraction = self._verifier.verify_evidence(self.chain_id, evidence, self.validator_set)
        return infraction.height, infraction.validator

    def evidence_refusal(self, height: int, validator: bytes) -> str | None:
        """Why verified evidence of (height, validator) may not enter the next block (applied
        already, expired, an offender already tombstoned, no staking), or None."""
        if self.params.staking is None:
            return "this chain has no staking: evidence cannot be applied"
        staking = Staking(Ledger(self._kv), self.params.staking, height=self.height + 1,
                          epoch_length=self.params.epoch_length)
        return Slashing(staking).refusal(height, validator)

    def _begin(self, run: BlockRun, evidence: Iterable[bytes], *, strict: bool, room: int = 0) -> None:
        """Apply the block's evidence, then the downtime tracking of its last_commit.  ``strict``
        (execute): an item that may not be applied makes the block invalid; otherwise (build) it
        is skipped, so the proposer carries only what every node will accept, in at most ``room``
        bytes (the block's size limit covers its evidence)."""
        room -= 3  # the evidence array's header grows from 1 to 3 bytes past 15 items
        for index, item in enumerate(evidence):
            if len(run.evidence) >= MAX_BLOCK_EVIDENCE:
                if strict:
                    raise InvalidBlock(f"more than {MAX_BLOCK_EVIDENCE} evidence items", height=run.height)
                break
            cost = len(encode(item)) if isinstance(item, bytes) else 0
            if not strict and cost > room:
                continue
            try:
                height, validator = self.verify_evidence(item)
                problem = run.evidence_refusal(height, validator)
            except InvalidEvidence as exc:
                problem = str(exc)
            if problem is not None:
                if strict:
                    raise InvalidBlock(f"evidence {index}: {problem}", height=run.height)
                continue
            run.apply_evidence(height, validator, item)
            room -= cost
        run.track_commit()

    def _check_context(self, *, proposer: bytes, time_ms: int, last_commit: bytes, height: int) -> None:
        if len(proposer) != ADDRESS_LEN or proposer not in self._current:
            shown = address_to_text(proposer) if len(proposer) == ADDRESS_LEN else f"0x{proposer.hex()}"
            raise InvalidBlock(f"proposer {shown} is not a validator", height=height)
        if time_ms <= self.last_time_ms:
            raise InvalidBlock(
                f"time {time_ms} ms is not after the previous block's {self.last_time_ms} ms", height=height
            )
        if height == 1 and last_commit != EMPTY_COMMIT:
            raise InvalidLastCommit("block 1 must carry an empty last_commit", height=height)
        if height > 1 and not last_commit:
            raise InvalidLastCommit("last_commit (the previous block's commit certificate) is empty", height=height)

    def _overhead(self, header: BlockHeader, last_commit: bytes, evidence: list[bytes]) -> int:
        # An empty block's size, plus up to 4 more bytes for a longer txs array header.
        return len(encode([BLOCK_VERSION, header.to_wire(), [], last_commit, evidence])) + 4

    def _finish(self, run: BlockRun, proposer: bytes) -> tuple[list[tuple[bytes, bytes | None, bytes | None]], Hash]:
        """(key, prior value, new value) of every state key the block changed, sorted; the app hash."""
        run.validator_updates = run.end_block()
        run.pay_proposer(proposer)
        changes = run.overlay.changes_with_prior(self._kv)
        for key, _, _ in changes:
            if not keys.is_state_key(key):
                raise StateInvariantBroken(f"execution wrote non-state key 0x{key.hex()}")
        return changes, app_hash_of(self.app_hash, run.height, [(k, v) for k, _, v in changes])

    def build_block(
        self,
        candidates: Iterable[SignedTransaction],
        *,
        proposer: bytes,
        time_ms: int,
        last_commit: bytes,
        evidence: Iterable[bytes] = (),
    ) -> tuple[Block, BlockResult]:
        """Proposer side: apply the ``evidence`` that every node will accept (at most
        MAX_BLOCK_EVIDENCE), then run ``candidates`` in order, skipping any that may not be included.

        ``time_ms`` must exceed ``last_time_ms`` (pass ``max(now, last_time_ms + 1)``).
        """
        height = self.height + 1
        self._check_context(proposer=proposer, time_ms=time_ms, last_commit=last_commit, height=height)
        template = BlockHeader(
            self.chain_id,
            height,
            time_ms,
            self.last_block_hash,
            _ZERO_HASH,
            _ZERO_HASH,
            self.validators_hash,
            Address(proposer),
            sha256(last_commit),
        )
        run = self._new_run(height, time_ms, last_commit)
        self._begin(run, evidence, strict=False,
                    room=self.params.max_block_bytes - self._overhead(template, last_commit, []))
        budget = self.params.max_block_bytes - self._overhead(template, last_commit, run.evidence)
        for stx in candidates:
            if len(run.txs) >= self.params.max_block_txs:
                break
            if stx.size > budget:
                continue
            try:
                run.include(stx)
            except InvalidTransaction:
                continue
            budget -= stx.size
        changes, app_hash = self._finish(run, proposer)
        header = BlockHeader(
            self.chain_id,
            height,
            time_ms,
            self.last_block_hash,
            tx_root(run.txs),
            app_hash,
            self.validators_hash,
            Address(proposer),
            sha256(last_commit),
            evidence_hash(run.evidence),
        )
        block = Block(header, tuple(run.txs), last_commit, tuple(run.evidence))
        if block.size > self.params.max_block_bytes:
            raise StateInvariantBroken(
                f"built a block of {block.size} bytes over the limit {self.params.max_block_bytes}"
            )
        return block, self._result(block, run, changes, app_hash)

    def execute_block(self, block: Block, *, now_ms: int | None = None) -> BlockResult:
        """Validator side: validate and run ``block`` on the committed state; writes nothing.

        Raises InvalidBlock.  ``now_ms`` (the caller's clock) additionally
        refuses a header time more than ``max_clock_drift_ms`` in the future;
        omit it when replaying committed blocks.
        """
        h = block.header
        height = self.height + 1
        if h.chain_id != self.chain_id:
            raise InvalidBlock(f"chain id {h.chain_id!r} is not {self.chain_id!r}", height=h.height)
        if h.height != height:
            raise InvalidBlock(f"height {h.height} is not the next height {height}", height=h.height)
        if h.prev_hash != self.last_block_hash:
            raise InvalidBlock(
                f"prev_hash 0x{h.prev_hash.hex()} is not the last block hash 0x{self.last_block_hash.hex()}",
                height=height,
            )
        self._check_context(proposer=h.proposer, time_ms=h.time_ms, last_commit=block.last_commit, height=height)
        if now_ms is not None and h.time_ms > now_ms + self.params.max_clock_drift_ms:
            raise InvalidBlock(
                f"time {h.time_ms} ms is more than {self.params.max_clock_drift_ms} ms ahead of local time {now_ms} ms",
                height=height,
            )
        if h.last_commit_hash != sha256(block.last_commit):
            raise InvalidLastCommit("last_commit_hash does not match last_commit", height=height)
        if h.evidence_hash != evidence_hash(block.evidence):
            raise InvalidBlock("evidence_hash does not match the block's evidence", height=height)
        if h.validators_hash != self.validators_hash:
            raise InvalidBlock(
                f"validators_hash 0x{h.validators_hash.hex()} is not 0x{self.validators_hash.hex()}", height=height
            )
        if len(block.txs) > self.params.max_block_txs:
            raise InvalidBlock(
                f"{len(block.txs)} transactions exceed the limit {self.params.max_block_txs}", height=height
            )
        if block.size > self.params.max_block_bytes:
            raise InvalidBlock(f"{block.size} bytes exceed the limit {self.params.max_block_bytes}", height=height)
        root = tx_root(block.txs)
        if h.tx_root != root:
            raise InvalidBlock(
                f"tx_root 0x{h.tx_root.hex()} is not the transactions' root 0x{root.hex()}", height=height
            )
        if height > 1:
            # The commit record on chain must be one a light client can trust:
            # the parent's certificate, by the parent's validator set.
            try:
                self.verify_commit(height - 1, h.prev_hash, block.last_commit)
            except InvalidCommit as exc:
                raise InvalidLastCommit(f"last_commit does not certify the parent block: {exc}",
                                        height=height) from exc

        run = self._new_run(height, h.time_ms, block.last_commit)
        self._begin(run, block.evidence, strict=True)
        for index, stx in enumerate(block.txs):
            try:
                run.include(stx)
            except InvalidTransaction as exc:
                raise InvalidBlock(
                    f"transaction {index} (0x{stx.hash.hex()}) may not be included: {exc}", height=height
                ) from exc
        changes, app_hash = self._finish(run, h.proposer)
        if h.app_hash != app_hash:
            raise InvalidBlock(f"app_hash 0x{h.app_hash.hex()} is not the computed 0x{app_hash.hex()}", height=height)
        return self._result(block, run, changes, app_hash)

    def _result(
        self, block: Block, run: BlockRun, changes: list[tuple[bytes, bytes | None, bytes | None]], app_hash: Hash
    ) -> BlockResult:
        updates = tuple(run.validator_updates)
        try:
            next_validators = self._current.updated(updates).increment(1)
        except InvalidValidatorSet as exc:
            raise InvalidBlock(f"the block's validator updates are invalid: {exc}", height=run.height) from exc
        return BlockResult(
            height=Height(run.height),
            block_hash=block.hash,
            prev_app_hash=self.app_hash,
            app_hash=app_hash,
            receipts=tuple(run.receipts),
            state_writes=tuple((k, v) for k, _, v in changes),
            prior_values=tuple(prior for _, prior, _ in changes),
            fees=run.fees,
            validator_updates=updates,
            next_validators=next_validators,
        )

    def commit_block(self, block: Block, result: BlockResult, commit_cert: bytes) -> None:
        """Write ``result``, ``block``, its indexes and ``commit_cert`` in one synced batch."""
        height = self.height + 1
        if result.block_hash != block.hash or result.height != block.height:
            raise StateInvariantBroken(
                f"result is for block {result.height} 0x{result.block_hash.hex()}, not this block"
            )
        if (
            result.height != height
            or result.prev_app_hash != self.app_hash
            or block.header.prev_hash != self.last_block_hash
        ):
            raise StateInvariantBroken(
                f"result for height {result.height} was not computed on the committed state at {self.height}"
            )
        if not isinstance(commit_cert, bytes) or not commit_cert:
            raise StateInvariantBroken("a block is committed with a non-empty commit certificate")
        if len(result.receipts) != len(block.txs):
            raise StateInvariantBroken("result receipts do not match the block's transactions")
        if len(result.prior_values) != len(result.state_writes):
            raise StateInvariantBroken("result prior values do not match its state writes")

        batch: dict[bytes, bytes | None] = dict(result.state_writes)
        batch[keys.block_key(height)] = encode(
            [BLOCK_RECORD_VERSION, block.header.to_wire(), block.last_commit, len(block.txs), list(block.evidence)]
        )
        batch[keys.block_hash_key(block.hash)] = keys.encode_height(height)
        for index, (stx, receipt) in enumerate(zip(block.txs, result.receipts, strict=True)):
            batch[keys.block_tx_key(height, index)] = stx.encode()
            batch[keys.receipt_key(height, index)] = receipt.encode()
            batch[keys.tx_index_key(stx.hash)] = encode([TX_INDEX_VERSION, height, index])
        batch[keys.commit_cert_key(height)] = commit_cert
        batch[keys.validator_set_key(height + 1)] = result.next_validators.encode()
        head = _Head(Height(height), block.hash, result.app_hash, block.header.time_ms)
        batch[keys.META_HEAD] = head.encode()
        oldest = self._record_history(batch, height, result)
        self._kv.write_batch(batch, sync=True)
        # Only now, with the batch on disk, do the in-memory head, history and set move.
        self._head = head
        self._history_oldest, self._history_recorded = oldest, True
        self._vsets[height] = self._current
        if len(self._vsets) > _VSET_CACHE:
            del self._vsets[next(iter(self._vsets))]
        self._current = result.next_validators
        self._last_receipts = (height, result.receipts)

    def _record_history(self, batch: dict[bytes, bytes | None], height: int, result: BlockResult) -> int:
        """Add block ``height``'s changelog and this block's share of pruning to its batch; the new oldest."""
        history.record(batch, height, zip((k for k, _ in result.state_writes), result.prior_values))
        oldest = self._history_oldest
        if self._history_blocks:
            oldest = history.prune(self._kv, batch, oldest, height - self._history_blocks,
                                   max_heights=history.PRUNE_MAX_HEIGHTS, max_keys=history.PRUNE_MAX_KEYS)
        if oldest != self._history_oldest or not self._history_recorded:
            batch[keys.META_HISTORY_OLDEST] = keys.encode_height(oldest)
        return oldest

    def apply_block(self, block: Block, commit_cert: bytes) -> BlockResult:
        """execute_block + commit_block (block sync)."""
        result = self.execute_block(block)
        self.commit_block(block, result, commit_cert)
        return result

    # -- chain queries ---------------------------------------------------------

    def get_block(self, height: int) -> Block | None:
        if not 1 <= height <= self.height:
            return None
        header_wire, last_commit, txs, evidence = self._stored_block(height)
        return Block(BlockHeader.from_wire(header_wire), tuple(SignedTransaction.decode(v) for v in txs), last_commit,
                     tuple(evidence))

    def _stored_block(self, height: int) -> tuple[Any, bytes, list[bytes], list[bytes]]:
        """A committed block's stored header wire, commit bytes, transaction bytes and evidence."""
        raw = self._kv.get(keys.block_key(height))
        if raw is None:
            raise StateInvariantBroken(f"block {height} is missing below the head {self.height}")
        _, header_wire, last_commit, count, evidence = _stored(keys.block_key(height), raw, 5)
        txs = [v for _, v in self._kv.iterate(keys.block_tx_prefix(height))]
        if len(txs) != count:
            raise StateInvariantBroken(f"block {height} has {len(txs)} stored transactions, expected {count}")
        return header_wire, last_commit, txs, evidence

    def get_block_bytes(self, height: int) -> bytes | None:
        """``get_block(height).encode()`` without decoding a transaction: the
        block's canonical encoding is spliced from the stored header, commit
        and transaction bytes (block sync serves this to any peer)."""
        if not 1 <= height <= self.height:
            return None
        header_wire, last_commit, txs, evidence = self._stored_block(height)
        # Block.to_wire() is [BLOCK_VERSION, header, [tx, ...], last_commit, [evidence, ...]];
        # msgpack's smallest array header.
        n = len(txs)
        txs_header = bytes([0x90 | n]) if n < 16 else (
            b"\xdc" + n.to_bytes(2, "big") if n <= 0xFFFF else b"\xdd" + n.to_bytes(4, "big"))
        return b"".join((b"\x95", encode(BLOCK_VERSION), encode(header_wire), txs_header, *txs, encode(last_commit),
                         encode(evidence)))

    def get_block_by_hash(self, block_hash: bytes) -> Block | None:
        raw = self._kv.get(keys.block_hash_key(block_hash))
        return None if raw is None else self.get_block(keys.decode_height(raw))

    def get_commit_cert(self, height: int) -> bytes | None:
        return self._kv.get(keys.commit_cert_key(height))

    def _locate(self, tx_hash: bytes) -> tuple[int, int] | None:
        raw = self._kv.get(keys.tx_index_key(tx_hash))
        if raw is None:
            return None
        _, height, index = _stored(keys.tx_index_key(tx_hash), raw, 3)
        return height, index

    def get_tx(self, tx_hash: bytes) -> TxLocation | None:
        where = self._locate(tx_hash)
        if where is None:
            return None
        height, index = where
        raw_tx = self._kv.get(keys.block_tx_key(height, index))
        raw_receipt = self._kv.get(keys.receipt_key(height, index))
        if raw_tx is None or raw_receipt is None:
            raise StateInvariantBroken(f"transaction 0x{tx_hash.hex()} is indexed at {height}/{index} but not stored")
        return TxLocation(Height(height), index, SignedTransaction.decode(raw_tx), Receipt.decode(raw_receipt))

    def block_receipts(self, height: int) -> tuple[Receipt, ...] | None:
        """The receipts of committed block ``height``, in block order (the last
        committed block's come from memory, kept by ``commit_block``)."""
        if not 1 <= height <= self.height:
            return None
        if self._last_receipts is not None and self._last_receipts[0] == height:
            return self._last_receipts[1]
        prefix = keys.receipt_prefix(height)
        return tuple(Receipt.decode(v) for _, v in self._kv.iterate(prefix))

    def get_receipt(self, tx_hash: bytes) -> Receipt | None:
        where = self._locate(tx_hash)
        if where is None:
            return None
        raw = self._kv.get(keys.receipt_key(*where))
        return None if raw is None else Receipt.decode(raw)

    def get_tx_proof(self, tx_hash: bytes) -> TxProof | None:
        """Merkle inclusion proof of a committed transaction against its block's tx_root."""
        where = self._locate(tx_hash)
        if where is None:
            return None
        height, index = where
        hashes = [sha256(v) for _, v in self._kv.iterate(keys.block_tx_prefix(height))]
        block_raw = self._kv.get(keys.block_key(height))
        if block_raw is None or hashes[index] != tx_hash:
            raise StateInvariantBroken(f"transaction 0x{tx_hash.hex()} index entry disagrees with block {height}")
        header = BlockHeader.from_wire(_stored(keys.block_key(height), block_raw, 5)[1])
        return TxProof(Height(height), index, Hash(header.tx_root), merkle_proof(hashes, index), len(hashes))

    def get_genesis_bytes(self) -> bytes | None:
        return self._kv.get(keys.META_GENESIS)


__all__ = [
    "Application",
    "BlockResult",
    "TxLocation",
    "TxProof",
    "genesis_validator_set",
    "Account",
    "TokenInfo",
    "ValidatorInfo",
    "genesis_writes",
]
