"""A deterministic simulator: four validators and an observer, a hostile network, one Byzantine validator.

Hypothesis draws a stream of choices that, one per step, deliver any in-flight
message (so in any order), deliver a copy and keep the original (duplication),
drop one (within a budget), fire any pending timer early (asynchrony), answer
a driver request late, trigger a rebroadcast or a block sync.  When the stream
is used up the network heals: messages go first-in first-out, nothing is
dropped, and timers fire only when the network is idle, in deadline order of
a virtual clock.

Stakes are equal in the main property and unequal in a second one.  One
validator is Byzantine.  It runs a real engine (so it knows what to sign)
but rewrites its output per recipient: a second block proposed at the same
height and view to some peers, PREPAREs and COMMITs for that block too (to
some peers, or both versions to one peer), VIEW-CHANGEs that hide its
prepared certificate, NEW-VIEWs that ignore the prepared block, messages
with forged signatures, and silence towards some peers.

Properties: no two honest engines (the observer included) ever commit different blocks at one height
(checked at every commit and block sync); once the network heals, every
honest engine commits the first ``TARGET_HEIGHT`` heights; honest peers are
never penalised and evidence only ever names the Byzantine validator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from consensus.engine import (
    Broadcast,
    BuildProposal,
    CommitBlock,
    Engine,
    HeightStarted,
    MessageReceived,
    PenalizePeer,
    ProposalBuilt,
    ProposalValidated,
    RebroadcastDue,
    Redeliver,
    ReportEvidence,
    RequestSync,
    ScheduleTimeout,
    TimeoutConfig,
    TimeoutElapsed,
    ValidateProposal,
)
from consensus.messages import Message, NewView, Proposal, ViewChange, Vote, decode_message
from consensus.validators import ValidatorSet
from state.crypto import PrivateKey, sha256

CHAIN = "qenex-sim"
N = 4  # validators, equal power
OBSERVER = N  # one more node with no key: it must commit the same blocks
NODES = N + 1
KEYS = [PrivateKey(bytes([0x40 + i]) * 32) for i in range(N)]
# Unequal stakes too: the Byzantine validator always holds less than 1/3 of
# the power, and the honest ones a quorum without it.
STAKES = [(1, 1, 1, 1), (1, 2, 2, 2), (3, 2, 3, 3), (1, 1, 1, 2)]
TIMEOUTS = TimeoutConfig(base_ms=1000, increment_ms=500, max_ms=8000)
TARGET_HEIGHT = 3
HEAL_STEPS = 30_000
STEP_MS = 5  # virtual time per adversarial step


def make_block(height: int, tag: str) -> bytes:
    return f"h{height}:{tag}".encode()


def block_is_valid(height: int, block: bytes, block_hash: bytes) -> bool:
    """The simulated application: a block is valid if it hashes right and names its height."""
    return bytes(sha256(block)) == block_hash and block.startswith(f"h{height}:".encode())


def peer(i: int) -> str:
    return f"n{i}"


@dataclass
class Packet:
    dst: int
    src: int
    message: Message


@dataclass
class Sim:
    byzantine: int
    pattern: int  # bits choosing how the Byzantine validator lies, per message and recipient
    drop_budget: int
    slow_links: int = 0  # bit src * NODES + dst: that link delivers late (partitions, slow peers)
    powers: tuple[int, ...] = (1,) * N
    engines: list[Engine] = field(default_factory=list)
    network: list[Packet] = field(default_factory=list)
    tasks: list[list[Any]] = field(default_factory=lambda: [[] for _ in range(NODES)])
    timers: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # node -> (height, view, deadline)
    now: int = 0
    commits: list[dict[int, bytes]] = field(default_factory=lambda: [{} for _ in range(NODES)])
    stored: list[dict[int, tuple[bytes, Any]]] = field(default_factory=lambda: [{} for _ in range(NODES)])
    sync_wanted: set[int] = field(default_factory=set)
    drops: int = 0
    lies: int = 0
    evidence: int = 0
    penalties: int = 0
    trace: list[str] = field(default_factory=list)
    lacking: set[int] = field(default_factory=set)  # decided without the bytes: must sync
    journal: list[list[tuple[Any, list[Any], bool]]] = field(default_factory=lambda: [[] for _ in range(NODES)])

    def __post_init__(self) -> None:
        genesis = ValidatorSet([(k.public_key, p) for k, p in zip(KEYS, self.powers)])
        assert genesis.power_of([KEYS[self.byzantine].address]) * 3 < genesis.total_power
        self.engines = [Engine(CHAIN, KEYS[i] if i < N else None, 1, genesis, TIMEOUTS) for i in range(NODES)]
        for i in range(NODES):
            self.feed(i, HeightStarted(1, genesis))

    @property
    def honest(self) -> list[int]:
        return [i for i in range(NODES) if i != self.byzantine]  # the observer included

    # -- the driver of each node ---------------------------------------------------

    def feed(self, i: int, event: Any) -> None:
        actions = self.engines[i].handle(event)
        self.journal[i].append((event, actions, self.engines[i].last_input_changed_state))
        for action in actions:
            self.execute(i, action)

    def execute(self, i: int, action: Any) -> None:
        if isinstance(action, Broadcast):
            self.send(i, action.message)
        elif isinstance(action, BuildProposal):
            block = make_block(action.height, f"v{action.view}n{i}")
            self.tasks[i].append(ProposalBuilt(action.height, action.view, block, bytes(sha256(block))))
        elif isinstance(action, ValidateProposal):
            valid = block_is_valid(action.height, action.block, action.block_hash)
            self.tasks[i].append(ProposalValidated(action.height, action.view, action.block_hash, valid))
        elif isinstance(action, ScheduleTimeout):
            self.timers[i] = (action.height, action.view, self.now + action.duration_ms)
        elif isinstance(action, Redeliver):
            self.feed(i, MessageReceived(action.message, action.from_peer))
        elif isinstance(action, CommitBlock) and not action.block:
            # Decided, but we never validated the block's bytes: fetch it.
            action.certificate.verify(CHAIN, self.engines[i].validator_set)
            self.lacking.add(i)
            self.sync_wanted.add(i)
        elif isinstance(action, CommitBlock):
            assert block_is_valid(action.height, action.block, action.block_hash), "committed an invalid block"
            action.certificate.verify(CHAIN, self.engines[i].validator_set)
            assert (action.certificate.height, action.certificate.block_hash) == (action.height, action.block_hash)
            self.apply(i, action.height, action.block, action.certificate, "commit")
        elif isinstance(action, RequestSync):
            self.sync_wanted.add(i)
        elif isinstance(action, ReportEvidence):
            if i != self.byzantine:
                action.evidence.verify(CHAIN, self.engines[i].validator_set)
                assert action.evidence.validator == KEYS[self.byzantine].address, "evidence against an honest node"
                self.evidence += 1
        elif isinstance(action, PenalizePeer):
            if i != self.byzantine:
                assert action.peer == peer(self.byzantine), f"n{i} penalised honest {action.peer}: {action.reason}"
                self.penalties += 1
        else:
            raise AssertionError(f"unknown action {action!r}")

    def apply(self, i: int, height: int, block: bytes, certificate: Any, how: str) -> None:
        block_hash = bytes(sha256(block))
        if i != self.byzantine:
            for j in self.honest:
                other = self.commits[j].get(height)
                assert other is None or other == block_hash, (
                    f"SAFETY: n{i} {how}s {block!r} at height {height}, n{j} committed another block")
        self.trace.append(f"n{i} {how} h{height} {block!r} view {certificate.view}")
        self.lacking.discard(i)
        self.commits[i][height] = block_hash
        self.stored[i][height] = (block, certificate)
        self.feed(i, HeightStarted(height + 1, self.engines[i].validator_set.increment(1)))

    def sync(self, i: int) -> bool:
        """Fetch the next block from an honest node that has it, verifying its certificate."""
        height = self.engines[i].height
        for j in self.honest:
            if j != i and height in self.stored[j]:
                block, certificate = self.stored[j][height]
                certificate.verify(CHAIN, self.engines[i].validator_set)
                assert certificate.block_hash == bytes(sha256(block))
                self.apply(i, height, block, certificate, "sync")
                return True
        if i not in self.lacking:
            self.sync_wanted.discard(i)
        return False

    # -- the network and the liar ------------------------------------------------------

    def send(self, i: int, message: Message) -> None:
        # Through the wire format, as the driver does it.
        assert decode_message(message.encode()) == message
        for j in range(NODES):
            if j == i:
                continue
            if i == self.byzantine:
                for lie in self.lie(message, j):
                    self.network.append(Packet(j, i, lie))
            else:
                self.network.append(Packet(j, i, message))

    def bit(self, j: int, salt: int) -> bool:
        return bool((self.pattern >> ((self.lies * 7 + j * 3 + salt) % 61)) & 1)

    def lie(self, message: Message, j: int) -> list[Message]:
        """What the Byzantine validator sends ``j`` instead of ``message``."""
        self.lies += 1
        key = KEYS[self.byzantine]
        view = message.new_view if isinstance(message, ViewChange) else getattr(message, "view", 0)
        if not (self.pattern >> ((message.height * 7 + view * 3) % 61)) & 1:
            return [message]  # honest in this (height, view): attacks need its help at times
        if self.bit(j, 5) and self.bit(j, 6):
            return []  # withheld from this peer
        if self.bit(j, 0):  # a forged copy first: penalised, then ignored
            if isinstance(message, Vote):
                return [Vote(message.kind, message.height, message.view, message.block_hash, message.validator,
                             bytes(64)), message]
        if isinstance(message, Proposal) and self.bit(j, 1):
            evil = make_block(message.height, f"evil{message.view}")
            return [Proposal.create(key, CHAIN, message.height, message.view, evil, bytes(sha256(evil)))]
        if isinstance(message, NewView) and self.bit(j, 1):
            evil = make_block(message.height, f"evil{message.view}")
            proposal = Proposal.create(key, CHAIN, message.height, message.view, evil, bytes(sha256(evil)))
            return [NewView.create(key, CHAIN, message.view_changes, proposal)]
        if isinstance(message, Vote):
            evil_hash = bytes(sha256(make_block(message.height, f"evil{message.view}")))
            twin = Vote.create(key, CHAIN, message.kind, message.height, message.view, evil_hash)
            if self.bit(j, 2):
                return [twin, message] if self.bit(j, 3) else [twin]
        if isinstance(message, ViewChange) and message.prepared is not None and self.bit(j, 4):
            return [ViewChange.create(key, CHAIN, message.height, message.new_view, None)]
        return [message]

    def deliver(self, index: int, keep: bool = False) -> None:
        packet = self.network[index] if keep else self.network.pop(index)
        self.feed(packet.dst, MessageReceived(packet.message, peer(packet.src)))

    def fire_timer(self, i: int) -> None:
        height, view, _ = self.timers.pop(i)
        self.feed(i, TimeoutElapsed(height, view))

    def run_task(self, i: int) -> None:
        self.feed(i, self.tasks[i].pop(0))

    def rebroadcast(self, i: int) -> None:
        self.feed(i, RebroadcastDue())

    # -- schedules --------------------------------------------------------------------------

    def is_slow(self, packet: Packet) -> bool:
        return bool((self.slow_links >> (packet.src * NODES + packet.dst)) & 1)

    def adversarial_step(self, choice: int) -> None:
        op, arg = choice % 32, choice // 32
        node = arg % NODES
        fast = [k for k, p in enumerate(self.network) if not self.is_slow(p)]
        if op < 20 and fast:
            self.deliver(fast[arg % len(fast)])
        elif op == 20 and self.network:
            self.deliver(arg % len(self.network), keep=True)
        elif op == 21 and self.network and self.drops < self.drop_budget:
            self.drops += 1
            self.network.pop(arg % len(self.network))
        elif op in (22, 23):
            # One node hears all that reached it so far, while others lag behind.
            for packet in [p for p in self.network if p.dst == node and not self.is_slow(p)]:
                self.network.remove(packet)
                self.feed(packet.dst, MessageReceived(packet.message, peer(packet.src)))
        elif op == 24 and node in self.timers:
            self.fire_timer(node)  # asynchrony: a timer fires long before its time
        elif op == 25:
            self.rebroadcast(node)
        elif op == 26 and node in self.sync_wanted:
            self.sync(node)
        elif op == 27 and self.network:
            self.deliver(arg % len(self.network))  # a slow link delivers after all
        elif op == 28:  # a link, or all links into or out of a node, become slow or recover
            kind, which = arg % 3, (arg // 3) % (NODES * NODES)
            if kind == 0:
                self.slow_links ^= 1 << which
            else:
                node = which % NODES
                links = ([node * NODES + d for d in range(NODES)] if kind == 1
                         else [src * NODES + node for src in range(NODES)])
                for link in links:
                    self.slow_links ^= 1 << link
        elif op in (29, 30):
            self.now += (arg % 20) * 10  # time passes with nothing delivered
        elif fast:
            self.deliver(fast[0])
        if op != 31:  # the drivers answer, except when they stall
            for i in range(NODES):
                while self.tasks[i]:
                    self.run_task(i)
        self.now += STEP_MS
        for i in sorted(self.timers, key=lambda i: (self.timers[i][2], i)):
            if i in self.timers and self.timers[i][2] <= self.now:
                self.fire_timer(i)

    def done(self) -> bool:
        return all(all(h in self.commits[i] for h in range(1, TARGET_HEIGHT + 1)) for i in self.honest)

    def heal(self) -> bool:
        """FIFO delivery, no drops, timers only when idle: the honest nodes must finish."""
        rebroadcast = False
        for _ in range(HEAL_STEPS):
            if self.done():
                return True
            if any(self.sync(i) for i in sorted(self.sync_wanted)):
                pass  # block sync runs beside consensus: it must not wait for a quiet network
            elif self.network:
                self.deliver(0)
            elif any(self.tasks):
                self.run_task(next(i for i in range(NODES) if self.tasks[i]))
            elif not rebroadcast:
                rebroadcast = True  # the network may have dropped something before it healed
                for i in range(NODES):
                    self.rebroadcast(i)
            elif self.timers:
                node = min(self.timers, key=lambda i: (self.timers[i][2], i))
                self.now = max(self.now, self.timers[node][2])
                self.fire_timer(node)
                rebroadcast = False
            else:
                return False
        return False

    def summary(self) -> str:
        views = [(e.height, e.view, str(e.state.step)) for e in self.engines]
        return (f"byzantine=n{self.byzantine} drops={self.drops} lies={self.lies} evidence={self.evidence} "
                f"penalties={self.penalties} engines={views}\n" + "\n".join(self.trace[-30:]))


def run(byzantine: int, pattern: int, drop_budget: int, choices: list[int], slow_links: int = 0,
        powers: tuple[int, ...] = (1,) * N) -> Sim:
    sim = Sim(byzantine, pattern, drop_budget, slow_links, powers)
    for choice in choices:
        sim.adversarial_step(choice)
    healed = sim.heal()
    assert healed, f"LIVENESS: honest nodes did not reach height {TARGET_HEIGHT} after healing\n{sim.summary()}"
    return sim


# Found by this test against a deliberately broken engine whose NEW-VIEW
# ignored prepared certificates (shrunk by hypothesis, --hypothesis-seed=2):
# the observer commits h1 in view 0 while drops keep the COMMITs from the
# validators; they time out, and view 1 must re-propose the committed block
# rather than build a new one.  Random search finds such schedules only now
# and then, so this one stays pinned.
MINORITY_COMMIT_THEN_VIEW_CHANGE = dict(
    byzantine=0, pattern=160, drop_budget=3, slow_links=0, choices=[0] * 9 + [56] + [0] * 19 + [757, 0, 21, 21])
# Found as a liveness failure: the observer missed a COMMIT at height 1 and
# its block sync never ran while the validators kept the network busy with
# later heights (the simulated driver ran sync only when idle).
OBSERVER_FALLS_BEHIND = dict(
    byzantine=0, pattern=0, drop_budget=15, slow_links=0,
    choices=[4600, 0, 0, 0, 2039, 3973, 0, 0, 320, 675, 2000, 850, 7971, 0, 0, 0, 0, 0, 0, 144, 0, 0, 0, 0, 0, 0, 949])
# Found as a liveness failure: the Byzantine validator sent its height-3
# COMMIT to one honest node only.  That node decided (but had to sync the
# block), while the two others, one vote short, sat in a view change that
# could not gather a quorum.  A decided node now relays the commit quorum.
COMMIT_SENT_TO_ONE = dict(byzantine=2, pattern=3825056, drop_budget=0, slow_links=0, choices=[0] * 20)


@example(**COMMIT_SENT_TO_ONE)
@example(**MINORITY_COMMIT_THEN_VIEW_CHANGE)
@example(**OBSERVER_FALLS_BEHIND)
@example(byzantine=0, pattern=0, drop_budget=0, slow_links=0, choices=[])
@example(byzantine=1, pattern=2**61 - 1, drop_budget=0, slow_links=0, choices=[])
@settings(max_examples=400, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    byzantine=st.integers(min_value=0, max_value=N - 1),
    pattern=st.integers(min_value=0, max_value=2**61 - 1),
    drop_budget=st.integers(min_value=0, max_value=25),
    slow_links=st.lists(st.integers(min_value=0, max_value=NODES * NODES - 1), max_size=4).map(
        lambda links: sum(1 << link for link in set(links))),
    choices=st.lists(st.integers(min_value=0, max_value=2**14), min_size=20, max_size=400),
)
def test_safety_and_liveness_under_a_byzantine_validator(byzantine: int, pattern: int, drop_budget: int,
                                                         slow_links: int, choices: list[int]) -> None:
    sim = run(byzantine, pattern, drop_budget, choices, slow_links)
    note(sim.summary())


@settings(max_examples=100, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    stakes=st.sampled_from(STAKES),
    byzantine=st.integers(min_value=0, max_value=N - 1),
    pattern=st.integers(min_value=0, max_value=2**61 - 1),
    drop_budget=st.integers(min_value=0, max_value=25),
    choices=st.lists(st.integers(min_value=0, max_value=2**14), min_size=20, max_size=400),
)
def test_safety_and_liveness_with_unequal_stakes(stakes: tuple[int, ...], byzantine: int, pattern: int,
                                                 drop_budget: int, choices: list[int]) -> None:
    # The Byzantine validator is the smallest one (it must stay below 1/3).
    smallest = min(range(N), key=lambda i: (stakes[i], i))
    powers = tuple(stakes[(i - byzantine + smallest) % N] for i in range(N))
    sim = run(byzantine, pattern, drop_budget, choices, powers=powers)
    note(sim.summary())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    byzantine=st.integers(min_value=0, max_value=N - 1),
    pattern=st.integers(min_value=0, max_value=2**61 - 1),
    choices=st.lists(st.integers(min_value=0, max_value=2**14), min_size=20, max_size=300),
)
def test_replaying_an_engines_inputs_reproduces_its_actions(byzantine: int, pattern: int, choices: list[int]) -> None:
    # What the driver's WAL relies on: a fresh engine fed the inputs the WAL
    # keeps (those that changed state, through the codec) does exactly the
    # same, and ends in exactly the same internal state.
    sim = run(byzantine, pattern, 5, choices)
    for i in range(NODES):
        fresh = Engine(CHAIN, KEYS[i] if i < N else None, 1, sim.journal[i][0][0].validator_set, TIMEOUTS)
        for number, (event, actions, changed) in enumerate(sim.journal[i]):
            if not changed:
                # Left out of the WAL: it may only have penalised its sender
                # (or, for RebroadcastDue, re-sent and re-asked).
                assert isinstance(event, RebroadcastDue) or all(isinstance(a, PenalizePeer) for a in actions), (
                    f"n{i} input {number} acted but reported no change: {event!r} -> {actions!r}")
                continue
            if isinstance(event, MessageReceived):
                event = MessageReceived(decode_message(event.message.encode()), event.from_peer)
            assert fresh.handle(event) == actions, f"n{i} diverged at input {number}: {event!r}"
        assert internals(fresh) == internals(sim.engines[i]), f"n{i}: skipped inputs changed state"


def internals(engine: Engine) -> dict[str, Any]:
    return {k: v for k, v in vars(engine).items() if k not in ("_out", "_changed")}


def test_minority_commit_then_view_change_reproposes_the_committed_block() -> None:
    sim = run(**MINORITY_COMMIT_THEN_VIEW_CHANGE)  # type: ignore[arg-type]
    blocks = {sim.stored[i][1][0] for i in sim.honest}
    views = {sim.stored[i][1][1].view for i in sim.honest}
    assert len(blocks) == 1 and min(views) == 0 and max(views) > 0, (blocks, views)


def test_commit_sent_to_one_honest_node_still_completes_the_height() -> None:
    sim = run(**COMMIT_SENT_TO_ONE)  # type: ignore[arg-type]
    assert all(TARGET_HEIGHT in sim.stored[i] for i in sim.honest)


def test_all_honest_network_commits_in_view_zero() -> None:
    sim = run(byzantine=0, pattern=0, drop_budget=0, choices=[])
    assert all(sim.stored[i][h][1].view == 0 for i in sim.honest for h in range(1, TARGET_HEIGHT + 1))
    assert sim.evidence == 0 and sim.penalties == 0
