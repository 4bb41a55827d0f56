"""The live dashboard of ``metrics_to_redis``: ``python -m pipelines dashboard``.

`balance` is what a run publishes beside its rows (its balance, on the rows' channel), `feed`
follows the rows and the balance in Redis, `server` serves them to browsers over a WebSocket,
and ``page.html`` draws them.
"""
