"""The inbound SMTP/LMTP server for the role addresses (aiosmtpd).

The raw message is committed to the database before the server replies
250, so nothing a customer sent is lost even when parsing fails later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from aiosmtpd.smtp import SMTP, Envelope, Session
from asgiref.sync import sync_to_async

logger = logging.getLogger(__name__)

# SMTP replies: code, enhanced status code and phrase (RFC 5321, RFC 3463).
S250_OK = "250 2.0.0 OK: message stored"
S550_NO_SUCH_ROLE = "550 5.1.1 No such recipient here"
S552_TOO_BIG = "552 5.3.4 Message too big"
S451_STORE_FAILED = "451 4.3.0 Temporary failure storing the message, try again later"


class RoleAddressHandler:
    """Accept mail for the role addresses only and store it raw."""

    def __init__(
        self,
        role_addresses: Iterable[str],
        store: Callable[[str, str, str, list[str], bytes], int],
        max_bytes: int,
    ) -> None:
        self.role_addresses = {address.lower() for address in role_addresses}
        self.store = store
        self.max_bytes = max_bytes

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() not in self.role_addresses:
            logger.info("%s: rejected recipient %r", session.peer, address)
            return S550_NO_SUCH_ROLE
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        protocol = "lmtp" if server.__class__.__name__ == "LMTP" else "smtp"
        # LMTP replies once per accepted recipient after DATA (RFC 2033).
        replies = len(envelope.rcpt_tos) if protocol == "lmtp" else 1
        if len(content) > self.max_bytes:
            logger.info(
                "%s: rejected %d bytes over the size limit", session.peer, len(content)
            )
            return "\r\n".join([S552_TOO_BIG] * replies)
        try:
            message_id = await sync_to_async(self.store, thread_sensitive=True)(
                protocol,
                repr(session.peer),
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                content,
            )
        except Exception:
            logger.exception("%s: storing a message failed; replied 451", session.peer)
            return "\r\n".join([S451_STORE_FAILED] * replies)
        logger.info(
            "%s: stored inbound message %d (%d bytes)",
            session.peer,
            message_id,
            len(content),
        )
        # The recipients share one stored copy.
        return "\r\n".join([S250_OK] * replies)


def store_raw(
    protocol: str, peer: str, mail_from: str, rcpt_to: list[str], raw: bytes
) -> int:
    """Commit the raw message, then queue it for parsing; return its id.

    The row is committed (autocommit) before the task is queued, so a
    failure to queue loses nothing: ``parse_forgotten`` picks the message up.
    """
    from django.db import connection

    from sealmail.inbound import rows
    from sealmail.inbound.models import InboundMessage

    # The server thread lives long: drop a broken connection, but keep a
    # working one, because reopening costs more than storing a message.
    if connection.connection is not None and not connection.is_usable():
        connection.close()
    message = InboundMessage(
        protocol=protocol,
        peer=peer,
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        raw=raw,
        size=len(raw),
    )
    rows.insert(message)
    try:
        from sealmail.inbound.tasks import parse_inbound

        parse_inbound(message.pk)
    except Exception:
        logger.exception(
            "inbound message %d stored but queueing its parsing failed", message.pk
        )
    return message.pk
