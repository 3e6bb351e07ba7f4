"""The Enode work that runs on the worker's core and store (the API client itself is `plugwatch.enode_api`).

    observe        API objects -> the webhook events they stand for -> the worker core and store
    reconcile      page every charger and vehicle through `observe`: the transitions webhooks missed
    reconcile_cli  `plugwatch enode reconcile` (mounted in the operator's `enode` group by `cli`)
    prune          reconcile's optional step: devices Enode no longer lists were deleted
    lookup         fetch a charger a vehicle names but plugwatch has never seen
    suggest        when to suggest a reconcile (heartbeats stopped, pendingEvents high)
    hooks          the worker's entry points (look-up after a batch, advice in the pump)
"""
