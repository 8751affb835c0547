"""The JSON API root and the bearer tokens of calling systems."""
