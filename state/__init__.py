"""state/: the chain's data model and the deterministic application.

Map (each module does one thing):

* ``codec``     canonical msgpack; ``crypto`` Ed25519, addresses, digests;
  ``errors`` the exception tree (root ``StateError``).
* ``amounts``   exact base-unit amounts and their decimal text.
* ``payloads``  transaction kinds and their payloads, each with its wire
  field order declared once (``WIRE``); the field checks.
* ``transactions`` transactions, signed transactions (signature cache), receipts.
* ``blocks``    headers and blocks; ``tx_root``.
  Objects validate on construction (payloads <- transactions <- blocks).
* ``validators`` the validator set: members, hash (the header's
  ``validators_hash``), CometBFT proposer priorities, ``updated(changes)``;
  consensus/ reads sets, it never makes one.
* ``merkle``    RFC 6962 tree and inclusion proofs (tx_root).
* ``genesis``   the genesis document and consensus params.
* ``abc``/``kv`` the seams: the key-value store (``MemoryKV`` for tests,
  ``LevelDBKV``) and ``CommitVerifier`` (implemented by consensus/).
* ``keys``      every key prefix, in one table.
* ``ledger``    typed records over a write overlay (checked arithmetic).
* ``execution`` inclusion checks, fees, per-kind effects, the app hash.
* ``app``       ``Application``: build / execute / commit / apply a block, queries.
* ``keyfile``   key files encrypted at rest.
* ``testing``   deterministic keys and tx builders for tests.

Decisions other packages rely on:

* A block's ``app_hash`` is the state *after* that block:
  ``H("QENEX/apphash/v1", [app_hash(h-1), h, sorted [key, value|None] diff of h])``,
  seeded at height 0 by the genesis hash.  It commits to the whole state given
  genesis; no per-key state proofs are built.
* ``prev_hash`` of block 1 is the genesis hash; ``last_commit`` of block 1 is
  empty and of every later block the parent's commit certificate, checked by
  the application's ``CommitVerifier`` against the parent's validator set
  (the bytes stay opaque to state/).
* The application stores the validator set of every height
  (``Application.validator_set(h)``); block h's ``validator_updates`` (empty
  until staking) give the set of h + 1 as ``set_h.updated(updates).increment(1)``.
  ``validators_hash`` in block h is ``ValidatorSet.hash()`` of the set that
  signs h: the one implementation.
* Fees of a block are credited to its proposer, which must be a validator,
  after the block's transactions have run.
"""
