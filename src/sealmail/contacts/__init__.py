"""Customers, contacts, their keys and the customer portal."""
