"""Fault-injection end-to-end suite: real node processes, a recorded history, a checker.

``e2e/runner.py`` starts a testnet from a manifest (``e2e/manifests/*.toml``),
drives transfer load, applies perturbations and records everything it sees
(``e2e/history.py``); ``e2e/checker.py`` judges the history with pure
functions.  Modelled on CometBFT's ``test/e2e`` (manifests, perturbations)
and Jepsen (a history and a checker).  Not part of the node.
"""
