"""Inbound: the worker side of the ingest stream (Enode deliveries in, state and events out)."""
