"""The shapes of the ``qenex_*`` JSON-RPC answers, as ``TypedDict``s.

They describe what ``node.rpc``, ``node.rpc_pools`` and ``node.rpc_risk``
return (those modules are the truth; these are for type checkers and
readers).  A client hands back the decoded JSON itself, so a result is a
plain ``dict`` at run time: printing it with ``--json`` shows exactly what
the node said.  Amounts are decimal strings of base units, hashes 0x-hex,
addresses bech32 ``qnx1...``.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Status(TypedDict):
    chain_id: str
    node: str
    height: int
    latest_block_hash: str
    latest_block_time_ms: int  # genesis time at height 0
    app_hash: str
    peers: int
    peer_id: str | None
    validator: str | None  # this node's validator address, None for an observer
    mempool_size: int
    syncing: bool
    consensus: dict[str, Any] | None


class Account(TypedDict):
    address: str
    nonce: int
    pending_nonce: int
    queued: int
    balances: dict[str, str]  # symbol -> base units


class BlockTx(TypedDict):
    hash: str
    chain_id: str
    kind: str
    sender: str
    nonce: int
    fee: str
    payload: dict[str, Any]


class LastCommit(TypedDict):
    """The parent's commit certificate a block carries."""

    height: int
    view: int
    block_hash: str
    signers: list[str]  # consensus addresses (qnx1...)


class Block(TypedDict):
    hash: str
    chain_id: str
    height: int
    time_ms: int
    prev_hash: str
    tx_root: str
    app_hash: str
    validators_hash: str
    proposer: str
    last_commit_hash: str
    evidence_hash: str
    num_txs: int
    last_commit: LastCommit | None  # None for block 1
    txs: list[Any]  # hashes, or BlockTx with full=True
    evidence: list[str]  # equivocation proofs the block carries (0x-hex consensus encoding)


class ContractEvent(TypedDict):
    """What a contract emitted (a receipt's ``events``)."""

    contract: str
    topic: str | None  # the topic as text, None when it is not printable UTF-8
    topic_hex: str
    data: str  # 0x-hex


class TxRecord(BlockTx):
    """A transaction with its receipt once committed, or ``status`` pending/queued.  Once committed,
    ``fee`` is the fee charged (for a contract transaction: for the gas it used; ``max_fee`` is what
    it offered)."""

    status: str  # "ok" | "failed" | "pending" | "queued"
    committed: bool
    height: int | None
    index: NotRequired[int]
    reason: NotRequired[str]
    gas_used: NotRequired[int]
    risk: NotRequired[dict[str, Any]]
    # contract transactions (issue 11; node.rpc.receipt_to_json)
    max_fee: NotRequired[str]
    events: NotRequired[list[ContractEvent]]
    output: NotRequired[str]  # 0x-hex canonical msgpack ("0x": none)
    result: NotRequired[Any]  # the output decoded (node.contract_values), when there is one
    contract_address: NotRequired[str]  # a successful deploy's


class SendResult(TypedDict):
    hash: str


class Proof(TypedDict):
    hash: str
    height: int
    index: int
    tree_size: int
    tx_root: str
    proof: list[str]


class Validator(TypedDict):
    address: str
    pubkey: str
    power: str
    proposer_priority: str
    # with staking (issue 10): staking's record of the member
    operator: NotRequired[str]
    moniker: NotRequired[str]
    stake: NotRequired[str]
    self_bond: NotRequired[str]
    commission_bps: NotRequired[int]
    jailed: NotRequired[bool]
    tombstoned: NotRequired[bool]
    missed_blocks: NotRequired[int]
    window_start: NotRequired[int | None]


class Validators(TypedDict):
    height: int
    total_power: str
    validators: list[Validator]


class MempoolTx(TypedDict):
    hash: str
    sender: str
    nonce: int
    fee: str
    kind: str
    risk: NotRequired[dict[str, Any]]


class Mempool(TypedDict):
    size: int
    bytes: int
    txs: list[MempoolTx]
    queued: int
    queued_bytes: int


class Token(TypedDict):
    symbol: str
    name: str
    decimals: int
    issuer: str
    total_supply: str


class Params(TypedDict):
    max_block_txs: int
    max_block_bytes: int
    max_tx_bytes: int
    min_gas_price: str
    gas: dict[str, int]  # kind name (lower case) -> gas
    epoch_length: int
    max_clock_drift_ms: int
    reward_authority: str
    pool_reward_rates: dict[str, str]
    staking: NotRequired[dict[str, Any]]  # a chain with staking (issue 10)
    contracts: NotRequired["ContractParams"]  # a chain with contracts (issue 11)


class ContractParams(TypedDict):
    max_code_bytes: int
    max_memory_pages: int
    max_table_elements: int
    max_call_depth: int
    max_calls_per_tx: int
    max_tx_gas: int
    max_block_gas: int


class Pool(TypedDict):
    id: str
    token0: str
    token1: str
    account: str
    reserve0: str
    reserve1: str
    total_shares: str
    locked_shares: str
    fee_bps: int
    price0: str | None
    price1: str | None
    cumulative0: str
    cumulative1: str
    price_shift: int
    last_update_ms: int
    reward_rate: str
    reward_index: str
    reward_index_shift: int
    created_height: int
    height: int


class PoolList(TypedDict):
    height: int
    pools: list[Pool]


class Quote(TypedDict):
    amount_in: str
    amount_out: str
    path: list[str]
    pools: list[str]
    amounts: list[str]
    fees: list[str]
    fee: str
    price_impact_bps: int
    spot_price: str
    execution_price: str
    height: int


class Twap(TypedDict):
    pool: str
    from_height: int
    to_height: int
    from_time_ms: int
    to_time_ms: int
    elapsed_ms: int
    price0: str | None
    price1: str | None
    cumulative0_delta: str
    cumulative1_delta: str
    price_shift: int


class Position(TypedDict):
    address: str
    pool: str
    shares: str
    share_of_pool: str
    amount0: str
    amount1: str
    pending_rewards: str


class Observation(TypedDict):
    height: int
    time_ms: int
    reserve0: str
    reserve1: str
    price0: str | None
    price1: str | None
    cumulative0: str
    cumulative1: str


class PoolHistory(TypedDict):
    pool: str
    height: int
    observations: list[Observation]


class RiskScore(TypedDict):
    hash: str
    decision: str
    score: float | None
    mlp: float | None
    anomaly: float | None
    model_version: int | None
    top_features: list[dict[str, Any]]
    thresholds: dict[str, float]
    scored: bool
    features: dict[str, float] | None
    rule: NotRequired[str]  # the node.risk.policy rule that decided, when one did ("drain", "drain+probe", ...)


class RiskModel(TypedDict):
    loaded: bool
    fallback: NotRequired[str]
    version: NotRequired[int]
    thresholds: NotRequired[dict[str, float]]
    feature_names: NotRequired[list[str]]
    schema_hash: NotRequired[str | None]
    training: NotRequired[dict[str, Any] | None]
    metrics: NotRequired[dict[str, Any] | None]
    feedback_updates: NotRequired[int]


class PricePrediction(TypedDict):
    pool: str
    height: int
    price: float
    probability_up: float
    model_version: int
    indicators: dict[str, float]


# -- staking (issue 10; node.rpc_staking) --------------------------------------------------


class StakingDelegation(TypedDict):
    validator: str
    shares: str
    amount: str
    pending_rewards: str


class UnbondingEntry(TypedDict):
    validator: str
    initial: str
    balance: str
    creation_height: int
    maturity_height: int


class RedelegationEntry(TypedDict):
    source: str
    destination: str
    amount: str
    creation_height: int
    maturity_height: int


class StakingValidator(TypedDict):
    operator: str
    address: str
    pubkey: str
    moniker: str
    stake: str
    shares: str
    self_bond: str
    commission_bps: int
    commission_unclaimed: str
    jailed: bool
    jailed_until: int
    tombstoned: bool
    power: str
    active_power: str | None
    created_height: int
    missed_blocks: int
    window_start: int | None


class Staking(TypedDict):
    address: str
    height: int
    delegations: list[StakingDelegation]
    unbonding: list[UnbondingEntry]
    redelegations: list[RedelegationEntry]
    pending_rewards: str
    validator: StakingValidator | None


class StakingValidators(TypedDict):
    height: int
    validators: list[StakingValidator]


class EvidenceItem(TypedDict):
    height: int
    validator: str
    operator: str
    included_height: int
    burned: str
    evidence: str


class EvidencePage(TypedDict):
    height: int
    evidence: list[EvidenceItem]
    next: dict[str, Any] | None


class Epoch(TypedDict):
    epoch: int
    epoch_length: int
    first_height: int
    last_height: int
    next_set_height: int
    height: int
    staking: bool


# -- contracts (issue 11; node.rpc_contracts) ------------------------------------------------


class Contract(TypedDict):
    address: str
    height: int
    code_hash: str
    code_size: int
    deployer: str
    created_height: int
    storage_entries: int
    storage_bytes: int
    methods: list[str]
    reentrant: bool
    balances: dict[str, str]  # symbol -> base units


class ContractStateEntry(TypedDict):
    key: str  # 0x-hex
    value: str  # 0x-hex


class ContractState(TypedDict):
    address: str
    height: int
    entries: list[ContractStateEntry]
    next: str | None  # the last key listed when more may follow: the next page's start_after


class ContractCallResult(TypedDict):
    contract: str
    method: str
    height: int
    output: str  # 0x-hex canonical msgpack ("0x": none)
    result: Any  # the output decoded (node.contract_values), None when empty
    gas_used: int
    gas_limit: int
