"""A fixed chain whose block hashes and app hashes must never change by accident.

Four validators of unequal power run real consensus engines in one process,
exchanging every message through its wire encoding, in a fixed order, with
fixed block times; each validates, executes and commits through the same
path a node takes.  The chain holds transfers, a token with mints, two pools
with liquidity added and removed, single and routed swaps, liquidity-mining
rewards, an atomic flash-loan batch, transactions that fail (and are
included), an empty block, and one height decided after a view change (the
primary of view 0 stays silent).  The exact hashes below were taken before
the seams refactor (issue 9) and are part of the chain's definition: a change
to encoding, execution, the validator set or the block format that moves
them is a consensus change and must be made on purpose.  Block format 2
(issue 10: the header commits to the block's evidence list) moved every block
hash on purpose and no app hash.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from consensus import events as ce
from consensus.engine import Engine
from consensus.messages import Proposal, decode_message
from consensus.verify import CertificateVerifier
from node.blocks import BlockExecutor
from state.amounts import QNX
from state.app import Application
from state.crypto import PrivateKey, sha256
from state.genesis import Genesis, GenesisAccount, GenesisValidator, Params
from state.kv import MemoryKV
from state.testing import TEST_CHAIN_ID, TEST_GENESIS_TIME_MS, dev_key, signed
from state.payloads import (
    Batch,
    FlashBorrow,
    FlashRepay,
    PoolAdd,
    PoolCreate,
    PoolRemove,
    RewardsClaim,
    SetRewardRate,
    Swap,
    SwapRoute,
    TokenCreate,
    TokenMint,
    Transfer,
)

ONE = 10**18
VALIDATORS = [dev_key(f"golden-validator-{i}") for i in range(4)]
POWERS = [10, 20, 30, 40]
ALICE, BOB, CAROL = (dev_key(f"golden-{name}") for name in ("alice", "bob", "carol"))
VIEW_CHANGE_HEIGHT = 5
TIMEOUTS = ce.TimeoutConfig(base_ms=1000, increment_ms=1000, max_ms=10_000)

GENESIS = Genesis(
    chain_id=TEST_CHAIN_ID,
    genesis_time_ms=TEST_GENESIS_TIME_MS,
    validators=tuple(GenesisValidator(f"v{i}", k.public_key, p) for i, (k, p) in enumerate(zip(VALIDATORS, POWERS))),
    tokens=(),
    accounts=tuple(GenesisAccount(k.address, {QNX: 1_000 * ONE}) for k in (ALICE, BOB, CAROL)),
    params=Params(reward_authority=ALICE.address),
)


def block_plan() -> list[list[Any]]:
    """The transactions of heights 1, 2, ... (signed once, in order)."""
    nonces: dict[bytes, int] = {}

    def tx(key: PrivateKey, payload: object) -> Any:
        nonce = nonces.get(key.address, 0)
        nonces[key.address] = nonce + 1
        return signed(key, nonce, payload, params=GENESIS.params)

    return [
        [  # 1: a token, transfers
            tx(ALICE, TokenCreate("USD", "US dollar", 6, 1_000_000 * 10**6)),
            tx(BOB, Transfer(CAROL.address, QNX, 5 * ONE)),
            tx(CAROL, Transfer(ALICE.address, QNX, 1 * ONE)),
        ],
        [  # 2: mints, a second token, the first pool
            tx(ALICE, TokenMint("USD", BOB.address, 50_000 * 10**6)),
            tx(ALICE, TokenCreate("EUR", "Euro", 6, 1_000_000 * 10**6)),
            tx(ALICE, PoolCreate(QNX, "USD", 100 * ONE, 200_000 * 10**6, 1)),
        ],
        [  # 3: the second pool, liquidity mining, a swap
            tx(ALICE, PoolCreate("USD", "EUR", 100_000 * 10**6, 90_000 * 10**6, 1)),
            tx(ALICE, SetRewardRate(QNX, "USD", 10**15)),
            tx(BOB, Swap("USD", QNX, 1_000 * 10**6, 1, 1_000)),
        ],
        [  # 4: liquidity from a second provider, a routed swap, a failing transfer
            tx(BOB, PoolAdd(QNX, "USD", 10 * ONE, 30_000 * 10**6, 1)),
            tx(CAROL, SwapRoute((QNX, "USD", "EUR"), 2 * ONE, 1, 1_000)),
            tx(CAROL, Transfer(BOB.address, "EUR", 10**15)),  # more than carol holds: failed receipt
        ],
        [  # 5 (after a view change): a flash loan repaid with its fee, in one atomic batch
            tx(ALICE, Batch((
                FlashBorrow(QNX, "USD", "USD", 10_000 * 10**6),
                FlashRepay(QNX, "USD", "USD", 10_031 * 10**6),
            ))),
            tx(BOB, Transfer(ALICE.address, "USD", 7 * 10**6)),
        ],
        [  # 6: rewards claimed, liquidity removed, a swap past its slippage bound (failed)
            tx(BOB, RewardsClaim(QNX, "USD")),
            tx(BOB, PoolRemove(QNX, "USD", 10**9, 1, 1)),
            tx(CAROL, Swap(QNX, "USD", ONE, 10**30, 1_000)),
        ],
        [],  # 7: empty
        [  # 8
            tx(CAROL, Transfer(BOB.address, QNX, 3)),
        ],
    ]


class Validator:
    def __init__(self, key: PrivateKey) -> None:
        self.key = key
        self.app = Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier())
        self.blocks = BlockExecutor(self.app)
        self.engine: Engine | None = None


def run_chain() -> tuple[list[tuple[int, int, str, str]], Application]:
    """(height, view, block hash, app hash) of every height, as every validator committed it, and one app."""
    nodes = [Validator(k) for k in VALIDATORS]
    plan = block_plan()
    committed: list[list[tuple[int, int, str, str]]] = [[] for _ in nodes]
    for height in range(1, len(plan) + 1):
        queue: deque[tuple[int, Any]] = deque()
        vset = nodes[0].blocks.validator_set_for(height)
        silent = vset.proposer_for(0).address if height == VIEW_CHANGE_HEIGHT else None
        for i, node in enumerate(nodes):
            assert node.blocks.validator_set_for(height) == vset
            node.engine = Engine(TEST_CHAIN_ID, node.key, height, vset, TIMEOUTS)
            queue.append((i, ce.HeightStarted(height, vset)))

        def run(queue: deque[tuple[int, Any]]) -> None:
            while queue:
                i, event = queue.popleft()
                node = nodes[i]
                assert node.engine is not None
                for action in node.engine.handle(event):
                    perform(i, node, action, queue)

        def perform(i: int, node: Validator, action: Any, queue: deque[tuple[int, Any]]) -> None:
            if isinstance(action, ce.Broadcast):
                if isinstance(action.message, Proposal) and node.key.address == silent and action.message.view == 0:
                    return  # the silent primary: its view-0 proposal never leaves
                wire = action.message.encode()
                for j in range(len(nodes)):
                    if j != i:
                        queue.append((j, ce.MessageReceived(decode_message(wire), f"peer-{i}")))
            elif isinstance(action, ce.BuildProposal):
                time_ms = TEST_GENESIS_TIME_MS + height * 1_000 + action.view * 100
                block = node.blocks.build(plan[height - 1], proposer=node.key.address, time_ms=time_ms)
                queue.append((i, ce.ProposalBuilt(action.height, action.view, block.encode(), block.hash)))
            elif isinstance(action, ce.ValidateProposal):
                problem = node.blocks.validate(action.block, action.block_hash, action.height)
                queue.append((i, ce.ProposalValidated(action.height, action.view, action.block_hash, problem is None,
                                                      problem or "", block_digest=bytes(sha256(action.block)))))
            elif isinstance(action, ce.CommitBlock):
                block = node.blocks.commit_certified(action.height, action.block_hash, action.block,
                                                     action.certificate.encode())
                assert block is not None, f"validator {i} could not commit height {action.height}"
                committed[i].append((action.height, action.certificate.view, block.hash.hex(),
                                     node.app.app_hash.hex()))
            elif isinstance(action, ce.Redeliver):
                queue.append((i, ce.MessageReceived(action.message, action.from_peer)))
            elif isinstance(action, (ce.ScheduleTimeout, ce.ReportEvidence)):
                pass
            else:
                raise AssertionError(f"validator {i}: unexpected action {action!r}")

        run(queue)
        if silent is not None:
            assert all(node.app.height == height - 1 for node in nodes), "the silent primary was not silent"
            queue.extend((i, ce.TimeoutElapsed(height, 0)) for i in range(len(nodes)))
            run(queue)
        assert all(node.app.height == height for node in nodes), f"height {height} was not committed by all"
    assert all(c == committed[0] for c in committed)
    return committed[0], nodes[0].app


GOLDEN = [
    # (height, view, block hash, app hash)
    (1, 0, "fb378ea27737fa60a6b30648550c504e628389ead86d6e4fe60ea07431fed703",
     "9f43cedbe3d3bc0af8352ff66469bbffe9dbd61936fd31b999a798e6eeabeeb4"),
    (2, 0, "c6df18678bba2fb3d62fcb63850ef6b7c1cf776e86a9296ce09177652429aa6e",
     "6231e5205d7f11a00d979712ded0c437ef31b69a00f1cbf9ed42616a977c10a1"),
    (3, 0, "d37db8039621b5ece882ae0135e7e4d165d3a31c7c149f00b3c68e3953be53ec",
     "35118974b2946c9e0188cc81d4090fcc18f3a5924a4e5d6f91a2cf43f60d3bd7"),
    (4, 0, "b6bc6c701d7649faa73eef8685bb831d91b118b465aeaaa67e5db2dad6fa91e0",
     "0385276da9bfd5a918eafce3d11b7138945c36ddd641aeaa34876b1f3310bdcc"),
    (5, 1, "fd3706efab086dd07d9cb833904cae40af11af863e543d335fcbb8ba8d240eea",
     "8df89466baf35da13cc6d69ecc57b2df550c148ca99ff208632b68ccf792a3fe"),
    (6, 0, "9b37f38ba5c55a71b579653ce52b07f7394e60be9c95a8425650001b031d92c2",
     "0ad12d701ddaf689c1d64d4191f029716ca915154d36cf0810b65bedd94b4ee4"),
    (7, 0, "eda29db22523e031b45c5ebecbe04f199936c8b76a5554a1e7a38c4a9285ea34",
     "4af34c4f0aa27b0d260468398104059a83756129d13d10019e4bd61fc948b558"),
    (8, 0, "35bf813f6410153e1a2abe7584bb46f572705df04f0c38d9824614645a5f582d",
     "d945131f89fd0137feeb35f152eb5c7096b14b2c00ee46d348b5d8026912d12b"),
]


def test_golden_chain_hashes_never_move() -> None:
    chain, app = run_chain()
    assert [view for _, view, _, _ in chain] == [0, 0, 0, 0, 1, 0, 0, 0]
    statuses = [[str(app.get_receipt(stx.hash).status) for stx in app.get_block(h).txs]  # type: ignore[union-attr]
                for h in range(1, app.height + 1)]
    assert statuses == [["ok"] * 3, ["ok"] * 3, ["ok"] * 3, ["ok", "ok", "failed"], ["ok"] * 2,
                        ["ok", "ok", "failed"], [], ["ok"]]
    assert chain == GOLDEN
