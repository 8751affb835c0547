"""The processes: web, worker, inbound SMTP, and all three together."""
