"""The mempool risk hook (issue #4): features, models, training, evaluation, admin.

Local admission policy only: nothing here takes part in block validation.
Map: history (incremental per-account summaries) → features (31-number row)
→ model (MLP + isolation forest, .npz without pickle) in a versioned
store → hook (node-side decisions) → admin (the feedback JSON-RPC server);
the public methods are node/rpc_risk.py.  synth / train / evaluate generate
data, fit and measure; market is the pool price-direction predictor (its
RPC, qenex_predictPrice, is node/rpc_risk.py too).
"""

from threadpoolctl import threadpool_limits

# The risk matrices are tiny (a 500-row batch through 29→64→32→16→1): a
# multithreaded BLAS spends far more time waking its threads than
# multiplying, worst on a machine whose cores the node already keeps busy
# (measured with bench/risk.py on 2 loaded cores: 21 µs per row batched
# with 2 BLAS threads, 0.3 µs with 1).  One BLAS thread for the process:
# nothing else in the node multiplies matrices.
threadpool_limits(limits=1, user_api="blas")
