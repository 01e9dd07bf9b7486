"""Exception root of state/: every error carries the values that caused it.

Tree (peer faults are DecodeError / InvalidTransaction / InvalidBlock; our own
broken invariants are StateInvariantBroken and should halt the node):

    StateError
    ├── EncodeError
    ├── DecodeError                      malformed / non-canonical bytes
    │   ├── DecodeLimitExceeded          too large, too many objects, too deep
    │   ├── MalformedTransaction         well-formed msgpack, wrong tx shape
    │   │   ├── UnknownTxKind
    │   │   ├── InvalidSymbol
    │   │   ├── AmountOutOfRange
    │   │   ├── WrongLength
    │   │   └── IdenticalTokens          a pool pair names one token twice
    │   ├── MalformedBlock
    │   └── MalformedGenesis             (also raised for bad genesis JSON)
    ├── InvalidKey
    ├── KeyfileError
    │   └── WeakPassword
    ├── AmountError                      parse_amount / format_amount
    │   ├── TooManyDecimals
    │   └── AmountOverflow
    ├── InvalidTransaction               stateless or inclusion checks
    │   ├── WrongChainId, BadSignature, FeeTooLow, TxTooLarge
    │   ├── BadNonce, FeeUnpayable
    │   ├── StakingDisabled              a staking kind on a chain without staking
    │   ├── ContractsDisabled            a contract kind on a chain without contracts
    │   └── GasLimitTooLow, GasLimitTooHigh, BlockGasExceeded
    ├── ExecutionFailed                  a tx's effect failed (receipt: failed)
    │   ├── InsufficientBalance, UnknownToken, TokenExists, NotIssuer, BalanceOverflow
    │   ├── UnknownPool, PoolExists, InsufficientInput, InsufficientLiquidity,
    │   │   SlippageExceeded, DeadlineExpired, InsufficientShares, PoolLocked,
    │   │   FlashLoanNotRepaid, NoFlashLoan, BatchOpFailed, NotRewardAuthority, PoolAccountTransfer
    │   ├── StakingFailed (staking: UnknownValidator, ValidatorExists, DuplicateConsensusKey,
    │   │   SelfBondTooLow, CommissionOutOfBounds, CommissionChangeTooLarge, CommissionChangedThisEpoch,
    │   │   InsufficientStake, TooManyEntries, RedelegationInProgress, NotJailed, JailPeriodNotOver,
    │   │   Tombstoned, ModuleAccountTransfer, CandidatesFull, ValidatorUnavailable)
    ├── InvalidBlock                     a proposed / synced block is invalid
    ├── GenesisMismatch                  store was initialised with another genesis
    ├── HeightUnavailable                the state at a height cannot be read
    │   ├── HeightAboveHead, HeightPruned
    └── StateInvariantBroken             a bug or a corrupt store: halt
"""

from __future__ import annotations


class StateError(Exception):
    """Root of every error raised by state/."""


class EncodeError(StateError):
    """A value cannot be put in canonical form."""


class DecodeError(StateError):
    """Bytes are malformed, non-canonical or of the wrong shape."""


class DecodeLimitExceeded(DecodeError):
    """Input over a decode limit (bytes, objects, depth, container length).

    Raised before the objects are built.  Honest peers never send it: a
    node that receives it from a peer should treat it as an attack.
    """

    def __init__(self, what: str, value: int, limit: int, *, at_least: bool = False) -> None:
        # at_least: decoding stopped at the limit, so value is a lower bound.
        super().__init__(f"{what} {'at least ' if at_least else ''}{value} exceeds the limit of {limit}")
        self.what = what
        self.value = value
        self.limit = limit


class InvalidKey(StateError):
    """A key, signature or address is malformed."""


class KeyfileError(StateError):
    """A key file cannot be read, parsed or decrypted."""


class WeakPassword(KeyfileError):
    """A new key's password does not meet the strength rule."""


# -- shape of transactions, blocks, genesis --------------------------------


class MalformedTransaction(DecodeError):
    """A transaction or one of its fields has the wrong shape."""

    def __init__(self, message: str, *, field: str = "", value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class UnknownTxKind(MalformedTransaction):
    def __init__(self, kind: object) -> None:
        super().__init__(f"unknown transaction kind {kind!r}", field="kind", value=kind)
        self.kind = kind


class InvalidSymbol(MalformedTransaction):
    def __init__(self, symbol: object) -> None:
        super().__init__(f"token symbol {symbol!r} is not 1-12 characters of A-Z and 0-9", field="symbol", value=symbol)
        self.symbol = symbol


class AmountOutOfRange(MalformedTransaction):
    def __init__(self, field: str, value: object, low: int, high: int) -> None:
        super().__init__(f"{field} {value!r} is outside [{low}, {high}]", field=field, value=value)
        self.low = low
        self.high = high


class WrongLength(MalformedTransaction):
    def __init__(self, field: str, got: int, want: int | str) -> None:
        super().__init__(f"{field} is {got} long, expected {want}", field=field, value=got)
        self.got = got
        self.want = want


class MalformedBlock(DecodeError):
    """A block or header has the wrong shape."""


class MalformedGenesis(DecodeError):
    """A genesis document is unreadable or inconsistent."""


class InvalidValidatorSet(StateError):
    """A validator set is empty, has duplicates, bad powers or bad bytes."""


class InvalidCommit(StateError):
    """A commit certificate does not prove its block: the verifier's specific reason."""


class InvalidEvidence(StateError):
    """An evidence item proves no equivocation by a member of its height's set: the verifier's reason."""


# -- amounts ----------------------------------------------------------------


class AmountError(StateError):
    """A human-readable amount cannot be converted."""


class TooManyDecimals(AmountError):
    def __init__(self, text: str, decimals: int) -> None:
        super().__init__(f"amount {text!r} has more than {decimals} decimal places")
        self.text = text
        self.decimals = decimals


class AmountOverflow(AmountError):
    def __init__(self, value: object, limit: int) -> None:
        super().__init__(f"amount {value} exceeds the maximum {limit}")
        self.value = value
        self.limit = limit


# -- transaction validity ---------------------------------------------------


class InvalidTransaction(StateError):
    """A transaction may not be admitted or included in a block."""


class WrongChainId(InvalidTransaction):
    def __init__(self, got: str, want: str) -> None:
        super().__init__(f"chain id {got!r} is not this chain's {want!r}")
        self.got = got
        self.want = want


class BadSignature(InvalidTransaction):
    def __init__(self, tx_hash: bytes) -> None:
        super().__init__(f"bad signature on transaction 0x{tx_hash.hex()}")
        self.tx_hash = tx_hash


class FeeTooLow(InvalidTransaction):
    def __init__(self, fee: int, minimum: int) -> None:
        super().__init__(f"fee {fee} is below the minimum {minimum}")
        self.fee = fee
        self.minimum = minimum


class TxTooLarge(InvalidTransaction):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"transaction of {size} bytes exceeds the limit of {limit}")
        self.size = size
        self.limit = limit


class BadNonce(InvalidTransaction):
    def __init__(self, got: int, want: int, sender: str) -> None:
        super().__init__(f"nonce {got} is not the next nonce {want} for {sender}")
        self.got = got
        self.want = want
        self.sender = sender


class FeeUnpayable(InvalidTransaction):
    def __init__(self, fee: int, balance: int, sender: str) -> None:
        super().__init__(f"{sender} cannot pay fee {fee} QNX base units from balance {balance}")
        self.fee = fee
        self.balance = balance
        self.sender = sender


class StakingDisabled(InvalidTransaction):
    def __init__(self, kind: str) -> None:
        super().__init__(f"{kind} is a staking transaction, and this chain's genesis has no staking section")
        self.kind = kind


class ContractsDisabled(InvalidTransaction):
    def __init__(self, kind: str) -> None:
        super().__init__(f"{kind} is a contract transaction, and this chain's genesis has no contracts section")
        self.kind = kind


class GasLimitTooLow(InvalidTransaction):
    def __init__(self, gas_limit: int, intrinsic: int) -> None:
        super().__init__(f"gas limit {gas_limit} is below the transaction's intrinsic gas {intrinsic}")
        self.gas_limit = gas_limit
        self.intrinsic = intrinsic


class GasLimitTooHigh(InvalidTransaction):
    def __init__(self, gas_limit: int, limit: int) -> None:
        super().__init__(f"gas limit {gas_limit} exceeds the chain's max_tx_gas {limit}")
        self.gas_limit = gas_limit
        self.limit = limit


class BlockGasExceeded(InvalidTransaction):
    """The block's contract transactions already used so much gas that this one's limit does not fit."""

    def __init__(self, gas_limit: int, used: int, limit: int) -> None:
        super().__init__(f"gas limit {gas_limit} does not fit the block: {used} of max_block_gas {limit} used")
        self.gas_limit = gas_limit
        self.used = used
        self.limit = limit


# -- transaction effects (the tx is included; its receipt says failed) ------


class ExecutionFailed(StateError):
    """The effect of an included transaction failed and was reverted.

    ``code`` is a stable machine-readable reason stored in the receipt.
    """

    code = "failed"

    @property
    def reason(self) -> str:
        return f"{self.code}: {self}"


class InsufficientBalance(ExecutionFailed):
    code = "insufficient_balance"

    def __init__(self, token: str, have: int, need: int) -> None:
        super().__init__(f"{token} balance {have} is less than {need}")
        self.token = token
        self.have = have
        self.need = need


class UnknownToken(ExecutionFailed):
    code = "unknown_token"

    def __init__(self, symbol: str) -> None:
        super().__init__(f"token {symbol} does not exist")
        self.symbol = symbol


class TokenExists(ExecutionFailed):
    code = "token_exists"

    def __init__(self, symbol: str) -> None:
        super().__init__(f"token {symbol} already exists")
        self.symbol = symbol


class NotIssuer(ExecutionFailed):
    code = "not_issuer"

    def __init__(self, symbol: str, sender: str, issuer: str) -> None:
        super().__init__(f"{sender} is not the issuer {issuer} of {symbol}")
        self.symbol = symbol
        self.sender = sender
        self.issuer = issuer


class BalanceOverflow(ExecutionFailed):
    code = "overflow"

    def __init__(self, what: str, value: int, limit: int) -> None:
        super().__init__(f"{what} would reach {value}, above the maximum {limit}")
        self.what = what
        self.value = value
        self.limit = limit


# -- pools (issue #3) --------------------------------------------------------


class IdenticalTokens(MalformedTransaction):
    def __init__(self, symbol: str) -> None:
        super().__init__(f"a pool needs two distinct tokens, got {symbol} twice", field="tokens", value=symbol)
        self.symbol = symbol


class UnknownPool(ExecutionFailed):
    code = "unknown_pool"

    def __init__(self, pool_id: str) -> None:
        super().__init__(f"pool {pool_id} does not exist")
        self.pool_id = pool_id


class PoolExists(ExecutionFailed):
    code = "pool_exists"

    def __init__(self, pool_id: str) -> None:
        super().__init__(f"pool {pool_id} already exists")
        self.pool_id = pool_id


class InsufficientInput(ExecutionFailed):
    code = "insufficient_input"

    def __init__(self, amount: int) -> None:
        super().__init__(f"input amount {amount} must be positive")
        self.amount = amount


class InsufficientLiquidity(ExecutionFailed):
    code = "insufficient_liquidity"


class SlippageExceeded(ExecutionFailed):
    code = "slippage"

    def __init__(self, what: str, got: int, minimum: int) -> None:
        super().__init__(f"{what} {got} is below the minimum {minimum}")
        self.what = what
        self.got = got
        self.minimum = minimum


class DeadlineExpired(ExecutionFailed):
    code = "deadline_expired"

    def __init__(self, deadline: int, height: int) -> None:
        super().__init__(f"deadline height {deadline} has passed (block height {height})")
        self.deadline = deadline
        self.height = height


class InsufficientShares(ExecutionFailed):
    code = "insufficient_shares"

    def __init__(self, pool_id: str, have: int, need: int) -> None:
        super().__init__(f"withdrawing {need} shares of pool {pool_id} but only {have} are owned")
        self.pool_id = pool_id
        self.have = have
        self.need = need


class PoolLocked(ExecutionFailed):
    code = "pool_locked"

    def __init__(self, pool_id: str) -> None:
        super().__init__(f"pool {pool_id} has an outstanding flash loan in this batch")
        self.pool_id = pool_id


class FlashLoanNotRepaid(ExecutionFailed):
    code = "flash_loan_not_repaid"

    def __init__(self, pool_id: str, token: str, owed: int) -> None:
        super().__init__(f"flash loan of {token} from pool {pool_id} still owes {owed} at the end of the batch")
        self.pool_id = pool_id
        self.token = token
        self.owed = owed


class NoFlashLoan(ExecutionFailed):
    code = "no_flash_loan"

    def __init__(self, pool_id: str, token: str) -> None:
        super().__init__(f"no flash loan of {token} from pool {pool_id} is outstanding in this batch")
        self.pool_id = pool_id
        self.token = token


class BatchOpFailed(ExecutionFailed):
    """An operation of an atomic batch failed: the whole batch reverts."""

    code = "batch_failed"

    def __init__(self, index: int, cause: ExecutionFailed) -> None:
        super().__init__(f"operation {index}: {cause.reason}")
        self.index = index
        self.cause = cause


class NotRewardAuthority(ExecutionFailed):
    code = "not_reward_authority"

    def __init__(self, sender: str, authority: str) -> None:
        super().__init__(f"{sender} is not the reward authority {authority}")
        self.sender = sender
        self.authority = authority


class PoolAccountTransfer(ExecutionFailed):
    code = "pool_account"

    def __init__(self, address: str, pool_id: str) -> None:
        super().__init__(f"{address} is the account of pool {pool_id}; pools are funded only by pool transactions")
        self.address = address
        self.pool_id = pool_id


# -- staking (issue 10) --------------------------------------------------------


class StakingFailed(ExecutionFailed):
    """A staking transaction's effect was refused; each subclass names the rule."""

    code = "staking_failed"


class UnknownValidator(StakingFailed):
    code = "unknown_validator"

    def __init__(self, operator: str) -> None:
        super().__init__(f"no validator is operated by {operator}")
        self.operator = operator


class ValidatorExists(StakingFailed):
    code = "validator_exists"

    def __init__(self, operator: str) -> None:
        super().__init__(f"{operator} already operates a validator")
        self.operator = operator


class DuplicateConsensusKey(StakingFailed):
    code = "duplicate_consensus_key"

    def __init__(self, pubkey: bytes, operator: str) -> None:
        super().__init__(f"consensus key 0x{pubkey.hex()} is already the key of validator {operator}")
        self.pubkey = pubkey
        self.operator = operator


class BadConsensusKeyProof(StakingFailed):
    code = "bad_consensus_key_proof"

    def __init__(self, pubkey: bytes, operator: str) -> None:
        super().__init__(f"the proof is not consensus key 0x{pubkey.hex()}'s signature registering it for "
                         f"operator {operator} on this chain")


class SelfBondTooLow(StakingFailed):
    code = "self_bond_too_low"

    def __init__(self, self_bond: int, minimum: int, *, what: str = "self-bond") -> None:
        super().__init__(f"{what} {self_bond} is below min_self_bond {minimum}")
        self.self_bond = self_bond
        self.minimum = minimum


class CommissionOutOfBounds(StakingFailed):
    code = "commission_out_of_bounds"

    def __init__(self, bps: int, maximum: int) -> None:
        super().__init__(f"commission {bps} bps is above the maximum {maximum} bps")
        self.bps = bps
        self.maximum = maximum


class CommissionChangeTooLarge(StakingFailed):
    code = "commission_change_too_large"

    def __init__(self, old: int, new: int, maximum: int) -> None:
        super().__init__(f"commission change {old} -> {new} bps moves more than {maximum} bps")
        self.old = old
        self.new = new
        self.maximum = maximum


class CommissionChangedThisEpoch(StakingFailed):
    code = "commission_changed_this_epoch"

    def __init__(self, epoch: int) -> None:
        super().__init__(f"the commission was already changed in epoch {epoch}; once per epoch")
        self.epoch = epoch


class InsufficientStake(StakingFailed):
    code = "insufficient_stake"

    def __init__(self, operator: str, have: int, need: int) -> None:
        super().__init__(f"stake with validator {operator} is {have}, less than {need}")
        self.operator = operator
        self.have = have
        self.need = need


class TooManyEntries(StakingFailed):
    code = "too_many_entries"

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what}: at most {limit}")
        self.what = what
        self.limit = limit


class RedelegationInProgress(StakingFailed):
    code = "redelegation_in_progress"

    def __init__(self, message: str, maturity: int) -> None:
        super().__init__(f"{message} until height {maturity}")
        self.maturity = maturity


class NotJailed(StakingFailed):
    code = "not_jailed"

    def __init__(self, operator: str) -> None:
        super().__init__(f"validator {operator} is not jailed")
        self.operator = operator


class JailPeriodNotOver(StakingFailed):
    code = "jail_period_not_over"

    def __init__(self, operator: str, until: int, height: int) -> None:
        super().__init__(f"validator {operator} is jailed until height {until} (block height {height})")
        self.operator = operator
        self.until = until
        self.height = height


class Tombstoned(StakingFailed):
    code = "tombstoned"

    def __init__(self, operator: str) -> None:
        super().__init__(f"validator {operator} is tombstoned (double sign) and can never be unjailed")
        self.operator = operator


class ModuleAccountTransfer(ExecutionFailed):
    code = "module_account"

    def __init__(self, address: str, name: str) -> None:
        super().__init__(f"{address} is the staking {name} account; it moves only through staking transactions")
        self.address = address
        self.name = name


class CandidatesFull(StakingFailed):
    code = "candidates_full"

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} validators already hold stake (max_candidates)")
        self.limit = limit


# -- contracts (issue 11; state.contracts) --------------------------------------


class ContractFailed(ExecutionFailed):
    """A contract deploy or call failed and every effect of it was reverted; the fee for
    ``gas_used`` is charged (state.execution sets it once the outcome is known)."""

    code = "contract_failed"
    gas_used: int | None = None


class OutOfGas(ContractFailed):
    code = "out_of_gas"

    def __init__(self, gas_limit: int) -> None:
        super().__init__(f"ran out of gas (limit {gas_limit})")
        self.gas_limit = gas_limit


class ContractTrap(ContractFailed):
    code = "trap"

    def __init__(self, contract: str, trap: str) -> None:
        super().__init__(f"contract {contract} trapped: {trap}")
        self.contract = contract
        self.trap = trap


class ContractAborted(ContractFailed):
    code = "aborted"

    def __init__(self, contract: str, message: str) -> None:
        super().__init__(f"contract {contract} aborted: {message}")
        self.contract = contract
        self.message = message


class HostCallFailed(ContractFailed):
    code = "host_call_failed"

    def __init__(self, call: str, detail: str) -> None:
        super().__init__(f"host call {call} failed: {detail}")
        self.call = call
        self.detail = detail


class InvalidCode(ContractFailed):
    code = "invalid_code"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownContract(ContractFailed):
    code = "unknown_contract"

    def __init__(self, address: str) -> None:
        super().__init__(f"no contract is deployed at {address}")
        self.address = address


class UnknownMethod(ContractFailed):
    code = "unknown_method"

    def __init__(self, address: str, method: str) -> None:
        super().__init__(f"contract {address} has no method {method!r}")
        self.address = address
        self.method = method


class CallDepthExceeded(ContractFailed):
    code = "call_depth_exceeded"

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} exceeds the limit of {limit}")
        self.what = what
        self.limit = limit


class Reentrancy(ContractFailed):
    code = "reentrancy"

    def __init__(self, address: str) -> None:
        super().__init__(f"contract {address} is already on the call stack and does not export qenex_reentrant")
        self.address = address


# -- blocks and the store ---------------------------------------------------


class InvalidBlock(StateError):
    """A block fails validation; ``reason`` says why."""

    def __init__(self, reason: str, *, height: int | None = None) -> None:
        super().__init__(reason if height is None else f"block {height}: {reason}")
        self.reason = reason
        self.height = height


class InvalidLastCommit(InvalidBlock):
    """A block's ``last_commit`` is missing or does not certify its parent."""


class GenesisMismatch(StateError):
    def __init__(self, stored: bytes, given: bytes) -> None:
        super().__init__(
            f"the store was initialised with genesis 0x{stored.hex()}, not the given genesis 0x{given.hex()}"
        )
        self.stored = stored
        self.given = given


class PoolQueryError(StateError):
    """A pool query (history, TWAP, quote) cannot be answered; the message says which argument."""


class HeightUnavailable(StateError):
    """The state at ``height`` cannot be read (state.history)."""

    def __init__(self, message: str, *, height: int, head: int, oldest: int) -> None:
        super().__init__(message)
        self.height = height
        self.head = head
        self.oldest = oldest


class HeightAboveHead(HeightUnavailable):
    def __init__(self, height: int, *, head: int, oldest: int) -> None:
        super().__init__(f"height {height} is above the head {head}", height=height, head=head, oldest=oldest)


class HeightPruned(HeightUnavailable):
    def __init__(self, height: int, *, head: int, oldest: int) -> None:
        super().__init__(
            f"the state at height {height} is no longer kept: the oldest available height is {oldest} (head {head})",
            height=height, head=head, oldest=oldest,
        )


class StateInvariantBroken(StateError):
    """Our own invariant does not hold (a bug or a corrupt store): halt loudly."""


class StoreError(StateError):
    """The key-value store failed or was misused."""


class StoreClosed(StoreError):
    """The key-value store was used after close()."""


class StoreNotFound(StoreError):
    """No store at the path (or its CURRENT file is gone) and creating one was not asked for."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path
