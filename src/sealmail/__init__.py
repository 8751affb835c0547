"""sealmail: OpenPGP-encrypted customer mail for service providers."""

__version__ = "0.1.0"
