"""Randomized consensus schedules (hypothesis) on the driver-faithful simulator in tests/consensus_sim.py.

Each example: one Byzantine validator of a kind (``Kind``), adversarial steps
(reordering, duplication, drops, busy drivers, early timers, slow links), an
optional long partition of one honest validator, then healing.  Checked:
safety at every commit and sync, and liveness (every honest engine commits
``TARGET_HEIGHT`` heights within ``HEAL_TIMEOUT_BUDGET`` timeouts after
healing).  The long sweep of the same properties is bench/consensus_sweep.py.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, example, given, note, settings
from hypothesis import strategies as st

from consensus.engine import Engine, MessageReceived, PenalizePeer, RebroadcastDue
from consensus.messages import Message, Vote, VoteKind, decode_message
import pytest

from tests.consensus_sim import (
    CHAIN,
    HEAL_TIMEOUT_BUDGET,
    KEYS,
    N,
    NODES,
    SCHEDULES,
    STAKES,
    TARGET_HEIGHT,
    TIMEOUTS,
    JOIN,
    Kind,
    Packet,
    SetChanges,
    Sim,
    run,
    schedule_leavers_decide_and_go_silent,
    sets_by_height,
    settle,
)
from state.crypto import sha256
from state.validators import ValidatorSet

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


@settings(max_examples=60, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    kind=st.sampled_from([Kind.JUNK_BYTES, Kind.VIEW_CHANGE_ONLY, Kind.JUNK_COMMITS]),
    byzantine=st.integers(min_value=0, max_value=N - 1),
    pattern=st.integers(min_value=0, max_value=2**61 - 1),
    drop_budget=st.integers(min_value=0, max_value=10),
    choices=st.lists(st.integers(min_value=0, max_value=2**14), min_size=20, max_size=200),
    partition=st.none() | st.tuples(st.integers(min_value=1, max_value=N - 1), st.integers(min_value=1, max_value=80)),
)
def test_liveness_after_healing_against_each_kind_of_byzantine_validator(
        kind: Kind, byzantine: int, pattern: int, drop_budget: int, choices: list[int],
        partition: tuple[int, int] | None) -> None:
    # Junk bytes under a genuine hash, view-change-only help (with one honest
    # validator partitioned away for up to 80 views), junk COMMITs; junk sync
    # answers always.  The long version is bench/consensus_sweep.py.
    if partition is not None:
        partition = ((byzantine + partition[0]) % N, partition[1])  # an honest validator
    sim = run(byzantine, pattern, drop_budget, choices, kind=kind, partition=partition)
    note(sim.summary())


# Found by bench/consensus_sweep.py (view_change_only, schedule 784 of seed 8)
# after the three fixes: node n1, cut off, missed the commit of height 1; the
# others finished height 2's early views during the partition without it, so
# their height-2 messages were past the window and were dropped unchecked,
# and n1 never learned it should sync.  Such messages now mark their signer
# as ahead (one check per signer), and n1's next timeout syncs.
NEXT_HEIGHT_FAR_AHEAD = dict(
    byzantine=0, pattern=320994106282354742, drop_budget=11, slow_links=8388608,
    powers=(1, 1, 1, 1), kind=Kind.VIEW_CHANGE_ONLY, partition=(1, 66),
    choices=[
        14708, 7514, 717, 2662, 13442, 7741, 11705, 16347, 3803, 7310, 8029, 9002, 1430, 14035, 2184, 6659,
        7646, 14764, 13567, 6079, 3710, 11990, 6054, 15701, 2781, 2091, 3957, 13321, 4857, 2095, 6972, 10090,
        11060, 9153, 6587, 1340, 16043, 3425, 13096, 15900, 810, 14164, 3279, 5302, 2218, 3751, 360, 7096,
        16008, 9185, 4836, 13542, 9277, 13048, 3613, 1703, 9843, 63, 8376, 1309, 3620, 470, 5658, 3260, 5315,
        137, 540, 8181, 2264, 14498, 9698, 5544, 13437, 4178, 11898, 9482, 3487, 12747, 16240])


def test_a_validator_that_missed_a_commit_learns_of_it_from_far_ahead_next_height_messages() -> None:
    sim = run(**NEXT_HEIGHT_FAR_AHEAD)  # type: ignore[arg-type]
    assert sim.max_view > 64 and all(TARGET_HEIGHT in sim.stored[i] for i in sim.honest)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_the_schedules_of_issue_8_commit_after_healing(name: str) -> None:
    # Each stalled a height forever before the fix (see each schedule's
    # docstring in tests/consensus_sim.py); now every honest engine commits
    # TARGET_HEIGHT heights within the timeout budget.
    sim = SCHEDULES[name]()
    assert sim.heal(), f"{name}: no commit within {HEAL_TIMEOUT_BUDGET} timeouts\n{sim.summary()}"


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


# -- validator set changes between heights (issue 10) ---------------------------------------------
#
# The sets change as the application changes them: block h's validator_updates are in force from
# h + 1 (sets_by_height), and every engine starts h + 1 with set_h.updated(changes).increment(1).
# Joins (the observer holds JOINER and becomes a validator), leaves (a member at power 0, which keeps
# following the chain), power changes and a swap; the Byzantine validator stays under 1/3 of every
# height's power.  Safety is checked at every commit and sync, liveness after healing as above.

SET_CHANGE_SCHEDULES: list[SetChanges] = [
    {1: ((JOIN, 1),)},
    {1: ((JOIN, 2),), 2: ((1, 0),)},
    {1: ((0, 3), (1, 2)), 2: ((2, 2), (3, 0))},
    {1: ((JOIN, 1), (3, 0)), 2: ((JOIN, 0), (3, 2))},
    {2: ((JOIN, 3), (0, 0), (1, 0))},
]


def _byzantine_under_a_third(byzantine: int, changes: SetChanges) -> bool:
    genesis = ValidatorSet([(k.public_key, 1) for k in KEYS])
    try:
        sets = sets_by_height(genesis, changes)
    except Exception:
        return False
    return all(s.power_of([KEYS[byzantine].address]) * 3 < s.total_power for s in sets)


# Found by this test as a liveness failure (hypothesis 6.170.17): block 2's updates remove n0 and
# the Byzantine n1 and add the joiner n4 with power 3, so height 3's set is {n2, n3, n4}.  n0, n1
# and n4 committed height 2 in view 1; n2 and n3, each a COMMIT short, stayed in height 2's view
# change, which could never reach a quorum again (n0 and n1 had moved on), and dropped n4's height-3
# messages unchecked (n4 is no member of height 2's set), so they never learned to sync; n4 alone
# is no quorum of height 3.  Fixed by relaying the last height's COMMIT votes on rebroadcast
# (Engine._relay_last_commit).  The relayed votes change the interleaving these choices drive, so
# after the fix this example takes another path; tests/consensus_sim.py's
# schedule_leavers_decide_and_go_silent scripts the stall itself.
LEAVERS_DECIDE_AND_GO_SILENT = dict(
    changes={2: ((JOIN, 3), (0, 0), (1, 0))}, byzantine=1, pattern=154108, drop_budget=0, slow_links=0,
    choices=[0] * 40 + [24, 216])

# Found by this test (2,000 examples) once the fix above made leavers relay: the Byzantine n0, which
# leaves at height 3, "relays" height 2's COMMITs there as twins, and an honest engine at height 3
# reports one as evidence of height 2 (Engine._late_commit_vote).  The simulator verified evidence
# against the engine's current set, which n0 is no longer in; it now uses the set of the evidence's
# own height, as node.evidence's pool does.  A delayed twin did the same before the fix.
LATE_EVIDENCE_AGAINST_A_LEAVER = dict(
    changes={2: ((JOIN, 3), (0, 0), (1, 0))}, byzantine=0, pattern=120768, drop_budget=1, slow_links=0,
    choices=[0] * 10 + [28, 280, 0, 0, 214, 885, 0, 0, 0, 0])


@example(**LATE_EVIDENCE_AGAINST_A_LEAVER)
@example(**LEAVERS_DECIDE_AND_GO_SILENT)
@settings(max_examples=120, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(
    changes=st.sampled_from(SET_CHANGE_SCHEDULES),
    byzantine=st.integers(min_value=0, max_value=N - 1),
    pattern=st.integers(min_value=0, max_value=2**61 - 1),
    drop_budget=st.integers(min_value=0, max_value=25),
    slow_links=st.lists(st.integers(min_value=0, max_value=NODES * NODES - 1), max_size=4).map(
        lambda links: sum(1 << link for link in set(links))),
    choices=st.lists(st.integers(min_value=0, max_value=2**14), min_size=20, max_size=300),
)
def test_safety_and_liveness_across_validator_set_changes(changes: SetChanges, byzantine: int, pattern: int,
                                                          drop_budget: int, slow_links: int,
                                                          choices: list[int]) -> None:
    assume(_byzantine_under_a_third(byzantine, changes))
    sim = run(byzantine, pattern, drop_budget, choices, slow_links, set_changes=changes)
    note(sim.summary())
    sets = sets_by_height(ValidatorSet([(k.public_key, 1) for k in KEYS]), changes)
    for i in sim.honest:  # every honest engine ran each height with that height's set
        for h in range(1, TARGET_HEIGHT + 1):
            assert sim.stored[i][h][1].height == h
        # members and powers (the hash) never change after the last scheduled change
        assert sim.engines[i].validator_set.hash() == sets[min(sim.engines[i].height, len(sets)) - 1].hash()


def test_members_left_on_a_height_whose_deciders_left_the_set_commit_from_relayed_votes() -> None:
    # The stall of LEAVERS_DECIDE_AND_GO_SILENT, scripted: without the relay, n2 and n3 never finish
    # height 2 (and n4 never height 3), whatever the timeouts.
    sim = schedule_leavers_decide_and_go_silent()
    assert sim.heal(), f"no commit within {HEAL_TIMEOUT_BUDGET} timeouts\n{sim.summary()}"
    assert all(sim.commits[i][2] == sim.commits[0][2] for i in sim.honest)


def test_late_evidence_against_a_validator_that_left_the_set_is_checked_against_its_own_height() -> None:
    # The Byzantine n1 leaves at height 3; its twin COMMIT of height 2 reaches n2 only after n2
    # started height 3, and n2 reports it (Engine._late_commit_vote).  The evidence is of height 2,
    # whose set n1 is in (LATE_EVIDENCE_AGAINST_A_LEAVER).
    twin_hash = bytes(sha256(b"twin"))

    def rewrite(sim: Sim, message: Message, j: int) -> list[Message]:
        if isinstance(message, Vote) and message.kind == VoteKind.COMMIT and message.height == 2 and j == 2:
            return [message, Vote.create(KEYS[1], CHAIN, VoteKind.COMMIT, 2, message.view, twin_hash)]
        return [message]

    def twin(packet: Packet) -> bool:
        return isinstance(packet.message, Vote) and packet.message.block_hash == twin_hash

    sim = Sim(1, 0, 0, rewrite=rewrite, set_changes={2: ((JOIN, 3), (0, 0), (1, 0))})
    settle(sim, hold=lambda p: twin(p) or p.message.height > 2)  # stop at height 3
    assert sim.engines[2].height == 3 and sim.evidence == 0
    sim.deliver(next(k for k, p in enumerate(sim.network) if twin(p)))
    sim.drain(2)
    assert sim.evidence == 1


@pytest.mark.parametrize("index", range(len(SET_CHANGE_SCHEDULES)))
def test_each_set_change_schedule_commits_with_an_honest_network(index: int) -> None:
    changes = SET_CHANGE_SCHEDULES[index]
    byzantine = next(b for b in range(N) if _byzantine_under_a_third(b, changes))
    sim = run(byzantine, 0, 0, [], set_changes=changes)
    assert all(TARGET_HEIGHT in sim.stored[i] for i in sim.honest)
