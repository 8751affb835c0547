"""Inbound mail for the role addresses and the staff ticket queue."""
