"""A logging filter that keeps confirmation and password reset tokens out of logs.

Django logs the path of every 4xx/5xx response (``django.request``). Under
``runserver`` it logs the path of every request (``django.server``). The
paths of confirmation, cancel and password reset links contain tokens.
"""

from __future__ import annotations

import logging
import re

TOKEN_PATH = re.compile(
    r"(/(?:confirm|cancel)/\d+/|/accounts/reset/[A-Za-z0-9_-]+/)[A-Za-z0-9_:-]+"
)


def redact(text: str) -> str:
    """Replace the token in every confirmation or reset path of ``text``."""
    return TOKEN_PATH.sub(r"\1[token]", text)


class RedactTokens(logging.Filter):
    """Rewrite a record's message with link tokens replaced by ``[token]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = ()
        return True
