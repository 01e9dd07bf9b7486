"""Blocks: the header, the block, and the commitments a header carries.

Header ``[version, chain_id, height, time_ms, prev_hash, tx_root, app_hash,
validators_hash, proposer, last_commit_hash, evidence_hash]``; block
``[version, header, [signed tx, ...], last_commit, [evidence, ...]]``.
``last_commit`` is the previous block's commit certificate and each evidence
item a proof of equivocation, both opaque to state/ (consensus/ defines and
verifies them, through ``state.abc.CommitVerifier``).  Version 2 added the
evidence; version 1 blocks are not read.

Objects validate their fields on construction, so no invalid Block exists
past the decoding boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NewType, Sequence

from state.codec import DEFAULT_MAX_BYTES, decode, encode
from state.crypto import ADDRESS_LEN, HASH_LEN, Address, Hash, sha256
from state.errors import MalformedBlock, MalformedTransaction
from state.merkle import merkle_root
from state.payloads import MAX_UINT64, check_bytes, check_chain_id, check_uint, is_int, wire_array
from state.transactions import SignedTransaction

__all__ = [
    "Height",
    "HEADER_VERSION",
    "BLOCK_VERSION",
    "EMPTY_COMMIT",
    "EMPTY_EVIDENCE_HASH",
    "MAX_BLOCK_EVIDENCE",
    "MAX_EVIDENCE_BYTES",
    "evidence_hash",
    "BlockHeader",
    "Block",
    "tx_root",
]

Height = NewType("Height", int)

HEADER_VERSION = 2
BLOCK_VERSION = 2
# last_commit of block 1: there is no previous block to certify.
EMPTY_COMMIT = b""
# Evidence a block may carry: bounded in count and in bytes per item (an equivocation proof is two
# votes, about 300 bytes), so what a proposer can make every node verify stays small.
MAX_BLOCK_EVIDENCE = 16
MAX_EVIDENCE_BYTES = 512


def evidence_hash(evidence: Sequence[bytes]) -> Hash:
    """The header's commitment to a block's evidence list (in its order)."""
    return sha256(encode(list(evidence)))


EMPTY_EVIDENCE_HASH = evidence_hash(())


def _header_field(name: str, check: Any, *args: Any) -> None:
    try:
        check(name, *args)
    except MalformedTransaction as exc:
        raise MalformedBlock(f"header {exc}") from None


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain_id: str
    height: int
    time_ms: int
    prev_hash: bytes
    tx_root: bytes
    app_hash: bytes
    validators_hash: bytes
    proposer: Address
    last_commit_hash: bytes
    evidence_hash: bytes = EMPTY_EVIDENCE_HASH
    _hash: Hash = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            check_chain_id(self.chain_id)
        except MalformedTransaction as exc:
            raise MalformedBlock(f"header {exc}") from None
        _header_field("height", check_uint, self.height, 1, MAX_UINT64)
        _header_field("time_ms", check_uint, self.time_ms, 0, MAX_UINT64)
        for name in ("prev_hash", "tx_root", "app_hash", "validators_hash", "last_commit_hash", "evidence_hash"):
            _header_field(name, check_bytes, getattr(self, name), HASH_LEN)
        _header_field("proposer", check_bytes, self.proposer, ADDRESS_LEN)
        object.__setattr__(self, "_hash", sha256(encode(self.to_wire())))

    @property
    def hash(self) -> Hash:
        return self._hash

    def to_wire(self) -> list[Any]:
        return [
            HEADER_VERSION,
            self.chain_id,
            self.height,
            self.time_ms,
            self.prev_hash,
            self.tx_root,
            self.app_hash,
            self.validators_hash,
            self.proposer,
            self.last_commit_hash,
            self.evidence_hash,
        ]

    @classmethod
    def from_wire(cls, wire: object) -> "BlockHeader":
        version, *fields = wire_array("block header", wire, 11, MalformedBlock)
        if version != HEADER_VERSION or not is_int(version):
            raise MalformedBlock(f"unsupported block header version {version!r}")
        return cls(*fields)

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> "BlockHeader":
        return cls.from_wire(decode(data, max_bytes=4096))


@dataclass(frozen=True, slots=True)
class Block:
    """A header, its transactions, the opaque commit certificate of the previous block, and evidence.

    ``last_commit`` and the evidence items are produced and interpreted by
    consensus/ only; state/ checks that ``header.last_commit_hash ==
    sha256(last_commit)`` and ``header.evidence_hash == evidence_hash(evidence)``.
    """

    header: BlockHeader
    txs: tuple[SignedTransaction, ...]
    last_commit: bytes
    evidence: tuple[bytes, ...] = ()
    _encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.header, BlockHeader):
            raise MalformedBlock(f"header must be a BlockHeader, got {type(self.header).__name__}")
        txs = tuple(self.txs)
        for i, stx in enumerate(txs):
            if not isinstance(stx, SignedTransaction):
                raise MalformedBlock(f"tx {i} is a {type(stx).__name__}, not a SignedTransaction")
        object.__setattr__(self, "txs", txs)
        if not isinstance(self.last_commit, bytes):
            raise MalformedBlock(f"last_commit must be bytes, got {type(self.last_commit).__name__}")
        evidence = tuple(self.evidence)
        if len(evidence) > MAX_BLOCK_EVIDENCE:
            raise MalformedBlock(f"{len(evidence)} evidence items exceed the limit {MAX_BLOCK_EVIDENCE}")
        for i, item in enumerate(evidence):
            if not isinstance(item, bytes) or not 0 < len(item) <= MAX_EVIDENCE_BYTES:
                raise MalformedBlock(f"evidence {i} must be 1 to {MAX_EVIDENCE_BYTES} bytes")
        object.__setattr__(self, "evidence", evidence)
        object.__setattr__(self, "_encoded", encode(self.to_wire()))

    @property
    def hash(self) -> Hash:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def size(self) -> int:
        return len(self._encoded)

    def to_wire(self) -> list[Any]:
        return [BLOCK_VERSION, self.header.to_wire(), [stx.to_wire() for stx in self.txs], self.last_commit,
                list(self.evidence)]

    def encode(self) -> bytes:
        return self._encoded

    @classmethod
    def from_wire(cls, wire: object, *, decoded: bool = False) -> "Block":
        """``decoded``: ``wire`` is what state.codec.decode returned, so a transaction whose bytes were
        decoded before (gossip, admission) is the shared object (SignedTransaction.from_decoded)."""
        version, header, txs, last_commit, evidence = wire_array("block", wire, 5, MalformedBlock)
        if version != BLOCK_VERSION or not is_int(version):
            raise MalformedBlock(f"unsupported block version {version!r}")
        if not isinstance(txs, list):
            raise MalformedBlock(f"block txs must be an array, got {type(txs).__name__}")
        stxs = []
        for i, tx_wire in enumerate(txs):
            try:
                stxs.append(SignedTransaction.from_decoded(tx_wire) if decoded else SignedTransaction.from_wire(tx_wire))
            except MalformedTransaction as exc:
                raise MalformedBlock(f"tx {i}: {exc}") from exc
        if not isinstance(evidence, list):
            raise MalformedBlock(f"block evidence must be an array, got {type(evidence).__name__}")
        return cls(BlockHeader.from_wire(header), tuple(stxs), last_commit, tuple(evidence))

    @classmethod
    def decode(cls, data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> "Block":
        return cls.from_wire(decode(data, max_bytes=max_bytes), decoded=True)


# -- commitments a header carries ---------------------------------------------------


def tx_root(txs: Sequence[SignedTransaction]) -> Hash:
    """Merkle root over the transactions' hashes (RFC 6962 tree, see state.merkle)."""
    return Hash(merkle_root([stx.hash for stx in txs]))
