"""The mempool risk hook (issue #4): features, models, training, evaluation, admin.

Local admission policy only: nothing here takes part in block validation.
Map: history (incremental per-account summaries) → features (20-dim row)
→ model (MLP + isolation forest, .npz without pickle) in a versioned
store → hook (node-side decisions) → admin (the feedback JSON-RPC server);
the public methods are node/rpc_risk.py.  synth / train / evaluate generate
data, fit and measure; market is the pool price-direction predictor (its
RPC, qenex_predictPrice, is node/rpc_risk.py too).
"""
