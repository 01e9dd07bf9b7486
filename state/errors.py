"""Exception root of state/: every error carries the values that caused it.

Tree (peer faults are DecodeError / InvalidTransaction / InvalidBlock; our own
broken invariants are StateInvariantBroken and should halt the node):

    StateError
    ├── EncodeError
    ├── DecodeError                      malformed / non-canonical bytes
    │   ├── MalformedTransaction         well-formed msgpack, wrong tx shape
    │   │   ├── UnknownTxKind
    │   │   ├── InvalidSymbol
    │   │   ├── AmountOutOfRange
    │   │   └── WrongLength
    │   ├── MalformedBlock
    │   └── MalformedGenesis             (also raised for bad genesis JSON)
    ├── InvalidKey
    ├── KeyfileError
    ├── AmountError                      parse_amount / format_amount
    │   ├── TooManyDecimals
    │   └── AmountOverflow
    ├── InvalidTransaction               stateless or inclusion checks
    │   ├── WrongChainId, BadSignature, FeeTooLow, TxTooLarge
    │   ├── BadNonce, FeeUnpayable
    ├── ExecutionFailed                  a tx's effect failed (receipt: failed)
    │   ├── InsufficientBalance, UnknownToken, TokenExists, NotIssuer, BalanceOverflow
    ├── InvalidBlock                     a proposed / synced block is invalid
    ├── GenesisMismatch                  store was initialised with another genesis
    └── StateInvariantBroken             a bug or a corrupt store: halt
"""

from __future__ import annotations


class StateError(Exception):
    """Root of every error raised by state/."""


class EncodeError(StateError):
    """A value cannot be put in canonical form."""


class DecodeError(StateError):
    """Bytes are malformed, non-canonical or of the wrong shape."""


class InvalidKey(StateError):
    """A key, signature or address is malformed."""


class KeyfileError(StateError):
    """A key file cannot be read, parsed or decrypted."""


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


# -- blocks and the store ---------------------------------------------------


class InvalidBlock(StateError):
    """A block fails validation; ``reason`` says why."""

    def __init__(self, reason: str, *, height: int | None = None) -> None:
        super().__init__(reason if height is None else f"block {height}: {reason}")
        self.reason = reason
        self.height = height


class GenesisMismatch(StateError):
    def __init__(self, stored: bytes, given: bytes) -> None:
        super().__init__(
            f"the store was initialised with genesis 0x{stored.hex()}, not the given genesis 0x{given.hex()}"
        )
        self.stored = stored
        self.given = given


class StateInvariantBroken(StateError):
    """Our own invariant does not hold (a bug or a corrupt store): halt loudly."""


class StoreError(StateError):
    """The key-value store failed or was misused."""


class StoreClosed(StoreError):
    """The key-value store was used after close()."""
