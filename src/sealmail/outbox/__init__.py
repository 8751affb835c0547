"""The outbox: stored outgoing messages and their delivery."""
