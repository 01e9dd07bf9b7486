"""The e2e checker (e2e/checker.py) on synthetic histories: each broken invariant fails with a clear message."""

from __future__ import annotations

from dataclasses import replace

from e2e.checker import Bounds, check, check_convergence, check_liveness, summary_table
from e2e.history import Commit, Exit, History, Perturbation, Submission

N = 4
BOUNDS = Bounds(converge_s=10, liveness_s=5, rss_bytes=500 * 2**20)


def _block(h: int) -> tuple[str, str, tuple[str, ...]]:
    return f"0xb{h:03d}", f"0xa{h:03d}", (f"0xt{h:03d}",) if h % 2 == 0 else ()


def clean_history(heights: int = 20) -> History:
    """Four nodes, a block a second, a tx in every even block, node3 killed 5-8 s and caught up at 9 s."""
    hist = History(validators=N, load_start=0.0, load_end=float(heights))
    for h in range(1, heights + 1):
        bh, ah, txs = _block(h)
        for node in range(N):
            t = float(h)
            if node == 3 and 5 <= h <= 9:
                t = 9.0  # down, then synced everything at once
            hist.commits.append(Commit(t, node, h, bh, ah, txs))
            hist.final.append(Commit(heights + 1.0, node, h, bh, ah, txs))
        for tx in txs:
            hist.submissions.append(Submission(h - 0.5, tx, "qnx1sender", h, h % N, True))
    hist.perturbations.append(Perturbation("kill", (3,), 5.0, 8.0, True))
    hist.max_rss = {n: 200 * 2**20 for n in range(N)}
    return hist


def test_a_clean_history_passes():
    report = check(clean_history(), BOUNDS)
    assert report.ok, report.violations
    f = report.figures
    assert (f["forks"], f["lost"], f["duplicates"]) == (0, 0, 0)
    assert f["txs_committed"] == 10 and f["height"] == 20
    assert f["max_recovery_s"] == 1.0  # the head at 8 s was 8; node3 was seen there at 9 s
    assert "PASS" in summary_table("synthetic", report)


def test_a_lost_write_fails():
    hist = clean_history()
    # node2 served block 10 with the tx during the run, but its final block 10 lacks it
    hist.final = [replace(c, txs=()) if (c.node, c.height) == (2, 10) else c for c in hist.final]
    report = check(hist, BOUNDS)
    assert not report.ok
    assert any("lost commit: tx 0xt010" in v and "node2's final block 10" in v for v in report.violations)


def test_a_commit_missing_because_a_node_stopped_short_is_lost():
    hist = clean_history()
    hist.final = [c for c in hist.final if not (c.node == 1 and c.height > 15)]
    report = check(hist, BOUNDS)
    assert any("node1's final chain has no block 16 (head 15)" in v for v in report.violations)


def test_a_fork_fails():
    hist = clean_history()
    hist.commits = [replace(c, block_hash="0xevil", app_hash="0xevil") if (c.node, c.height) == (1, 7) else c
                    for c in hist.commits]
    report = check(hist, BOUNDS)
    assert report.figures["forks"] == 1
    assert any(v.startswith("fork at height 7: nodes disagree on the block") and "[1]" in v
               for v in report.violations)


def test_an_app_hash_fork_fails():
    hist = clean_history()
    hist.final = [replace(c, app_hash="0xother") if (c.node, c.height) == (0, 4) else c for c in hist.final]
    report = check(hist, BOUNDS)
    assert any("fork at height 4: nodes disagree on the app hash" in v for v in report.violations)


def test_a_duplicate_fails():
    hist = clean_history()
    hist.final = [replace(c, txs=("0xt004",)) if c.height == 6 else c for c in hist.final]  # 0xt004 again
    hist.commits = [replace(c, txs=("0xt004",)) if c.height == 6 else c for c in hist.commits]
    report = check(hist, BOUNDS)
    assert any("duplicate: tx 0xt004 committed 2 times on node0 at (height, index) [(4, 0), (6, 0)]" in v
               for v in report.violations)


def test_one_nonce_spent_twice_fails():
    hist = clean_history()
    hist.submissions = [replace(s, nonce=1) for s in hist.submissions]  # every tx claims nonce 1
    report = check(hist, BOUNDS)
    assert any("duplicate: nonce 1 of qnx1sender spent by 10 committed txs" in v for v in report.violations)


def test_a_head_that_never_converges_fails():
    hist = clean_history()
    hist.commits = [c for c in hist.commits if not (c.node == 3 and c.height > 4)]  # node3 stuck at 4
    hist.final = [c for c in hist.final if not (c.node == 3 and c.height > 4)]
    violations = check_convergence(hist, BOUNDS)
    assert violations == ["not converged after kill of [3] (5.0-8.0 s): node3 never reached height 8 "
                          "(highest seen 4)"]


def test_a_slow_convergence_fails():
    hist = clean_history()
    hist.commits = [replace(c, t=30.0) if c.node == 3 and 5 <= c.height <= 20 else c for c in hist.commits]
    assert check_convergence(hist, BOUNDS) == ["not converged after kill of [3] (5.0-8.0 s): took 22.0 s > 10 s"]


def test_a_stall_with_a_quorum_connected_fails_but_not_during_a_quorumless_partition():
    hist = clean_history()
    hist.commits = [replace(c, t=c.t + 8.0) if c.height >= 12 else c for c in hist.commits]  # nothing 11-20 s
    assert check_liveness(hist, BOUNDS) == [
        "liveness: no new block for 9.0 s (11.0-20.0 s) while a quorum was connected (bound 5 s)"]
    hist.perturbations.append(Perturbation("partition", (0, 1, 2, 3), 11.0, 19.0, False, "[[0, 1], [2, 3]]"))
    assert check_liveness(hist, BOUNDS) == []


def test_an_unexpected_exit_and_a_memory_blowup_fail():
    hist = clean_history()
    hist.exits.append(Exit(12.5, 2, -11))
    hist.max_rss[1] = 900 * 2**20
    report = check(hist, BOUNDS)
    assert "node2 exited with status -11 at 12.5 s without being killed" in report.violations
    assert "node1 RSS reached 900 MiB > 500 MiB" in report.violations


def test_a_history_survives_its_json_form(tmp_path):
    hist = clean_history()
    hist.save(tmp_path / "h.json")
    again = History.load(tmp_path / "h.json")
    assert again == hist
