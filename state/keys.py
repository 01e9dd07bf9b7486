"""Every key the application writes, in one place.

State keys (lower-case prefixes) are what the app hash commits to; chain-index
keys (upper-case) are written in the same batch but are not hashed (they
depend on the block hash, which depends on the app hash).

| prefix | key                                   | value                                           | hashed |
|--------|---------------------------------------|-------------------------------------------------|--------|
| ``a``  | a + address(20)                       | [1, nonce]  (absent while nonce is 0)           | yes    |
| ``b``  | b + address(20) + symbol(utf-8)       | amount (absent when 0)                          | yes    |
| ``t``  | t + symbol                            | [1, symbol, name, decimals, issuer, supply]     | yes    |
| ``v``  | v + address(20)                       | [1, pubkey, power, name]                        | yes    |
| ``p``  | p + pool id ("AAA/BBB", utf-8)        | [1, token0, token1, reserve0, reserve1, shares, reward_rate, reward_index(64), cum0(64), cum1(64), last_time_ms, created_height] | yes |
| ``l``  | l + address(20) + pool id             | [1, shares, reward_index_snapshot(64), unclaimed] | yes  |
| ``o``  | o + pool id + 0x00 + height(8)        | [1, time_ms, reserve0, reserve1, cum0(64), cum1(64)] (a pool at the end of a block that created it or changed its reserves) | yes |
| ``n``  | n + address(20)                       | pool id of the pool account at that address      | yes    |
| ``i``  | i                                     | [1, [pool ids, sorted]]                          | yes    |
| ``r``  | r                                     | [1, [ids of pools with a reward rate, sorted]]   | yes    |
| ``sv`` | sv + operator(20)                     | [1, pubkey, moniker, commission_bps, commission_epoch, tokens, shares, jailed, jailed_until, tombstoned, reward_index(64), commission, created_height] (state.staking) | yes |
| ``sk`` | sk + consensus address(20)            | operator(20): whose consensus key it is          | yes    |
| ``sd`` | sd + delegator(20) + operator(20)     | [1, shares, reward_index_snapshot(64), unclaimed] | yes   |
| ``si`` | si + delegator(20)                    | [1, [operators with a delegation record, sorted]] | yes   |
| ``su`` | su + delegator(20)                    | [1, [[operator, initial, balance, creation_height, maturity_height], ...]] in creation order | yes |
| ``sr`` | sr + delegator(20) + destination(20)  | [1, source, amount, creation_height, maturity_height]: the redelegation in flight | yes |
| ``sq`` | sq + height(8)                        | [1, [[0, delegator] or [1, delegator, destination], ...]]: what matures at that height | yes |
| ``sc`` | sc                                    | [1, [operators of validators holding tokens, sorted]]: the epoch ranking's candidates | yes |
| ``sa`` | sa                                    | [1, [[pubkey, power], ...] by consensus address]: the set staking last emitted | yes |
| ``sx`` | sx + operator(20) + height(8)         | [1, [[0, delegator] or [1, delegator, destination], ...]]: unbondings and redelegations away from that validator created at that height (what its slashing for an earlier infraction reaches) | yes |
| ``se`` | se + height(8) + consensus address(20) | [1, operator, included_height, burned, evidence]: equivocation at that height, applied once | yes |
| ``sg`` | sg + consensus address(20)            | [1, start_height, last_height, missed]: the downtime window's signing record | yes |
| ``sb`` | sb + consensus address(20) + chunk(4) | the window's missed-commit bits 1024·chunk .. 1024·chunk + 1023 (128 bytes; absent: none missed) | yes |
| ``x``  | x + contract address(20)              | [1, code_hash, deployer, created_height, storage_entries, storage_bytes, [methods], reentrant] (state.contracts) | yes |
| ``w``  | w + code hash(32)                     | the contract's WebAssembly code, once per hash   | yes    |
| ``c``  | c + contract address(20) + key        | the contract's value under ``key`` (raw bytes, key 1-128 bytes) | yes |
| ``B``  | B + height(8, big-endian)             | [1, header wire, last_commit, tx count, [evidence, ...]] | no |
| ``H``  | H + block hash(32)                    | height(8, big-endian)                           | no     |
| ``T``  | T + height(8) + index(4)              | the SignedTransaction's canonical bytes         | no     |
| ``R``  | R + height(8) + index(4)              | the Receipt's canonical bytes                   | no     |
| ``X``  | X + tx hash(32)                       | [1, height, index]                              | no     |
| ``C``  | C + height(8)                         | commit certificate of that height (opaque)      | no     |
| ``V``  | V + height(8)                         | the validator set that signs that height, with its proposer priorities (``ValidatorSet.encode()``); written for height h + 1 in block h's batch | no |
| ``U``  | U + escaped state key + height(8)     | the value the key held before block ``height`` (0x00: absent; 0x01 + value), state.history | no |
| ``W``  | W + height(8)                         | 0x01 + the escaped state keys block ``height`` changed, end to end (absent if none), state.history | no |
| ``M``  | M + name                              | metadata: head, genesis hash, genesis document  | no     |

``(64)`` marks a 64-byte big-endian unsigned integer: fixed point values
(cumulative prices, reward index) that outgrow the codec's 2**128 - 1.

Heights and indexes are fixed-width big-endian, so LevelDB's key order is
height order and a prefix scan of ``T + height`` yields a block's
transactions in order.
"""

from __future__ import annotations

ACCOUNT = b"a"
BALANCE = b"b"
TOKEN = b"t"
VALIDATOR = b"v"
POOL = b"p"
LP_POSITION = b"l"
OBSERVATION = b"o"
POOL_ACCOUNT = b"n"
POOL_INDEX = b"i"
REWARDED_INDEX = b"r"
STAKING = b"s"
STAKING_CANDIDATES = b"sc"
STAKING_ACTIVE = b"sa"
CONTRACT = b"x"
CONTRACT_CODE = b"w"
CONTRACT_STORAGE = b"c"
STATE_PREFIXES = (
    ACCOUNT, BALANCE, TOKEN, VALIDATOR, POOL, LP_POSITION, b"s", OBSERVATION, POOL_ACCOUNT, POOL_INDEX, REWARDED_INDEX,
    CONTRACT, CONTRACT_CODE, CONTRACT_STORAGE,
)

BLOCK = b"B"
BLOCK_HASH = b"H"
BLOCK_TX = b"T"
RECEIPT = b"R"
TX_INDEX = b"X"
COMMIT_CERT = b"C"
VALIDATOR_SET = b"V"
CHANGELOG = b"U"
CHANGELOG_INDEX = b"W"
META = b"M"

META_HEAD = META + b"head"  # [1, height, last block hash, app hash, last time_ms]
META_GENESIS_HASH = META + b"genesis_hash"
META_GENESIS = META + b"genesis"  # the genesis document's canonical bytes
META_HISTORY_OLDEST = META + b"history_oldest"  # height(8): the lowest height whose state can be read back


def _height(height: int) -> bytes:
    return height.to_bytes(8, "big")


def account_key(address: bytes) -> bytes:
    return ACCOUNT + address


def balance_key(address: bytes, symbol: str) -> bytes:
    return BALANCE + address + symbol.encode()


def balance_prefix(address: bytes) -> bytes:
    return BALANCE + address


def token_key(symbol: str) -> bytes:
    return TOKEN + symbol.encode()


def validator_key(address: bytes) -> bytes:
    return VALIDATOR + address


def staking_validator_key(operator: bytes) -> bytes:
    return b"sv" + operator


def staking_consensus_key(consensus_address: bytes) -> bytes:
    return b"sk" + consensus_address


def staking_delegation_key(delegator: bytes, operator: bytes) -> bytes:
    return b"sd" + delegator + operator


def staking_delegator_index_key(delegator: bytes) -> bytes:
    return b"si" + delegator


def staking_unbonding_key(delegator: bytes) -> bytes:
    return b"su" + delegator


def staking_redelegation_key(delegator: bytes, destination: bytes) -> bytes:
    return b"sr" + delegator + destination


def staking_queue_key(height: int) -> bytes:
    return b"sq" + _height(height)


def staking_slashable_key(operator: bytes, height: int) -> bytes:
    return b"sx" + operator + _height(height)


STAKING_EVIDENCE = b"se"


def staking_evidence_key(height: int, consensus_address: bytes) -> bytes:
    return STAKING_EVIDENCE + _height(height) + consensus_address


def staking_signing_key(consensus_address: bytes) -> bytes:
    return b"sg" + consensus_address


def staking_signing_bits_key(consensus_address: bytes, chunk: int) -> bytes:
    return b"sb" + consensus_address + chunk.to_bytes(4, "big")


def contract_key(address: bytes) -> bytes:
    return CONTRACT + address


def contract_code_key(code_hash: bytes) -> bytes:
    return CONTRACT_CODE + code_hash


def contract_storage_prefix(address: bytes) -> bytes:
    return CONTRACT_STORAGE + address


def contract_storage_key(address: bytes, key: bytes) -> bytes:
    return CONTRACT_STORAGE + address + key


def pool_key(pool_id: str) -> bytes:
    return POOL + pool_id.encode()


def lp_key(address: bytes, pool_id: str) -> bytes:
    return LP_POSITION + address + pool_id.encode()


def lp_prefix(address: bytes) -> bytes:
    return LP_POSITION + address


def observation_prefix(pool_id: str) -> bytes:
    return OBSERVATION + pool_id.encode() + b"\x00"


def observation_key(pool_id: str, height: int) -> bytes:
    return observation_prefix(pool_id) + _height(height)


def pool_account_key(address: bytes) -> bytes:
    return POOL_ACCOUNT + address


def block_key(height: int) -> bytes:
    return BLOCK + _height(height)


def block_hash_key(block_hash: bytes) -> bytes:
    return BLOCK_HASH + block_hash


def block_tx_prefix(height: int) -> bytes:
    return BLOCK_TX + _height(height)


def block_tx_key(height: int, index: int) -> bytes:
    return BLOCK_TX + _height(height) + index.to_bytes(4, "big")


def receipt_prefix(height: int) -> bytes:
    return RECEIPT + _height(height)


def receipt_key(height: int, index: int) -> bytes:
    return RECEIPT + _height(height) + index.to_bytes(4, "big")


def tx_index_key(tx_hash: bytes) -> bytes:
    return TX_INDEX + tx_hash


def commit_cert_key(height: int) -> bytes:
    return COMMIT_CERT + _height(height)


def validator_set_key(height: int) -> bytes:
    return VALIDATOR_SET + _height(height)


def escape_key(key: bytes) -> bytes:
    """``key`` with each 0x00 as 0x00 0xFF, then 0x00 0x00: order-preserving and
    self-terminating, so ``escape_key(k) + height(8)`` sorts by key, then height,
    and no other key's entries share ``escape_key(k)`` as a prefix."""
    return key.replace(b"\x00", b"\x00\xff") + b"\x00\x00"


def changelog_key(key: bytes, height: int) -> bytes:
    return CHANGELOG + escape_key(key) + _height(height)


def changelog_index_key(height: int) -> bytes:
    return CHANGELOG_INDEX + _height(height)


def encode_height(height: int) -> bytes:
    return _height(height)


def decode_height(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def is_state_key(key: bytes) -> bool:
    return key[:1] in STATE_PREFIXES
