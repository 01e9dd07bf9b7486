"""The stateless checks of one transaction, in the order admission runs them.

Shared by ``node/admission.py`` (every admission, RPC and gossip alike) and
by ``node/inbound.py``'s ``TxBatchValidator`` (gossip batches, in the p2p
thread, before gossipsub relays them), so both refuse the same bytes for the
same reason.  Each check raises the state error that names the fault and
carries its values; what the fault costs (an RPC error, a peer penalty) is
the caller's policy.  Pure and thread-safe: the only shared state is the
process-wide verified-signature cache in ``state.transactions``.

1. ``decode_tx``: bounded: the length is checked before anything is decoded
   (``TxTooLarge``), then the canonical codec (``DecodeError`` and its
   subclasses, ``MalformedTransaction`` for anything but bytes).
2. ``check_envelope``: chain id (``WrongChainId``), then size (``TxTooLarge``).
3. ``check_signature``: Ed25519, the dearest, last (``BadSignature``).
"""

from __future__ import annotations

from state.errors import BadSignature, MalformedTransaction, TxTooLarge, WrongChainId
from state.transactions import SignedTransaction


def decode_tx(raw: object, max_tx_bytes: int) -> SignedTransaction:
    """Decode untrusted bytes into a signed transaction, refusing oversize input before decoding it."""
    if isinstance(raw, (bytes, bytearray, memoryview)) and len(raw) > max_tx_bytes:
        raise TxTooLarge(len(raw), max_tx_bytes)
    try:
        return SignedTransaction.decode(raw, max_bytes=max_tx_bytes)  # type: ignore[arg-type]
    except RecursionError:  # nesting deeper than the codec's checks can walk: malformed, not a bug
        raise MalformedTransaction("nested too deep") from None


def check_envelope(stx: SignedTransaction, *, chain_id: str, max_tx_bytes: int) -> None:
    """The checks that need neither state nor a signature verification: chain id, then size."""
    if stx.tx.chain_id != chain_id:
        raise WrongChainId(stx.tx.chain_id, chain_id)
    if stx.size > max_tx_bytes:
        raise TxTooLarge(stx.size, max_tx_bytes)


def check_signature(stx: SignedTransaction) -> None:
    """A valid signature is cached by tx hash, so block execution does not verify it again."""
    if not stx.verify_signature():
        raise BadSignature(stx.hash)
