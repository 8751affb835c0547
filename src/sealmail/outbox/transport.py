"""Delivery transports: an SMTP relay and a Maildir sink for development.

``SEALMAIL_SMTP_URL`` selects the transport:

- empty: write every message into the Maildir ``settings.MAILDIR``;
- ``maildir:///PATH``: write into the Maildir at PATH;
- ``smtp://[USER:PASSWORD@]HOST[:PORT]``: a relay, port 25 by default, with
  STARTTLS when the relay offers it;
- ``smtps://...``: implicit TLS, port 465 by default.

Query parameters:

- ``tls=opportunistic`` (default for smtp), ``tls=required`` (never send
  without TLS) or ``tls=none`` (never start TLS);
- ``timeout``: seconds for connecting and for each reply (default 30);
- ``cafile``: the CA certificates that sign the relay's certificate;
- ``verify=false``: skip certificate verification;
- ``helo``: the EHLO name (default: the domain of SEALMAIL_FROM).

The relay's certificate is verified whenever TLS is used, unless
``verify=false``. A failed verification is a temporary failure, never a
fallback to plaintext.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

TLS_MODES = ("opportunistic", "required", "none")


class TransportConfigError(ValueError):
    """``SEALMAIL_SMTP_URL`` is malformed."""


class DeliveryFailure(Exception):
    """A message was not accepted; ``reply`` is the relay's reply or the error."""

    def __init__(self, reply: str, *, connection_lost: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.connection_lost = connection_lost


class TemporaryFailure(DeliveryFailure):
    """A 4xx reply, a connection or TLS problem: the message may be retried."""


class PermanentFailure(DeliveryFailure):
    """A 5xx reply: retrying would get the same reply."""


@dataclass(frozen=True)
class Envelope:
    """One message to send: the SMTP envelope and the exact bytes."""

    sender: str
    recipient: str
    data: bytes


@dataclass(frozen=True)
class Delivered:
    """The relay's acceptance of one message and the TLS state of the session."""

    reply: str
    tls_protocol: str = ""
    tls_cipher: str = ""


class Session:
    """One open connection (or Maildir) that sends messages one after another."""

    def send(self, sender: str, recipient: str, data: bytes) -> Delivered:
        raise NotImplementedError

    def send_all(
        self, envelopes: Sequence[Envelope]
    ) -> Iterator[Delivered | DeliveryFailure]:
        """Send ``envelopes`` in order; yield one outcome per envelope.

        After an outcome with ``connection_lost`` nothing more is sent and
        nothing more is yielded; the caller retries the rest.
        """
        for envelope in envelopes:
            try:
                yield self.send(envelope.sender, envelope.recipient, envelope.data)
            except DeliveryFailure as exc:
                yield exc
                if exc.connection_lost:
                    return

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Transport:
    def open(self) -> Session:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class MaildirTransport(Transport):
    """Write each message unchanged into ``new/`` of a Maildir."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return f"maildir {self.path}"

    def open(self) -> Session:
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        return MaildirSession(self.path)


class MaildirSession(Session):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")

    def send(self, sender: str, recipient: str, data: bytes) -> Delivered:
        # Maildir delivery: write to tmp/, flush to disk, then rename into new/.
        name = f"{time.time_ns()}.{os.getpid()}_{uuid.uuid4().hex}.{self.host}"
        tmp = self.path / "tmp" / name
        try:
            with open(tmp, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, self.path / "new" / name)
        except OSError as exc:
            raise TemporaryFailure(
                f"writing to the Maildir {str(self.path)!r} failed: {exc.strerror}"
            ) from exc
        return Delivered(reply=f"stored in Maildir as new/{name}")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    implicit_tls: bool
    tls: str
    username: str | None
    password: str | None
    timeout: float
    cafile: str | None
    verify: bool
    helo: str


def parse_smtp_url(url: str, default_helo: str) -> SmtpConfig:
    """Parse an ``smtp://`` or ``smtps://`` URL, raising TransportConfigError."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"smtp", "smtps"}:
        raise TransportConfigError(
            f"SEALMAIL_SMTP_URL has the scheme {scheme!r}; use smtp://HOST:PORT, "
            "smtps://HOST:PORT or maildir:///PATH"
        )
    if not parts.hostname:
        raise TransportConfigError(
            "SEALMAIL_SMTP_URL has no host; use smtp://HOST:PORT"
        )
    try:
        port = parts.port or (465 if scheme == "smtps" else 25)
    except ValueError:
        raise TransportConfigError(
            "SEALMAIL_SMTP_URL has an invalid port; give a number from 1 to 65535"
        ) from None
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    tls, timeout, verify, cafile = _query_options(query, scheme)
    return SmtpConfig(
        host=parts.hostname,
        port=port,
        implicit_tls=scheme == "smtps",
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=timeout,
        cafile=cafile,
        verify=verify,
        helo=query.get("helo") or default_helo,
    )


def _query_options(
    query: dict[str, str], scheme: str
) -> tuple[str, float, bool, str | None]:
    """Validate the URL's query parameters; return tls, timeout, verify and cafile."""
    unknown = set(query) - {"tls", "timeout", "cafile", "verify", "helo"}
    if unknown:
        raise TransportConfigError(
            f"SEALMAIL_SMTP_URL has unknown parameters {', '.join(sorted(unknown))}; "
            "known are tls, timeout, cafile, verify and helo"
        )

    tls = query.get("tls", "required" if scheme == "smtps" else "opportunistic")
    if tls not in TLS_MODES:
        raise TransportConfigError(
            f"SEALMAIL_SMTP_URL has tls={tls!r}; use opportunistic, required or none"
        )
    if scheme == "smtps" and tls != "required":
        raise TransportConfigError(
            "smtps:// always uses TLS; drop the tls parameter or use smtp://"
        )

    try:
        timeout = float(query.get("timeout", "30"))
    except ValueError:
        timeout = -1.0
    if not 0.1 <= timeout <= 600:
        raise TransportConfigError(
            f"SEALMAIL_SMTP_URL has timeout={query.get('timeout')!r}; give seconds "
            "from 0.1 to 600"
        )

    verify = query.get("verify", "true").lower()
    if verify not in {"true", "false"}:
        raise TransportConfigError(
            f"SEALMAIL_SMTP_URL has verify={verify!r}; use true or false"
        )

    cafile = query.get("cafile")
    if cafile and not os.path.isfile(cafile):
        raise TransportConfigError(
            f"SEALMAIL_SMTP_URL names cafile={cafile!r}, which does not exist"
        )
    return tls, timeout, verify == "true", cafile


class SmtpTransport(Transport):
    """Send through an SMTP relay, one connection per batch of messages."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def describe(self) -> str:
        scheme = "smtps" if self.config.implicit_tls else "smtp"
        return f"{scheme}://{self.config.host}:{self.config.port} tls={self.config.tls}"

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.config.cafile)
        if not self.config.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def open(self) -> Session:
        config = self.config
        try:
            if config.implicit_tls:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    config.host,
                    config.port,
                    local_hostname=config.helo,
                    timeout=config.timeout,
                    context=self.ssl_context(),
                )
            else:
                client = smtplib.SMTP(
                    config.host,
                    config.port,
                    local_hostname=config.helo,
                    timeout=config.timeout,
                )
            try:
                self._start(client)
            except BaseException:
                client.close()
                raise
        except smtplib.SMTPResponseException as exc:
            raise _failure_from_reply(exc.smtp_code, exc.smtp_error, True) from exc
        except ssl.SSLError as exc:
            raise TemporaryFailure(
                f"TLS with {config.host}:{config.port} failed: {exc}",
                connection_lost=True,
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(
                f"connecting to {config.host}:{config.port} failed: {exc}",
                connection_lost=True,
            ) from exc
        return SmtpSession(client)

    def _start(self, client: smtplib.SMTP) -> None:
        config = self.config
        client.ehlo()
        if not config.implicit_tls and config.tls != "none":
            if client.has_extn("starttls"):
                client.starttls(context=self.ssl_context())
                client.ehlo()
            elif config.tls == "required":
                raise TemporaryFailure(
                    f"{config.host}:{config.port} does not offer STARTTLS and "
                    "SEALMAIL_SMTP_URL has tls=required; nothing was sent",
                    connection_lost=True,
                )
        if config.username is not None:
            if not isinstance(client.sock, ssl.SSLSocket) and config.tls != "none":
                raise TemporaryFailure(
                    f"{config.host}:{config.port} does not offer STARTTLS, so the "
                    "password would travel in clear; enable TLS on the relay or "
                    "set tls=none to allow it",
                    connection_lost=True,
                )
            client.login(config.username, config.password or "")


def _reply_text(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}"


def _failure_from_reply(
    code: int, message: bytes | str, connection_lost: bool = False
) -> DeliveryFailure:
    reply = _reply_text(code, message)
    if 400 <= code < 500 or code < 0:
        return TemporaryFailure(reply, connection_lost=connection_lost)
    return PermanentFailure(reply, connection_lost=connection_lost)


_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[^\s<>()\[\]\\,;:\"@]+")


def _path(address: str) -> str:
    """Return ``address`` as an SMTP path, ``<local@domain>``.

    smtplib's ``mail()`` and ``rcpt()`` run every address through the
    ``email`` package's address parser, which costs more than the rest of
    the exchange. A plain address needs only the angle brackets. A domain
    with non-ASCII letters is written as IDNA (``xn--``); a non-ASCII local
    part would need SMTPUTF8, which sealmail does not use, so it raises
    PermanentFailure.
    """
    if not address.isascii():
        local, _, domain = address.rpartition("@")
        if not local.isascii():
            raise PermanentFailure(
                f"the address {address!r} has non-ASCII characters before the @; "
                "the relay would need SMTPUTF8, so give the contact an ASCII address"
            )
        try:
            address = f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError:
            raise PermanentFailure(
                f"the domain of {address!r} is not a valid international "
                "domain name; correct the contact's address"
            ) from None
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _dot_stuffed(data: bytes) -> bytes:
    """Return ``data`` as the DATA section: dot-stuffed and ended by ``CRLF.CRLF``.

    Like smtplib's ``data()``, this leaves line endings alone; the composer
    writes CRLF lines.
    """
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


_LEADING_DOT = re.compile(rb"(?m)^\.")

Reply = tuple[int, bytes]


class SmtpSession(Session):
    """One SMTP connection; PIPELINING (RFC 2920) when the relay offers it.

    With PIPELINING, :meth:`send_all` writes MAIL, RCPT and DATA in one
    packet and sends each message's content together with the next
    message's MAIL, RCPT and DATA, so a message costs one round trip
    instead of four.
    """

    def __init__(self, client: smtplib.SMTP) -> None:
        self.client = client
        self.pipelining = client.has_extn("pipelining")
        sock = client.sock
        if isinstance(sock, ssl.SSLSocket):
            cipher = sock.cipher()
            self.tls_protocol = sock.version() or ""
            self.tls_cipher = cipher[0] if cipher else ""
        else:
            self.tls_protocol = ""
            self.tls_cipher = ""

    def _delivered(self, code: int, message: bytes) -> Delivered:
        return Delivered(
            reply=_reply_text(code, message),
            tls_protocol=self.tls_protocol,
            tls_cipher=self.tls_cipher,
        )

    def send(self, sender: str, recipient: str, data: bytes) -> Delivered:
        client = self.client
        mail_from, rcpt_to = _path(sender), _path(recipient)
        try:
            code, message = client.docmd("mail", "FROM:" + mail_from)
            if code != 250:
                self._reset()
                raise _failure_from_reply(code, message)
            code, message = client.docmd("rcpt", "TO:" + rcpt_to)
            if code not in (250, 251):
                self._reset()
                raise _failure_from_reply(code, message)
            # data() only dot-stuffs; the composer already produced CRLF lines.
            code, message = client.data(data)
            if code != 250:
                self._reset()
                raise _failure_from_reply(code, message)
        except smtplib.SMTPServerDisconnected as exc:
            raise TemporaryFailure(
                f"the relay closed the connection: {exc}", connection_lost=True
            ) from exc
        except smtplib.SMTPResponseException as exc:
            # smtplib raises this itself for a failed DATA command (e.g. 421).
            failure = _failure_from_reply(exc.smtp_code, exc.smtp_error)
            self._reset()
            raise failure from exc
        except OSError as exc:
            raise TemporaryFailure(
                f"the connection to the relay failed: {exc}", connection_lost=True
            ) from exc
        return self._delivered(code, message)

    def send_all(
        self, envelopes: Sequence[Envelope]
    ) -> Iterator[Delivered | DeliveryFailure]:
        if not self.pipelining:
            yield from super().send_all(envelopes)
            return
        # ``content`` is the DATA section of the previous message, whose MAIL,
        # RCPT and DATA were accepted. It goes out in front of the next
        # envelope, so its reply comes first.
        content, reset = b"", False
        for index, envelope in enumerate(envelopes):
            try:
                commands = _envelope_commands(envelope)
            except DeliveryFailure as exc:
                if content:
                    yield from self._finish(content)
                    content = b""
                yield exc
                continue
            try:
                self._write(content + (b"RSET\r\n" if reset else b"") + commands)
            except OSError as exc:
                yield _lost(exc)
                return
            if content:
                outcome = self._content_reply()
                yield outcome
                content = b""
                if isinstance(outcome, DeliveryFailure) and outcome.connection_lost:
                    return
            replies, lost = self._read_replies(4 if reset else 3)
            if reset:
                replies = replies[1:]
            failure = _envelope_failure(replies, lost)
            if failure is None:
                content, reset = _dot_stuffed(envelope.data), False
                continue
            if len(replies) == 3 and replies[2][0] == 354 and not lost:
                # A relay that took DATA without a valid recipient gets an
                # empty message, which it cannot deliver to anyone.
                lost = self._finish_empty_data()
            yield failure
            if failure.connection_lost or lost is not None:
                return
            reset = True
        if content:
            yield from self._finish(content)

    def _finish(self, content: bytes) -> Iterator[Delivered | DeliveryFailure]:
        """Send the last pending message content and yield its outcome."""
        try:
            self._write(content)
        except OSError as exc:
            yield _lost(exc)
            return
        yield self._content_reply()

    def _content_reply(self) -> Delivered | DeliveryFailure:
        """Read the reply to a message's content (after ``CRLF.CRLF``)."""
        replies, lost = self._read_replies(1)
        if not replies:
            return _lost(lost or ConnectionError("the relay sent no reply"))
        code, message = replies[0]
        if code == 250:
            return self._delivered(code, message)
        # The transaction ended with this reply, so the next MAIL needs no
        # RSET before it.
        return _failure_from_reply(code, message, connection_lost=code == 421)

    def _write(self, data: bytes) -> None:
        if data:
            self.client.sock.sendall(data)

    def _read_replies(self, count: int) -> tuple[list[Reply], OSError | None]:
        """Read ``count`` replies; stop early, returning the error, if the connection fails."""
        replies: list[Reply] = []
        try:
            for _ in range(count):
                replies.append(self.client.getreply())
        except smtplib.SMTPServerDisconnected as exc:
            return replies, ConnectionError(f"the relay closed the connection: {exc}")
        except OSError as exc:
            return replies, exc
        return replies, None

    def _finish_empty_data(self) -> OSError | None:
        try:
            self._write(b".\r\n")
            self.client.getreply()
        except OSError as exc:
            return exc
        return None

    def _reset(self) -> None:
        try:
            self.client.rset()
        except (OSError, smtplib.SMTPException):
            pass

    def close(self) -> None:
        try:
            self.client.quit()
        except (OSError, smtplib.SMTPException):
            self.client.close()


def _envelope_commands(envelope: Envelope) -> bytes:
    return (
        f"MAIL FROM:{_path(envelope.sender)}\r\n"
        f"RCPT TO:{_path(envelope.recipient)}\r\nDATA\r\n"
    ).encode("ascii")


def _envelope_failure(
    replies: list[Reply], lost: OSError | None
) -> DeliveryFailure | None:
    """Return the failure among the replies to MAIL, RCPT and DATA, or None.

    ``replies`` may be short when the connection failed (``lost``). The
    first reply that rejects its command decides, as in a transaction
    without PIPELINING.
    """
    for (code, message), accepted in zip(replies, ((250,), (250, 251), (354,))):
        if code not in accepted:
            return _failure_from_reply(
                code, message, connection_lost=lost is not None or code == 421
            )
    if lost is not None or len(replies) < 3:
        return _lost(lost or ConnectionError("the relay sent no reply"))
    return None


def _lost(
    exc: BaseException, what: str = "the connection to the relay failed"
) -> TemporaryFailure:
    return TemporaryFailure(f"{what}: {exc}", connection_lost=True)


def transport_from_url(url: str, maildir: Path, default_helo: str) -> Transport:
    """Build the transport that ``SEALMAIL_SMTP_URL`` (``url``) selects."""
    url = url.strip()
    if not url:
        return MaildirTransport(maildir)
    if url.lower().startswith("maildir:"):
        path = urlsplit(url).path
        if not path:
            raise TransportConfigError(
                "SEALMAIL_SMTP_URL maildir: needs a path; use maildir:///PATH"
            )
        return MaildirTransport(Path(unquote(path)))
    return SmtpTransport(parse_smtp_url(url, default_helo))
