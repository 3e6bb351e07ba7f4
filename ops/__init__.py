"""Operator tools: status, quarantine, dead letters, Enode webhook and location commands."""
