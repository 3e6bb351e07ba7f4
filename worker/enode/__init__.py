"""The Enode work that runs inside the worker: look-ups, observations from the API, reconcile, advice."""
