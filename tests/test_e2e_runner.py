"""The e2e runner's refusals (e2e/runner.py, e2e/manifest.py): bad manifests and bad environments,
each a clear message before any process or namespace exists."""

from __future__ import annotations

import re

import socket
from pathlib import Path

import pytest

from e2e import netns, runner
from e2e.manifest import ManifestError, chaos_schedule, load_manifest

MANIFESTS = Path(__file__).resolve().parents[1] / "e2e" / "manifests"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["ci", "partition", "chaos", "crash", "diskfull", "byzantine", "clockskew"])
def test_the_shipped_manifests_load(name):
    m = load_manifest(MANIFESTS / f"{name}.toml")
    assert m.faults and m.validators == 4
    assert m.needs_namespaces == (name == "chaos")  # netem and slowlink; partition has the loopback gate


def test_the_clockskew_manifest_skews_within_and_beyond_the_drift_both_ways():
    m = load_manifest(MANIFESTS / "clockskew.toml")
    assert [(f.kind, f.skew_ms) for f in m.faults] == [("clockskew", 4000), ("clockskew", 20000), ("clockskew", -20000)]
    assert m.faults[1].describe() == "clockskew node2 +20000 ms"


def test_the_byzantine_manifest_names_its_equivocator_and_its_epochs():
    m = load_manifest(MANIFESTS / "byzantine.toml")
    assert (m.byzantine_node, m.byzantine_from_height, m.epoch_length) == (3, 30, 20)
    assert load_manifest(MANIFESTS / "ci.toml").byzantine_node is None


def test_the_chaos_manifest_mixes_every_kind_and_multi_node_faults():
    m = load_manifest(MANIFESTS / "chaos.toml")
    assert {f.kind for f in m.faults} == {"kill", "pause", "restart", "partition", "netem", "slowlink", "diskfull"}
    assert any(len(f.nodes) > 1 and f.kind in ("kill", "pause", "restart") for f in m.faults)


def test_the_chaos_schedule_is_seeded_and_sequential():
    spec = {"seed": 3, "start_s": 10, "end_s": 300}
    a, b = chaos_schedule(spec, 4), chaos_schedule(spec, 4)
    assert a == b and len(a) > 10
    assert all(x.at_s + x.hold_s <= y.at_s for x, y in zip(a, a[1:]))
    assert chaos_schedule({**spec, "seed": 4}, 4) != a
    assert {f.kind for f in a} >= {"kill", "partition"}


@pytest.mark.parametrize("body, message", [
    ('[[perturbations]]\nat_s = 5\nkind = "explode"\nnode = 0\n', "kind 'explode' is not one of"),
    ('[[perturbations]]\nat_s = 5\nkind = "kill"\nnode = 9\n', "kill needs node (or nodes) in 0..3"),
    ('[[perturbations]]\nat_s = 5\nkind = "partition"\ngroups = [[0, 1], [1, 2]]\n', "must be disjoint"),
    ('[[perturbations]]\nat_s = 5\nkind = "kill"\nnode = 0\nhold_s = 10\n'
     '[[perturbations]]\nat_s = 8\nkind = "pause"\nnode = 1\n', "one at a time"),
    ('duration_s = 20\n[[perturbations]]\nat_s = 14\nkind = "kill"\nnode = 0\n', "5 s before the load stops"),
    ('network = "wifi"\n', "network 'wifi' is not one of"),
    ('[byzantine]\nnode = 7\n', "[byzantine] needs node in 0..3"),
    ('[byzantine]\nnode = 1\nheight = 5\n', "unknown keys ['height']"),
])
def test_a_bad_manifest_is_refused_with_its_reason(tmp_path, body, message):
    with pytest.raises(ManifestError, match=re.escape(message)):
        load_manifest(_write(tmp_path, body))


def test_a_taken_port_is_a_clear_error_before_any_node_starts(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        m = load_manifest(_write(tmp_path, f'network = "loopback"\nbase_port = {port - 5}\n'))
        r = runner.Runner(m, tmp_path)
        # (other tests' sockets may hold more ports of the range: they are listed too)
        with pytest.raises(runner.E2EError,
                           match=rf"ports? (\d+, )*{port}(, \d+)* on 127.0.0.1 (is|are) taken by another process"):
            r.setup()
    assert r.nodes == [] and not (tmp_path / "testnet").exists()


def test_a_manifest_that_needs_namespaces_is_refused_without_them(tmp_path, monkeypatch):
    monkeypatch.setattr(netns, "namespace_support", lambda: "not running as root (test)")
    m = load_manifest(MANIFESTS / "chaos.toml")
    with pytest.raises(runner.E2EError, match=r"needs network namespaces \(netem, slowlink\), but not running as root"):
        runner.Runner(m, tmp_path).setup()


def test_auto_falls_back_to_loopback_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(netns, "namespace_support", lambda: "the `ip` command (iproute2) is not installed")
    m = load_manifest(_write(tmp_path, 'network = "auto"\n'))
    r = runner.Runner(m, tmp_path)
    assert r.choose_network() == "loopback"
    assert "falling back to 127.0.0.1 loopback" in capsys.readouterr().out
    assert any("iproute2" in n for n in r.notes)


def test_the_cli_exits_2_with_one_line_for_a_bad_manifest(tmp_path, capsys):
    assert runner.main([str(_write(tmp_path, "validators = 4\nnetwork = 3\n"))]) == 2
    assert "network 3 is not one of" in capsys.readouterr().err
