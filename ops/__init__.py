"""Operator tools, each a click command or group mounted by `cli`: `status` (`status.py` reads the snapshot),
`quarantine`, `dead-letters`, and `enode location-setup` / `enode webhook ...`. They import only the
foundation: what they read and write in Redis is the format the foundation defines (quarantine, dead letters,
URL state, arming)."""
