"""Provider keys: management commands, the public key page and WKD."""
