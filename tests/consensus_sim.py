"""A deterministic simulator of four validators and an observer, each driven as node/driver.py drives its engine.

The driver model (what ``ConsensusDriver`` does, step for step):

* one FIFO inbox per node: messages from the network, validation verdicts,
  finished builds, timer firings, ``RebroadcastDue`` and synced blocks all
  queue there and are handled one at a time, in order;
* ``ValidateProposal`` is judged when the action is carried out and the verdict
  (naming the digest of the bytes judged) is queued behind whatever is in the
  inbox; a ``RebroadcastDue`` that re-asks queues a second verdict;
* ``BuildProposal`` finishes later (the driver builds in a task);
* ``RebroadcastDue`` arrives every ``REBROADCAST_MS`` of virtual time while the
  node has committed nothing for that long;
* ``CommitBlock`` with bytes applies at once and starts the next height;
  without bytes (or on ``RequestSync``) the node syncs: it asks the Byzantine
  validator first, which answers junk, then an honest node that has the block;
  each answer is checked as ``_apply_synced`` checks it.

The network and the schedule are the adversary's: a hypothesis stream of
choices delivers any in-flight message into its destination's inbox (in any
order), duplicates and drops messages (within a budget), keeps drivers busy
(their inboxes fill while they handle nothing), fires timers early, slows
links, and partitions one honest validator away for many views.  Then the
network heals: messages go first-in first-out, nothing is dropped, time
passes only when all is quiet.

One validator is Byzantine; it runs a real engine (so it knows what to sign)
and rewrites its output per recipient according to its kind (see ``Kind``).

Properties, checked as the run goes: no two honest engines commit different
blocks at a height; committed and synced blocks are valid and certified;
honest peers are never penalised and evidence names only the Byzantine one;
after healing every honest engine commits ``TARGET_HEIGHT`` heights within
``HEAL_TIMEOUT_BUDGET`` timer firings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable

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
from consensus.messages import CommitCertificate, Message, NewView, Proposal, ViewChange, Vote, VoteKind, decode_message
from state.validators import ValidatorSet
from state.crypto import PrivateKey, sha256

CHAIN = "qenex-sim"
N = 4  # validators
OBSERVER = N  # one more node with no key: it must commit the same blocks
NODES = N + 1
KEYS = [PrivateKey(bytes([0x40 + i]) * 32) for i in range(N)]
# Validator set changes (issue 10): the observer holds this key and joins when a schedule adds it.
JOINER = PrivateKey(bytes([0x50]) * 32)
JOIN = N  # in a set change, index N names the joiner
SetChanges = dict[int, tuple[tuple[int, int], ...]]  # block height -> (key index, power), in force from h + 1
# Unequal stakes too: the Byzantine validator always holds less than 1/3 of
# the power, and the honest ones a quorum without it.
STAKES = [(1, 1, 1, 1), (1, 2, 2, 2), (3, 2, 3, 3), (1, 1, 1, 2)]
TIMEOUTS = TimeoutConfig(base_ms=1000, increment_ms=500, max_ms=8000)
REBROADCAST_MS = 500
TARGET_HEIGHT = 3
HEAL_STEPS = 60_000  # a fuse only; liveness is measured in timeouts
# Liveness after healing: timer firings (at honest nodes) until every honest
# node committed TARGET_HEIGHT heights.  A height needs at most a few views
# after healing (each Byzantine or stale primary costs one); see the report of
# bench/consensus_sweep.py for the distribution.
HEAL_TIMEOUT_BUDGET = 40
PARTITION_STEPS = 200_000
SYNC_RETRY_MS = 2000  # BlockSync runs a round when asked, else every 2 s
STEP_MS = 5  # virtual time per adversarial step


class Kind(IntEnum):
    """How the Byzantine validator misbehaves (it always answers sync with junk)."""

    LIES = 0  # equivocates: second blocks, twin votes, hidden certificates, forged copies, silence
    JUNK_BYTES = 1  # as primary, junk bytes under the genuine hash to some peers; then withholds COMMITs or all
    VIEW_CHANGE_ONLY = 2  # sends VIEW-CHANGEs, NEW-VIEWs and proposals, never a PREPARE or COMMIT
    JUNK_COMMITS = 3  # two junk COMMITs to some peers, the genuine one to others; junk bytes to those


def make_block(height: int, tag: str) -> bytes:
    return f"h{height}:{tag}".encode()


def junk_bytes(block: bytes) -> bytes:
    """Bytes that claim a block's hash but are not that block."""
    return b"junk:" + block


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


@dataclass(frozen=True)
class Synced:
    """The driver's SyncedBlock: a block and its certificate as fetched from ``src``."""

    height: int
    block: bytes
    certificate: Any
    src: int


Rewrite = Callable[["Sim", Message, int], list[Message]]


@dataclass
class Sim:
    byzantine: int
    pattern: int  # bits choosing how the Byzantine validator lies, per message and recipient
    drop_budget: int
    slow_links: int = 0  # bit src * NODES + dst: that link delivers late (partitions, slow peers)
    powers: tuple[int, ...] = (1,) * N
    kind: Kind = Kind.LIES
    rewrite: Rewrite | None = None  # a scripted Byzantine behaviour instead of ``kind``'s
    engines: list[Engine] = field(default_factory=list)
    network: list[Packet] = field(default_factory=list)
    inbox: list[list[Any]] = field(default_factory=lambda: [[] for _ in range(NODES)])
    builds: list[list[ProposalBuilt]] = field(default_factory=lambda: [[] for _ in range(NODES)])
    busy: list[int] = field(default_factory=lambda: [0] * NODES)  # steps a driver handles nothing
    timers: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # node -> (height, view, deadline)
    now: int = 0
    next_rebroadcast: int = REBROADCAST_MS
    progress_at: list[int] = field(default_factory=lambda: [0] * NODES)
    commits: list[dict[int, bytes]] = field(default_factory=lambda: [{} for _ in range(NODES)])
    stored: list[dict[int, tuple[bytes, Any]]] = field(default_factory=lambda: [{} for _ in range(NODES)])
    sync_wanted: set[int] = field(default_factory=set)
    sync_after: dict[int, int] = field(default_factory=dict)  # node -> virtual time of its next sync round
    isolated: int | None = None  # cut off from everyone (a partition)
    drops: int = 0
    lies: int = 0
    evidence: int = 0
    penalties: int = 0
    healing: bool = False
    heal_timeouts: int = 0  # timer firings at honest nodes since the network healed
    max_view: int = 0
    trace: list[str] = field(default_factory=list)
    wire_checked: set[Message] = field(default_factory=set)
    rebroadcasts: bool = True  # periodic RebroadcastDue (off only while a partition runs, see there)
    lacking: set[int] = field(default_factory=set)  # decided without the bytes: must sync
    journal: list[list[tuple[Any, list[Any], bool]]] = field(default_factory=lambda: [[] for _ in range(NODES)])
    # As the application's validator_updates: the set after block h is set_h.updated(changes[h]).increment(1).
    set_changes: SetChanges = field(default_factory=dict)
    sets: list[ValidatorSet] = field(default_factory=list)  # the set of each height, from 1 (set_at)

    def __post_init__(self) -> None:
        genesis = ValidatorSet([(k.public_key, p) for k, p in zip(KEYS, self.powers)])
        self.sets = sets_by_height(genesis, self.set_changes)
        for vset in self.sets:
            assert vset.power_of([KEYS[self.byzantine].address]) * 3 < vset.total_power
        observer_key = JOINER if self.set_changes else None
        self.engines = [Engine(CHAIN, KEYS[i] if i < N else observer_key, 1, genesis, TIMEOUTS)
                        for i in range(NODES)]
        for i in range(NODES):
            self.feed(i, HeightStarted(1, genesis))

    @property
    def honest(self) -> list[int]:
        return [i for i in range(NODES) if i != self.byzantine]  # the observer included

    # -- the driver of each node ---------------------------------------------------

    def feed(self, i: int, event: Any) -> None:
        actions = self.engines[i].handle(event)
        self.journal[i].append((event, actions, self.engines[i].last_input_changed_state))
        self.max_view = max(self.max_view, self.engines[i].view)
        for action in actions:
            self.execute(i, action)

    def execute(self, i: int, action: Any) -> None:
        if isinstance(action, Broadcast):
            self.send(i, action.message)
        elif isinstance(action, BuildProposal):
            block = make_block(action.height, f"v{action.view}n{i}")
            self.builds[i].append(ProposalBuilt(action.height, action.view, block, bytes(sha256(block))))
        elif isinstance(action, ValidateProposal):
            # Judged now, answered through the inbox, naming the bytes judged.
            valid = block_is_valid(action.height, action.block, action.block_hash)
            self.inbox[i].append(ProposalValidated(action.height, action.view, action.block_hash, valid,
                                                   block_digest=bytes(sha256(action.block))))
        elif isinstance(action, ScheduleTimeout):
            self.timers[i] = (action.height, action.view, self.now + action.duration_ms)
        elif isinstance(action, Redeliver):
            self.feed(i, MessageReceived(action.message, action.from_peer))
        elif isinstance(action, CommitBlock) and not action.block:
            # Decided, but we never validated the block's bytes: fetch it.
            action.certificate.verify(CHAIN, self.engines[i].validator_set)
            self.lacking.add(i)
            self.want_sync(i)
        elif isinstance(action, CommitBlock):
            assert block_is_valid(action.height, action.block, action.block_hash), "committed an invalid block"
            action.certificate.verify(CHAIN, self.engines[i].validator_set)
            assert (action.certificate.height, action.certificate.block_hash) == (action.height, action.block_hash)
            self.apply(i, action.height, action.block, action.certificate, "commit")
        elif isinstance(action, RequestSync):
            self.want_sync(i)
        elif isinstance(action, ReportEvidence):
            if i != self.byzantine:
                # Against the set of the evidence's own height, as node.evidence's pool checks it: a
                # conflicting COMMIT for the last height found after it (Engine._late_commit_vote) can
                # name a validator that left the set at this one.
                action.evidence.verify(CHAIN, self.set_at(action.evidence.height))
                assert action.evidence.validator == KEYS[self.byzantine].address, "evidence against an honest node"
                self.evidence += 1
        elif isinstance(action, PenalizePeer):
            self.penalize(i, action.peer, action.reason)
        else:
            raise AssertionError(f"unknown action {action!r}")

    def set_at(self, height: int) -> ValidatorSet:
        """The set of ``height``, as Application.validator_set(height) gives it."""
        while len(self.sets) < height:
            self.sets.append(next_set(self.sets[-1], self.set_changes, len(self.sets)))
        return self.sets[height - 1]

    def want_sync(self, i: int) -> None:
        self.sync_wanted.add(i)
        self.sync_after[i] = self.now  # BlockSync.request wakes the sync task

    def penalize(self, i: int, who: str, reason: str) -> None:
        if i != self.byzantine:
            assert who == peer(self.byzantine), f"n{i} penalised honest {who}: {reason}"
            self.penalties += 1

    def apply(self, i: int, height: int, block: bytes, certificate: Any, how: str) -> None:
        block_hash = bytes(sha256(block))
        if i != self.byzantine:
            for j in self.honest:
                other = self.commits[j].get(height)
                assert other is None or other == block_hash, (
                    f"SAFETY: n{i} {how}s {block!r} at height {height}, n{j} committed another block")
        self.trace.append(f"n{i} {how} h{height} {block!r} view {certificate.view} at {self.now} ms")
        self.lacking.discard(i)
        self.sync_wanted.discard(i)
        self.commits[i][height] = block_hash
        self.stored[i][height] = (block, certificate)
        self.progress_at[i] = self.now
        self.feed(i, HeightStarted(height + 1, next_set(self.engines[i].validator_set, self.set_changes, height)))

    def process(self, i: int) -> None:
        """The driver takes the next item off its inbox."""
        item = self.inbox[i].pop(0)
        if isinstance(item, Synced):
            self.apply_synced(i, item)
        else:
            self.feed(i, item)

    def drain(self, i: int) -> None:
        self.inbox[i].extend(self.builds[i])  # builds finish in their own task
        self.builds[i] = []
        while self.inbox[i]:
            self.process(i)

    def apply_synced(self, i: int, item: Synced) -> None:
        """As ConsensusDriver._apply_synced: check the certificate signs these bytes, then apply."""
        if item.height != len(self.commits[i]) + 1:
            return  # already have it
        certificate = item.certificate
        if (certificate.height, certificate.block_hash) != (item.height, bytes(sha256(item.block))):
            self.penalize(i, peer(item.src), f"certificate does not sign block {item.height}")
            return
        try:
            certificate.verify(CHAIN, self.engines[i].validator_set)
        except Exception as exc:
            self.penalize(i, peer(item.src), f"synced block {item.height}: {exc}")
            return
        # More than 2/3 of power committed it: it must be valid (else safety broke).
        assert block_is_valid(item.height, item.block, certificate.block_hash), "a certified block is invalid"
        self.apply(i, item.height, item.block, certificate, "sync")

    def sync(self, i: int) -> bool:
        """One sync round: the Byzantine validator answers first (junk), then an honest node with the block."""
        height = len(self.commits[i]) + 1
        if (self.isolated == i or self.now < self.sync_after.get(i, 0)
                or any(isinstance(item, Synced) for item in self.inbox[i])):
            return False  # like BlockSync: a round when asked or every SYNC_RETRY_MS, answers applied first
        self.sync_after[i] = self.now + SYNC_RETRY_MS
        if i != self.byzantine and self.isolated != self.byzantine:
            self.inbox[i].append(self.junk_sync_answer(height))
        for j in self.honest:
            if j != i and height in self.stored[j] and self.isolated != j:
                block, certificate = self.stored[j][height]
                self.inbox[i].append(Synced(height, block, certificate, j))
                return True
        if i not in self.lacking:
            self.sync_wanted.discard(i)
        return False

    def junk_sync_answer(self, height: int) -> Synced:
        key = KEYS[self.byzantine]
        genuine = next((self.stored[j][height] for j in self.honest if height in self.stored[j]), None)
        if genuine is not None and (self.pattern >> (height % 61)) & 1:
            return Synced(height, junk_bytes(genuine[0]), genuine[1], self.byzantine)  # the real certificate
        junk = make_block(height, "sync-junk")
        vote = Vote.create(key, CHAIN, VoteKind.COMMIT, height, 0, bytes(sha256(junk)))
        return Synced(height, junk, CommitCertificate.from_votes(height, 0, vote.block_hash, [vote]), self.byzantine)

    # -- the network and the liar ------------------------------------------------------

    def cut(self, src: int, dst: int) -> bool:
        return self.isolated is not None and self.isolated in (src, dst)

    def send(self, i: int, message: Message) -> None:
        # Through the wire format, as the driver does it (once per distinct message: rebroadcasts repeat them).
        if message not in self.wire_checked:
            assert decode_message(message.encode()) == message
            self.wire_checked.add(message)
        for j in range(NODES):
            if j == i or self.cut(i, j):
                continue
            if i == self.byzantine:
                self.lies += 1
                rewrite = self.rewrite or REWRITES[self.kind]
                for lie in rewrite(self, message, j):
                    self.network.append(Packet(j, i, lie))
            else:
                self.network.append(Packet(j, i, message))

    def bit(self, j: int, salt: int) -> bool:
        return bool((self.pattern >> ((self.lies * 7 + j * 3 + salt) % 61)) & 1)

    def fixed_bit(self, j: int, salt: int) -> bool:
        """A choice per recipient that holds for the whole run."""
        return bool((self.pattern >> ((j * 5 + salt) % 61)) & 1)

    def deliver(self, index: int, keep: bool = False) -> None:
        packet = self.network[index] if keep else self.network.pop(index)
        self.inbox[packet.dst].append(MessageReceived(packet.message, peer(packet.src)))

    def fire_timer(self, i: int) -> None:
        height, view, _ = self.timers.pop(i)
        if self.healing and i != self.byzantine:
            self.heal_timeouts += 1
        self.inbox[i].append(TimeoutElapsed(height, view))

    def tick(self, ms: int) -> None:
        """Virtual time passes: due timers fire and periodic rebroadcasts queue, in time order."""
        target = self.now + ms
        while True:
            due = [(d, i) for i, (_, _, d) in self.timers.items() if d <= target]
            when = min([self.next_rebroadcast] + [d for d, _ in due])
            if when > target:
                break
            self.now = max(self.now, when)
            if when == self.next_rebroadcast:
                self.next_rebroadcast += REBROADCAST_MS
                for i in range(NODES if self.rebroadcasts else 0):
                    if self.now - self.progress_at[i] >= REBROADCAST_MS:
                        self.inbox[i].append(RebroadcastDue())
            for d, i in sorted(due):
                if d == when and i in self.timers:
                    self.fire_timer(i)
        self.now = target

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
                self.inbox[node].append(MessageReceived(packet.message, peer(packet.src)))
        elif op == 24 and node in self.timers:
            self.fire_timer(node)  # asynchrony: a timer fires long before its time
        elif op == 25:
            self.inbox[node].append(RebroadcastDue())
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
            self.tick((arg % 20) * 10)  # time passes with nothing delivered
        elif op == 31:
            if (arg // NODES) % 2:
                self.busy[node] = 2 ** ((arg // (2 * NODES)) % 7)  # its driver is busy: the inbox fills
            elif self.inbox[node]:
                self.process(node)  # one inbox item, even while busy
        elif fast:
            self.deliver(fast[0])
        for i in range(NODES):
            if self.busy[i]:
                self.busy[i] -= 1
            else:
                self.drain(i)
        self.tick(STEP_MS)

    def partition(self, node: int, views: int) -> None:
        """Cut ``node`` off while the others run (FIFO, timers when quiet) until they pass ``views``.

        Nothing is lost among the connected nodes meanwhile, so periodic
        rebroadcasts would only repeat delivered messages (RebroadcastDue
        changes no engine state); they are left out to keep long climbs cheap.
        """
        self.isolated = node
        self.rebroadcasts = False
        self.network = [p for p in self.network if not self.cut(p.src, p.dst)]
        others = [i for i in range(N) if i not in (node, self.byzantine)]
        heights = [e.height for e in self.engines]
        # Enough virtual time for the others to climb ``views`` views if they can.
        deadline = self.now + 2 * sum(TIMEOUTS.duration_ms(v) for v in range(views + 1))
        for _ in range(PARTITION_STEPS):
            if (min(self.engines[i].view for i in others) >= views or self.now > deadline
                    or [e.height for e in self.engines] != heights or not self.settle_once()):
                break
        self.isolated = None
        self.rebroadcasts = True

    def settle_once(self) -> bool:
        """One step of a quiet, FIFO network; False if nothing at all is left to happen."""
        for i in range(NODES):
            if self.inbox[i] or self.builds[i]:
                self.drain(i)
                return True
        if self.network:
            self.deliver(0)
            return True
        if self.timers:
            deadline = min(d for _, _, d in self.timers.values())
            self.tick(max(0, min(deadline, self.next_rebroadcast) - self.now))
            return True
        return False

    def done(self) -> bool:
        return all(all(h in self.commits[i] for h in range(1, TARGET_HEIGHT + 1)) for i in self.honest)

    def heal(self) -> bool:
        """FIFO delivery, no drops, time passes only when all is quiet: the honest nodes must finish."""
        self.slow_links = 0
        self.busy = [0] * NODES
        self.healing = True
        for _ in range(HEAL_STEPS):
            if self.done():
                return True
            for i in sorted(self.sync_wanted):
                # Block sync runs beside consensus: it must not wait for a quiet network.
                self.sync(i)
            if not self.settle_once() or self.heal_timeouts > HEAL_TIMEOUT_BUDGET:
                return False
        return False

    def summary(self) -> str:
        views = [(e.height, e.view, str(e.state.step)) for e in self.engines]
        return (f"kind={self.kind.name} byzantine=n{self.byzantine} drops={self.drops} lies={self.lies} "
                f"evidence={self.evidence} penalties={self.penalties} heal_timeouts={self.heal_timeouts} "
                f"max_view={self.max_view} engines={views}\n" + "\n".join(self.trace[-30:]))


# -- the Byzantine validator's behaviours, per kind ------------------------------------------


def lie_equivocate(sim: Sim, message: Message, j: int) -> list[Message]:
    """Kind.LIES: what the Byzantine validator sends ``j`` instead of ``message``."""
    key = KEYS[sim.byzantine]
    view = message.new_view if isinstance(message, ViewChange) else getattr(message, "view", 0)
    if not (sim.pattern >> ((message.height * 7 + view * 3) % 61)) & 1:
        return [message]  # honest in this (height, view): attacks need its help at times
    if sim.bit(j, 5) and sim.bit(j, 6):
        return []  # withheld from this peer
    if sim.bit(j, 0):  # a forged copy first: penalised, then ignored
        if isinstance(message, Vote):
            return [Vote(message.kind, message.height, message.view, message.block_hash, message.validator,
                         bytes(64)), message]
    if isinstance(message, Proposal) and sim.bit(j, 1):
        evil = make_block(message.height, f"evil{message.view}")
        return [Proposal.create(key, CHAIN, message.height, message.view, evil, bytes(sha256(evil)))]
    if isinstance(message, NewView) and sim.bit(j, 1):
        evil = make_block(message.height, f"evil{message.view}")
        proposal = Proposal.create(key, CHAIN, message.height, message.view, evil, bytes(sha256(evil)))
        return [NewView.create(key, CHAIN, message.view_changes, proposal)]
    if isinstance(message, Vote):
        evil_hash = bytes(sha256(make_block(message.height, f"evil{message.view}")))
        twin = Vote.create(key, CHAIN, message.kind, message.height, message.view, evil_hash)
        if sim.bit(j, 2):
            return [twin, message] if sim.bit(j, 3) else [twin]
    if isinstance(message, ViewChange) and message.prepared is not None and sim.bit(j, 4):
        return [ViewChange.create(key, CHAIN, message.height, message.new_view, None)]
    return [message]


def with_junk_bytes(message: Message, key: PrivateKey) -> Message:
    """The same proposal (or NEW-VIEW), signed anew, carrying junk bytes under the genuine hash."""
    if isinstance(message, Proposal):
        return Proposal.create(key, CHAIN, message.height, message.view, junk_bytes(message.block),
                               message.block_hash)
    assert isinstance(message, NewView)
    proposal = with_junk_bytes(message.proposal, key)
    assert isinstance(proposal, Proposal)
    return NewView.create(key, CHAIN, message.view_changes, proposal)


def lie_junk_bytes(sim: Sim, message: Message, j: int) -> list[Message]:
    """Kind.JUNK_BYTES: junk bytes under the genuine hash to some peers; later silence (issue 8, schedule 1)."""
    key = KEYS[sim.byzantine]
    view = message.new_view if isinstance(message, ViewChange) else getattr(message, "view", 0)
    silent_from = 1 + (sim.pattern >> 40) % 3  # the view from which it says nothing at all
    if view >= silent_from and sim.fixed_bit(0, 7):
        return []
    if isinstance(message, Vote) and message.kind == VoteKind.COMMIT and sim.fixed_bit(0, 8):
        return []
    if isinstance(message, (Proposal, NewView)) and sim.fixed_bit(j, 1):
        return [with_junk_bytes(message, key)]
    return [message]


def lie_view_change_only(sim: Sim, message: Message, j: int) -> list[Message]:
    """Kind.VIEW_CHANGE_ONLY: helps views change, never helps a block commit (issue 8, schedule 2)."""
    return [] if isinstance(message, Vote) else [message]


def lie_junk_commits(sim: Sim, message: Message, j: int) -> list[Message]:
    """Kind.JUNK_COMMITS: fills peers' per-signer vote slots with junk (issue 8, schedule 3)."""
    key = KEYS[sim.byzantine]
    if isinstance(message, (Proposal, NewView)) and sim.fixed_bit(j, 1):
        return [with_junk_bytes(message, key)]  # this peer can only decide without the bytes
    if isinstance(message, Vote) and sim.fixed_bit(j, 2):
        junk = [Vote.create(key, CHAIN, message.kind, message.height, message.view,
                            bytes(sha256(make_block(message.height, f"junk{n}")))) for n in (1, 2)]
        return junk + ([message] if sim.fixed_bit(j, 3) else [])
    return [message]


REWRITES: dict[Kind, Rewrite] = {
    Kind.LIES: lie_equivocate,
    Kind.JUNK_BYTES: lie_junk_bytes,
    Kind.VIEW_CHANGE_ONLY: lie_view_change_only,
    Kind.JUNK_COMMITS: lie_junk_commits,
}


def next_set(vset: ValidatorSet, changes: SetChanges, height: int) -> ValidatorSet:
    """The set of ``height + 1`` after block ``height``, as Application._result derives it."""
    keys = [*KEYS, JOINER]
    return vset.updated([(keys[k].public_key, p) for k, p in changes.get(height, ())]).increment(1)


def sets_by_height(genesis: ValidatorSet, changes: SetChanges) -> list[ValidatorSet]:
    """The sets of heights 1 .. TARGET_HEIGHT + 1."""
    sets = [genesis]
    for height in range(1, TARGET_HEIGHT + 1):
        sets.append(next_set(sets[-1], changes, height))
    return sets


def run(byzantine: int, pattern: int, drop_budget: int, choices: list[int], slow_links: int = 0,
        powers: tuple[int, ...] = (1,) * N, kind: Kind = Kind.LIES, partition: tuple[int, int] | None = None,
        set_changes: SetChanges | None = None) -> Sim:
    """Adversarial steps, then (optionally) a partition of one honest validator for many views, then healing."""
    sim = Sim(byzantine, pattern, drop_budget, slow_links, powers, Kind(kind), set_changes=set_changes or {})
    for choice in choices:
        sim.adversarial_step(choice)
    if partition is not None:
        node, views = partition
        assert node != byzantine and node < N
        sim.partition(node, views)
    healed = sim.heal()
    assert healed, (f"LIVENESS: honest nodes did not reach height {TARGET_HEIGHT} within {HEAL_TIMEOUT_BUDGET} "
                    f"timeouts after healing\n{sim.summary()}")
    return sim


# -- the three schedules of issue 8, scripted -------------------------------------------------


def index_of(address: bytes) -> int:
    return next(i for i, k in enumerate(KEYS) if k.address == address)


def settle(sim: Sim, hold: Callable[[Packet], bool] = lambda p: False, busy: frozenset[int] = frozenset()) -> None:
    """Deliver (FIFO) every packet not held and let every driver not busy handle its inbox, until quiet."""
    while True:
        moved = False
        for k, packet in enumerate(sim.network):
            if not hold(packet):
                sim.deliver(k)
                moved = True
                break
        for i in range(NODES):
            if i not in busy and (sim.inbox[i] or sim.builds[i]):
                sim.drain(i)
                moved = True
        if not moved:
            return


def genesis_primaries() -> tuple[int, int]:
    vset = ValidatorSet([(k.public_key, 1) for k in KEYS])
    return index_of(vset.proposer_for(0).address), index_of(vset.proposer_for(1).address)


def schedule_validation_answer_for_other_bytes() -> Sim:
    """Issue 8, schedule 1: a verdict on junk bytes applied to the genuine block's bytes.

    The Byzantine primary of (1, 0) sends junk bytes under the genuine hash to
    the primary of view 1 (``a``, whose driver is busy meanwhile) and the block
    to the others; it PREPAREs, never COMMITs and is silent after view 0.  The
    others prepare the block and leave for view 1.  ``a``'s inbox then holds the
    junk proposal, a RebroadcastDue (which re-asks validation of the junk) and
    the others' VIEW-CHANGEs, which carry the genuine bytes: ``a`` joins view 1
    as its primary and asks about the genuine bytes between the two verdicts
    on the junk.  Before the fix the second verdict judged the genuine bytes.
    """
    byzantine, a = genesis_primaries()

    def rewrite(sim: Sim, message: Message, j: int) -> list[Message]:
        if message.height != 1:
            return [message]
        view = message.new_view if isinstance(message, ViewChange) else getattr(message, "view", 0)
        if view > 0 or (isinstance(message, Vote) and message.kind == VoteKind.COMMIT):
            return []
        if isinstance(message, Proposal) and j == a:
            return [with_junk_bytes(message, KEYS[byzantine])]
        return [message]

    sim = Sim(byzantine, 0, 0, kind=Kind.JUNK_BYTES, rewrite=rewrite)
    to_a = lambda p: p.dst == a  # noqa: E731
    settle(sim, hold=to_a, busy=frozenset({a}))
    for i in range(N):
        if i not in (a, byzantine):
            sim.fire_timer(i)  # the view times out at the others
    settle(sim, hold=to_a, busy=frozenset({a}))
    junk = next(k for k, p in enumerate(sim.network) if p.dst == a and isinstance(p.message, Proposal))
    sim.deliver(junk)
    sim.inbox[a].append(RebroadcastDue())
    sim.process(a)  # the junk proposal: its verdict queues behind the RebroadcastDue
    while any(p.dst == a for p in sim.network):
        sim.deliver(next(k for k, p in enumerate(sim.network) if p.dst == a))
    return sim


def schedule_far_ahead_after_partition(views: int = 80) -> Sim:
    """Issue 8, schedule 2: one honest validator cut off while the others (Byzantine help) climb past the window."""
    sim = Sim(3, 0, 0, kind=Kind.VIEW_CHANGE_ONLY,
              rewrite=lambda sim, m, j: [] if isinstance(m, Vote) and m.height == 1 else [m])
    sim.partition(0, views)
    assert min(sim.engines[i].view for i in (1, 2)) >= views, sim.summary()
    return sim


def schedule_junk_commits_crowd_out_the_genuine_one() -> Sim:
    """Issue 8, schedule 3: junk COMMITs fill two validators' slots; the third decides without the bytes.

    The Byzantine primary of (1, 0) sends junk bytes under the genuine hash to
    ``c`` and the block to the others; it PREPAREs honestly, sends its genuine
    COMMIT only to ``c`` and two junk COMMITs to the others.  ``c`` decides
    without the bytes and must sync; the others are one COMMIT short, and the
    one they lack comes only as ``c``'s relay, a third hash from that signer.
    """
    byzantine, _ = genesis_primaries()
    c = next(i for i in range(N) if i != byzantine)

    def rewrite(sim: Sim, message: Message, j: int) -> list[Message]:
        if message.height != 1:
            return [message]
        if isinstance(message, Proposal) and j == c:
            return [with_junk_bytes(message, KEYS[byzantine])]
        if isinstance(message, Vote) and message.kind == VoteKind.COMMIT and j != c:
            return [Vote.create(KEYS[byzantine], CHAIN, VoteKind.COMMIT, 1, message.view,
                                bytes(sha256(make_block(1, f"junk{n}")))) for n in (1, 2)]
        return [message]

    sim = Sim(byzantine, 0, 0, kind=Kind.JUNK_COMMITS, rewrite=rewrite)
    settle(sim)
    assert c in sim.lacking and all(1 not in sim.commits[i] for i in sim.honest), sim.summary()
    return sim


def schedule_leavers_decide_and_go_silent() -> Sim:
    """At an epoch boundary, the only nodes that saw the last height committed are ones its laggards cannot hear.

    Block 2's updates remove n0 and the Byzantine n1 from the set and add the
    observer n4 (the joiner) with power 3, so height 3's set is {n2, n3, n4}.
    Height 2 commits at n0, n1 and n4 while n2 and n3 each hold only the
    COMMITs of n2 and n3: n0's COMMITs to them are lost before healing, and n1
    tells them nothing at height 2. Unless the nodes that decided height 2
    relay its COMMITs, n2 and n3 never finish it. Its other members are gone:
    n0 and n1 are at height 3 and drop height-2 VIEW-CHANGEs, so no view
    change of height 2 reaches a quorum. Height 3's messages come only from n4, which the
    height-2 set does not hold, so n2 and n3 drop them without asking for
    sync. n4 needs one of them for a quorum of height 3 (3 of 5 is not more
    than 2/3). Found by the property test as a liveness failure (the
    ``LEAVERS_DECIDE_AND_GO_SILENT`` example there); fixed by relaying the
    last height's commit votes on rebroadcast (``Engine._relay_last_commit``).
    """

    def rewrite(sim: Sim, message: Message, j: int) -> list[Message]:
        return [] if message.height == 2 and j in (2, 3) else [message]

    def lost(packet: Packet) -> bool:
        message = packet.message
        return (packet.src == 0 and packet.dst in (2, 3) and isinstance(message, Vote)
                and message.kind == VoteKind.COMMIT and message.height == 2)

    sim = Sim(1, 0, 0, rewrite=rewrite, set_changes={2: ((JOIN, 3), (0, 0), (1, 0))})
    settle(sim, hold=lost)
    sim.network = [p for p in sim.network if not lost(p)]
    assert all(2 in sim.commits[i] and sim.engines[i].height == 3 for i in (0, 1, 4)), sim.summary()
    assert all(2 not in sim.commits[i] and sim.engines[i].height == 2 for i in (2, 3)), sim.summary()
    return sim


SCHEDULES: dict[str, Callable[[], Sim]] = {
    "validation_answer_for_other_bytes": schedule_validation_answer_for_other_bytes,
    "far_ahead_after_partition": schedule_far_ahead_after_partition,
    "junk_commits_crowd_out_the_genuine_one": schedule_junk_commits_crowd_out_the_genuine_one,
}
