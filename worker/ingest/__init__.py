"""Inbound: the worker's side of the ingest stream (Enode deliveries in, state and events out).

    drain     the drain loop RQ job `worker.jobs.drain_ingest` runs; the pump's re-arming
    stream    the ingest stream's consumer-group operations, one round trip each
    entries   one ingest-stream entry (an Enode delivery) -> the observations of its events
    order     per-user order across drains: older pending entries of a batch's users are applied first
    store     apply observations with the pure core and commit state + events + ack in one Lua call
    ports     what a drain needs from the worker's context (`worker.bootstrap.WorkerContext` provides it)

The receiver's side of the same protocol is `plugwatch.ingest_protocol` and `plugwatch.ingest_arming`.
"""
