"""A real SMTP relay on loopback for delivery tests: aiosmtpd with STARTTLS.

The handler stores every accepted message's raw bytes. A test can queue
replies (``451 ...``, ``550 ...``) that the next transactions receive instead.
"""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support import free_port


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


class RecordingHandler:
    def __init__(self, *, pipelining: bool = True) -> None:
        self.pipelining = pipelining
        self.received: list[Received] = []
        self.data_replies: deque[str] = deque()
        self.rcpt_replies: deque[str] = deque()
        self.lock = threading.Lock()
        # The client address and port of every connection that sent EHLO.
        self.peers: set[tuple] = set()
        self.quits = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd reads pipelined commands in order but does not announce it.
        with self.lock:
            self.peers.add(tuple(session.peer))
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_QUIT(self, server, session, envelope):
        with self.lock:
            self.quits += 1
        return "221 Bye"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            if self.rcpt_replies:
                return self.rcpt_replies.popleft()
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.data_replies:
                return self.data_replies.popleft()
            self.received.append(
                Received(
                    envelope.mail_from,
                    tuple(envelope.rcpt_tos),
                    bytes(envelope.original_content),
                    session.ssl is not None,
                )
            )
            number = len(self.received)
        return f"250 2.0.0 Ok: queued as T{number:05d}"


class LoopbackRelay:
    """An aiosmtpd relay on 127.0.0.1 that can be stopped and started again."""

    def __init__(
        self,
        tmp: Path,
        *,
        starttls: bool = True,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
        pipelining: bool = True,
    ) -> None:
        self.handler = RecordingHandler(pipelining=pipelining)
        self.port = free_port()
        self.ca = trustme.CA()
        self.cafile = tmp / "relay-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.cafile))
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(self.server_context)
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.credentials = credentials
        self.controller: Controller | None = None

    def _authenticate(
        self, server, session, envelope, mechanism, auth_data
    ) -> AuthResult:
        if (
            isinstance(auth_data, LoginPassword)
            and self.credentials is not None
            and (auth_data.login.decode(), auth_data.password.decode())
            == self.credentials
        ):
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def start(self) -> None:
        kwargs: dict = {}
        if self.implicit_tls:
            kwargs["ssl_context"] = self.server_context
        elif self.starttls:
            kwargs["tls_context"] = self.server_context
        if self.credentials is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
        controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, **kwargs
        )
        for _ in range(50):
            try:
                controller.start()
                break
            except OSError:  # the port is still in TIME_WAIT after stop()
                time.sleep(0.1)
        else:
            raise RuntimeError(f"cannot listen on 127.0.0.1:{self.port}")
        self.controller = controller

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def url(self, **params: str) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        query = {"cafile": str(self.cafile), "timeout": "5", **params}
        userinfo = ""
        if self.credentials is not None:
            userinfo = f"{self.credentials[0]}:{self.credentials[1]}@"
        rendered = "&".join(f"{key}={value}" for key, value in query.items())
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}?{rendered}"

    @property
    def connections(self) -> int:
        """How many connections sent EHLO so far."""
        with self.handler.lock:
            return len(self.handler.peers)

    @property
    def quits(self) -> int:
        with self.handler.lock:
            return self.handler.quits

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def reply_next_data(self, *replies: str) -> None:
        with self.handler.lock:
            self.handler.data_replies.extend(replies)

    def reply_next_rcpt(self, *replies: str) -> None:
        with self.handler.lock:
            self.handler.rcpt_replies.extend(replies)
