"""sealmail: OpenPGP-encrypted customer mail for service providers."""

import os

__version__ = "0.1.0"

# Sequoia reports expected conditions, such as the end of a packet stream,
# through error values that record a stack trace whenever RUST_BACKTRACE is
# set, which costs about a tenth of the CPU of composing an encrypted
# message. sealmail turns those errors into Python exceptions and never shows
# the trace, so library traces are off unless the operator asks for them.
# Panics still print a trace when RUST_BACKTRACE requests one.
os.environ.setdefault("RUST_LIB_BACKTRACE", "0")
