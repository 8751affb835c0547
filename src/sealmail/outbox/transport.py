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
- ``helo``: the EHLO name (default: the domain of SEALMAIL_FROM);
- ``keepalive``: seconds an idle connection stays open for the next batch
  (default 10, 0 closes it after each batch).

The relay's certificate is verified whenever TLS is used, unless
``verify=false``. A failed verification is a temporary failure, never a
fallback to plaintext.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import smtplib
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self
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

    def release(self) -> None:
        """End the caller's use of the session; the transport may reuse it."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if exc_type is None:
            self.release()
        else:
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


# Seconds an idle relay connection waits for the next batch. Relays allow
# far longer (RFC 5321 recommends 5 minutes); a worker needs only the gap
# between two batches of one burst.
DEFAULT_KEEPALIVE = 10.0


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
    keepalive: float = DEFAULT_KEEPALIVE


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
    tls, timeout, verify, cafile, keepalive = _query_options(query, scheme)
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
        keepalive=keepalive,
    )


def _query_options(
    query: dict[str, str], scheme: str
) -> tuple[str, float, bool, str | None, float]:
    """Validate the URL's query parameters.

    Returns tls, timeout, verify, cafile and keepalive.
    """
    unknown = set(query) - {"tls", "timeout", "cafile", "verify", "helo", "keepalive"}
    if unknown:
        raise TransportConfigError(
            f"SEALMAIL_SMTP_URL has unknown parameters {', '.join(sorted(unknown))}; "
            "known are tls, timeout, cafile, verify, helo and keepalive"
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

    try:
        keepalive = float(query.get("keepalive", str(DEFAULT_KEEPALIVE)))
    except ValueError:
        keepalive = -1.0
    if not 0 <= keepalive <= MAX_KEEPALIVE:
        raise TransportConfigError(
            f"SEALMAIL_SMTP_URL has keepalive={query.get('keepalive')!r}; give "
            f"seconds from 0 (close after each batch) to {MAX_KEEPALIVE:.0f}"
        )
    return tls, timeout, verify == "true", cafile, keepalive


# A relay may close a connection that stays idle for 5 minutes (RFC 5321).
MAX_KEEPALIVE = 240.0
# A connection takes no new batch once it has carried this many messages
# or is this many seconds old, so the batch it is busy with may carry it
# past either limit. Exim, for one, refuses more than 1,000 messages per
# connection by default.
MAX_MESSAGES_PER_CONNECTION = 500
MAX_CONNECTION_AGE = 300.0
# Idle connections kept per relay and worker process.
MAX_IDLE_SESSIONS = 16
# RFC 5321 limits a reply line to 512 octets; longer lines are read and cut.
MAX_REPLY_LINE = 64 * 1024
MAX_REPLY_LINES = 100
REPLY_TEXT_KEPT = 512
# Maximum seconds for one message's exchange with the relay, however slowly
# the relay sends its replies. It stays below half of the outbox's lease, so
# a worker renews the lease before another worker may take the message.
EXCHANGE_LIMIT = 240.0


class _LimitedReplies:
    """smtplib client mixin: read replies with limits on length and line count.

    smtplib's own ``getreply`` raises "500 Line too long." for a line over
    8 KiB, which reads like the relay's reply, and collects any number of
    continuation lines. Here a long line is cut after ``REPLY_TEXT_KEPT``
    octets and its first three digits still count, and too long or too many
    lines close the connection.
    """

    file: Any
    sock: Any

    def getreply(self) -> tuple[int, bytes]:
        if self.file is None:
            self.file = self.sock.makefile("rb")
        lines = []
        while True:
            line = self._reply_line()
            lines.append(line[4:REPLY_TEXT_KEPT].strip(b" \t\r\n"))
            code = line[:3]
            if not (code.isdigit() and len(code) == 3):
                return -1, b"\n".join(lines)
            if line[3:4] != b"-":
                return int(code), b"\n".join(lines)
            if len(lines) >= MAX_REPLY_LINES:
                self.close()  # type: ignore[attr-defined]
                raise smtplib.SMTPServerDisconnected(
                    f"the relay sent a reply of more than {MAX_REPLY_LINES} lines"
                )

    def _reply_line(self) -> bytes:
        """Read one reply line; keep its start and drop the rest of a long line."""
        line_start = b""
        length = 0
        while True:
            try:
                part = self.file.readline(8192)
            except OSError as exc:
                self.close()  # type: ignore[attr-defined]
                raise smtplib.SMTPServerDisconnected(
                    f"Connection unexpectedly closed: {exc}"
                ) from exc
            if not part:
                self.close()  # type: ignore[attr-defined]
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            if not line_start:
                line_start = part
            length += len(part)
            if part.endswith(b"\n"):
                return line_start
            if length > MAX_REPLY_LINE:
                self.close()  # type: ignore[attr-defined]
                raise smtplib.SMTPServerDisconnected(
                    f"the relay sent a reply line longer than {MAX_REPLY_LINE} octets"
                )


class _Client(_LimitedReplies, smtplib.SMTP):
    pass


class _TlsClient(_LimitedReplies, smtplib.SMTP_SSL):
    pass


class _Watchdog:
    """Close the connection of a session whose current exchange passed its deadline.

    One daemon thread per process checks the open sessions every second, so
    a session only sets a deadline per message instead of starting a timer.
    The socket timeout alone bounds each read, not a reply that a relay
    sends one byte at a time.
    """

    def __init__(self) -> None:
        self._sessions: set[SmtpSession] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, session: SmtpSession) -> None:
        with self._lock:
            self._sessions.add(session)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="smtp-watchdog", daemon=True
                )
                self._thread.start()

    def forget(self, session: SmtpSession) -> None:
        with self._lock:
            self._sessions.discard(session)

    def _run(self) -> None:
        while True:
            time.sleep(1.0)
            now = time.monotonic()
            with self._lock:
                late = [session for session in self._sessions if session.is_late(now)]
            for session in late:
                session.abort()
            for session in _idle_sessions.expired(now):
                session.hang_up()


_watchdog = _Watchdog()


class _IdleSessions:
    """Relay connections kept open between batches, per relay configuration.

    A burst reaches a worker as batches of up to 100 messages. Reusing the
    connection spares each batch the TCP connection, EHLO, STARTTLS and the
    TLS handshake, on both sides. A session comes back here only if its
    last exchange ended cleanly. Before it is used again it must reply 250
    to RSET, which also ends any transaction the relay still keeps open.
    The watchdog closes sessions that stayed idle longer than their
    keepalive.
    """

    def __init__(self) -> None:
        self._idle: dict[SmtpConfig, list[tuple[SmtpSession, float]]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _forget_inherited(self) -> None:
        # After a fork the connections belong to the parent, which goes on
        # using them; the child must neither use nor close them.
        if self._pid != os.getpid():
            self._idle = {}
            self._pid = os.getpid()

    def put(self, config: SmtpConfig, session: SmtpSession) -> bool:
        with self._lock:
            self._forget_inherited()
            idle = self._idle.setdefault(config, [])
            if len(idle) >= MAX_IDLE_SESSIONS:
                return False
            idle.append((session, time.monotonic()))
            return True

    def take(self, config: SmtpConfig) -> tuple[SmtpSession, float] | None:
        """Return the most recently used idle session and when it went idle."""
        with self._lock:
            self._forget_inherited()
            idle = self._idle.get(config)
            return idle.pop() if idle else None

    def take_older(self, config: SmtpConfig, since: float) -> list[SmtpSession]:
        """Remove and return the sessions of ``config`` idle since ``since`` or earlier."""
        with self._lock:
            self._forget_inherited()
            idle = self._idle.get(config, [])
            older = [session for session, idle_since in idle if idle_since <= since]
            idle[:] = [entry for entry in idle if entry[1] > since]
            return older

    def expired(self, now: float) -> list[SmtpSession]:
        """Remove and return the sessions idle for longer than their keepalive."""
        with self._lock:
            self._forget_inherited()
            expired_sessions = []
            for config, idle in self._idle.items():
                kept = []
                for session, since in idle:
                    if now - since > config.keepalive:
                        expired_sessions.append(session)
                    else:
                        kept.append((session, since))
                idle[:] = kept
            return expired_sessions

    def drain(self) -> list[SmtpSession]:
        with self._lock:
            self._forget_inherited()
            sessions = [s for idle in self._idle.values() for s, _since in idle]
            self._idle = {}
            return sessions


_idle_sessions = _IdleSessions()


def close_idle_sessions() -> None:
    """Close every relay connection that waits for the next batch."""
    for session in _idle_sessions.drain():
        session.hang_up()


atexit.register(close_idle_sessions)


@functools.lru_cache(maxsize=8)
def _ssl_context(cafile: str | None, verify: bool) -> ssl.SSLContext:
    """Return the client TLS context, built once per process and setting.

    Loading the system's CA certificates takes about 20 ms (measured on a
    2-CPU VM), which every connection paid before, and one context serves
    all threads. A changed CA file therefore takes effect when the worker
    restarts.
    """
    context = ssl.create_default_context(cafile=cafile)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SmtpTransport(Transport):
    """Send through an SMTP relay, reusing a connection for the next batch."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def describe(self) -> str:
        scheme = "smtps" if self.config.implicit_tls else "smtp"
        return f"{scheme}://{self.config.host}:{self.config.port} tls={self.config.tls}"

    def ssl_context(self) -> ssl.SSLContext:
        return _ssl_context(self.config.cafile, self.config.verify)

    def open(self) -> Session:
        """Return an idle connection that still replies, or a new one."""
        while (idle := _idle_sessions.take(self.config)) is not None:
            session, since = idle
            if time.monotonic() - since > self.config.keepalive or session.too_old():
                session.hang_up()
            elif session.probe():
                session.reused = True
                return session
            else:
                session.close()
                # The most recently used connection failed, so the older ones
                # most likely failed too, as after a relay restart or when a
                # firewall dropped them. Each probe could wait for the timeout.
                for older in _idle_sessions.take_older(self.config, since):
                    older.hang_up()
                break
        return self._connect()

    def _connect(self, into: SmtpSession | None = None) -> SmtpSession:
        """Open a new connection, as a new session or in place of ``into``'s."""
        config = self.config
        if config.implicit_tls:
            client: smtplib.SMTP = _TlsClient(
                local_hostname=config.helo,
                timeout=config.timeout,
                context=self.ssl_context(),
            )
        else:
            client = _Client(local_hostname=config.helo, timeout=config.timeout)
        # smtplib takes the TLS server name from the host given to __init__,
        # which must not connect yet.
        client._host = config.host
        # The session exists before the connection, so that the watchdog
        # limits the greeting, EHLO, STARTTLS and AUTH together.
        if into is None:
            session = SmtpSession(client, config)
        else:
            session = into
            session.adopt(client)
            _watchdog.watch(session)
        session.deadline = time.monotonic() + EXCHANGE_LIMIT
        try:
            try:
                client.connect(config.host, config.port)
                self._start(client)
            except BaseException:
                session.broken = True
                session.close()
                raise
        except DeliveryFailure:
            raise
        except smtplib.SMTPResponseException as exc:
            raise _failure_from_reply(exc.smtp_code, exc.smtp_error, True) from exc
        except ssl.SSLError as exc:
            raise TemporaryFailure(
                f"TLS with {config.host}:{config.port} failed: {exc}",
                connection_lost=True,
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            if session.aborted:
                raise TemporaryFailure(
                    f"{config.host}:{config.port} took more than "
                    f"{EXCHANGE_LIMIT:.0f} s to accept the connection, so it was "
                    "closed",
                    connection_lost=True,
                ) from exc
            raise TemporaryFailure(
                f"connecting to {config.host}:{config.port} failed: {exc}",
                connection_lost=True,
            ) from exc
        session.deadline = None
        session.started()
        return session

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
    """Classify a reply that did not accept its command.

    5xx is permanent and 4xx temporary. Any other code (a 2xx or 3xx where
    another code belongs, or no code at all) means that the relay's replies
    are out of step with the commands. Such a reply gives no outcome for the
    message, so the message is retried on a new connection.
    """
    reply = _reply_text(code, message)
    if 500 <= code < 600:
        return PermanentFailure(reply, connection_lost=connection_lost)
    if 400 <= code < 500:
        return TemporaryFailure(reply, connection_lost=connection_lost or code == 421)
    return TemporaryFailure(
        f"the relay replied {reply!r}, which does not fit the command sent; its "
        "replies are out of step, so the connection is closed",
        connection_lost=True,
    )


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
    instead of four. One message's exchange may take ``EXCHANGE_LIMIT``
    seconds at most; then the connection is closed.
    """

    def __init__(self, client: smtplib.SMTP, config: SmtpConfig | None = None) -> None:
        self.config = config
        # Monotonic time by which a batch that starts over on a new connection
        # must have its first outcome, or None. It outlives adopt().
        self.cutoff: float | None = None
        self.adopt(client)
        _watchdog.watch(self)

    def adopt(self, client: smtplib.SMTP) -> None:
        """Start over with ``client``, a connection not yet opened."""
        self.client = client
        self.opened = time.monotonic()
        self.messages = 0  # messages offered over this connection
        self.pipelining = False
        self.tls_protocol = ""
        self.tls_cipher = ""
        # Monotonic time at which the current exchange is cut off, or None.
        self.deadline: float | None = None
        # True after the connection failed or the replies went out of step.
        self.broken = False
        # True while the relay may be waiting for a message content.
        self.mid_transaction = False
        self.aborted = False
        # True when the connection came from the idle sessions for this batch.
        self.reused = False
        # True once any message content of the current batch was written.
        self.content_written = False

    def started(self) -> None:
        """Read what the connection offers, once EHLO and STARTTLS are done."""
        self.pipelining = self.client.has_extn("pipelining")
        sock = self.client.sock
        if isinstance(sock, ssl.SSLSocket):
            cipher = sock.cipher()
            self.tls_protocol = sock.version() or ""
            self.tls_cipher = cipher[0] if cipher else ""

    def _delivered(self, code: int, message: bytes) -> Delivered:
        return Delivered(
            reply=_reply_text(code, message),
            tls_protocol=self.tls_protocol,
            tls_cipher=self.tls_cipher,
        )

    def is_late(self, now: float) -> bool:
        """Return whether the current exchange ran past its deadline or the cutoff."""
        if self.deadline is None:
            return False
        return now > self.deadline or (self.cutoff is not None and now > self.cutoff)

    def abort(self) -> None:
        """Cut the connection off; the blocked read then fails (watchdog thread)."""
        self.aborted = True
        self.broken = True
        sock = self.client.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _lost(self, exc: BaseException, context: str = "") -> TemporaryFailure:
        self.broken = True
        if self.aborted:
            return TemporaryFailure(
                f"the relay took more than {EXCHANGE_LIMIT:.0f} s for one message, "
                "so the connection was closed",
                connection_lost=True,
            )
        return _lost(exc, context or "the connection to the relay failed")

    def _rejected(self, code: int, message: bytes) -> DeliveryFailure:
        failure = _failure_from_reply(code, message)
        if failure.connection_lost:
            self.broken = True
        return failure

    def send(self, sender: str, recipient: str, data: bytes) -> Delivered:
        client = self.client
        mail_from, rcpt_to = _path(sender), _path(recipient)
        self.deadline = time.monotonic() + EXCHANGE_LIMIT
        try:
            code, message = client.docmd("mail", "FROM:" + mail_from)
            if code != 250:
                raise self._rejected_and_reset(code, message)
            code, message = client.docmd("rcpt", "TO:" + rcpt_to)
            if code not in (250, 251):
                raise self._rejected_and_reset(code, message)
            self.mid_transaction = True
            self.content_written = True
            # data() only dot-stuffs; the composer already produced CRLF lines.
            code, message = client.data(data)
            self.mid_transaction = False
            if code != 250:
                raise self._rejected_and_reset(code, message)
        except smtplib.SMTPServerDisconnected as exc:
            raise self._lost(exc, "the relay closed the connection") from exc
        except smtplib.SMTPDataError as exc:
            # The relay's reply to DATA itself, which was not 354.
            self.mid_transaction = False
            raise self._rejected_and_reset(exc.smtp_code, exc.smtp_error) from exc
        except OSError as exc:
            raise self._lost(exc) from exc
        finally:
            self.deadline = None
        return self._delivered(code, message)

    def _rejected_and_reset(self, code: int, message: bytes) -> DeliveryFailure:
        failure = self._rejected(code, message)
        if not failure.connection_lost and not self._reset():
            # The reset went wrong, so nothing more goes over this connection.
            failure.connection_lost = True
        return failure

    def send_all(
        self, envelopes: Sequence[Envelope]
    ) -> Iterator[Delivered | DeliveryFailure]:
        """Send the batch; start it over once if a reused connection fails first.

        A relay may close a kept connection, or refuse more messages on it
        with 421, after replying to the RSET that checked it. When the batch's
        first outcome is such a failure and no message content was written,
        the relay accepted nothing, so the batch goes over a new connection.
        The outbox renews a batch's lease only between two outcomes, so the
        first outcome still comes within ``EXCHANGE_LIMIT`` seconds of the
        request, the new connection included.
        """
        reused, self.reused = self.reused, False
        outcomes = self._send_batch(envelopes)
        if not reused:
            yield from outcomes
            return
        self.cutoff = time.monotonic() + EXCHANGE_LIMIT
        try:
            first = next(outcomes, None)
            if first is not None and self._may_start_over(first):
                outcomes.close()
                outcomes = self._start_over(envelopes)
                first = next(outcomes, None)
        finally:
            self.cutoff = None
        if first is None:
            return
        yield first
        yield from outcomes

    def _may_start_over(self, first: Delivered | DeliveryFailure) -> bool:
        """Return whether the batch may go over a new connection after ``first``."""
        if not _is_lost(first) or self.content_written or self.aborted:
            return False
        assert self.config is not None and self.cutoff is not None
        # The watchdog cannot cut a TCP connect short, because the socket
        # exists only once it is connected, so the socket timeout must fit.
        # NOTE: with smtps the TLS handshake also runs before the socket
        # exists, and a relay that sends it byte by byte is not cut off.
        return time.monotonic() + self.config.timeout < self.cutoff

    def _start_over(
        self, envelopes: Sequence[Envelope]
    ) -> Iterator[Delivered | DeliveryFailure]:
        """Send the batch over a new connection in place of the failed one."""
        self.client.close()
        assert self.config is not None
        try:
            SmtpTransport(self.config)._connect(into=self)
        except DeliveryFailure as exc:
            # The new connection failed, not the first message, so even a
            # 5xx to EHLO or AUTH is a temporary failure of that message.
            reply = exc.reply
            if self.aborted:
                reply = (
                    f"the relay took more than {EXCHANGE_LIMIT:.0f} s for the first "
                    "message, a new connection included, so the connection was closed"
                )
            yield TemporaryFailure(reply, connection_lost=True)
            return
        yield from self._send_batch(envelopes)

    def _send_batch(
        self, envelopes: Sequence[Envelope]
    ) -> Iterator[Delivered | DeliveryFailure]:
        self.messages += len(envelopes)
        self.content_written = False
        if not self.pipelining:
            yield from super().send_all(envelopes)
            return
        self.mid_transaction = False
        try:
            for outcome in self._pipeline(envelopes):
                self.deadline = None
                yield outcome
                # One outcome, whatever commands it takes, gets at most
                # EXCHANGE_LIMIT seconds from the caller's request for it.
                self.deadline = time.monotonic() + EXCHANGE_LIMIT
        finally:
            self.deadline = None

    def _pipeline(
        self, envelopes: Sequence[Envelope]
    ) -> Iterator[Delivered | DeliveryFailure]:
        # ``content`` is the DATA section of the previous message, whose MAIL,
        # RCPT and DATA were accepted. It goes out in front of the next
        # envelope, so its reply comes first.
        content, reset = b"", False
        self.deadline = time.monotonic() + EXCHANGE_LIMIT
        for envelope in envelopes:
            try:
                commands = _envelope_commands(envelope)
            except DeliveryFailure as exc:
                if content:
                    outcome = self._finish(content)
                    content = b""
                    yield outcome
                    if _is_lost(outcome):
                        return
                yield exc
                continue
            self.content_written = self.content_written or bool(content)
            try:
                self._write(content + (b"RSET\r\n" if reset else b"") + commands)
            except OSError as exc:
                yield self._lost(exc)
                return
            self.mid_transaction = True
            if content:
                outcome = self._content_reply()
                content = b""
                yield outcome
                if _is_lost(outcome):
                    return
            replies, lost = self._read_replies(4 if reset else 3)
            if reset and replies:
                rset = replies.pop(0)
                if rset[0] != 250:
                    yield self._out_of_step(rset, "RSET")
                    return
            failure = _envelope_failure(replies, lost)
            if failure is None:
                content, reset = _dot_stuffed(envelope.data), False
                continue
            if lost is not None or failure.connection_lost:
                self.broken = True
                yield self._lost(lost) if self.aborted and lost else failure
                return
            if len(replies) == 3 and replies[2][0] == 354:
                # DATA was accepted although MAIL or RCPT was not. Closing
                # the connection ends that transaction with no content.
                yield self._out_of_step(replies[2], "DATA after a rejection")
                return
            self.mid_transaction = False
            yield failure
            reset = True
        if content:
            outcome = self._finish(content)
            yield outcome
            if _is_lost(outcome):
                return
        self.mid_transaction = False

    def _out_of_step(self, reply: Reply, command: str) -> TemporaryFailure:
        self.broken = True
        return TemporaryFailure(
            f"the relay replied {_reply_text(*reply)!r} to {command}; its replies "
            "are out of step with the commands, so the connection is closed",
            connection_lost=True,
        )

    def _finish(self, content: bytes) -> Delivered | DeliveryFailure:
        """Send the last pending message content and return its outcome."""
        self.content_written = True
        try:
            self._write(content)
        except OSError as exc:
            return self._lost(exc)
        outcome = self._content_reply()
        if not _is_lost(outcome):
            self.mid_transaction = False
        return outcome

    def _content_reply(self) -> Delivered | DeliveryFailure:
        """Read the reply to a message's content (after ``CRLF.CRLF``)."""
        replies, lost = self._read_replies(1)
        if not replies:
            return self._lost(lost or ConnectionError("the relay sent no reply"))
        code, message = replies[0]
        if code == 250:
            return self._delivered(code, message)
        # The transaction ended with this reply, so the next MAIL needs no
        # RSET before it.
        return self._rejected(code, message)

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

    def _reset(self) -> bool:
        """Send RSET; return False, marking the session broken, unless it got 250."""
        self.deadline = time.monotonic() + EXCHANGE_LIMIT
        try:
            code, _message = self.client.rset()
        except (OSError, smtplib.SMTPException):
            code = -1
        if code != 250:
            self.broken = True
            return False
        return True

    def reusable(self) -> bool:
        """Return whether the next batch may use this connection."""
        return (
            self.config is not None
            and self.config.keepalive > 0
            and not (self.broken or self.mid_transaction or self.aborted)
            and self.messages < MAX_MESSAGES_PER_CONNECTION
            and not self.too_old()
        )

    def too_old(self) -> bool:
        """Return whether the connection is past ``MAX_CONNECTION_AGE``."""
        return time.monotonic() - self.opened >= MAX_CONNECTION_AGE

    def release(self) -> None:
        """Keep the connection for the next batch if it is clean, else close it."""
        self.deadline = None
        if not (
            self.reusable()
            and self.config is not None
            and _idle_sessions.put(self.config, self)
        ):
            self.close()

    def probe(self) -> bool:
        """Return whether an idle connection still replies 250 to RSET.

        RSET also ends any transaction that the relay still keeps open.
        """
        try:
            return self._reset()
        finally:
            self.deadline = None

    def hang_up(self) -> None:
        """Close an idle connection with QUIT, without waiting for the reply.

        The watchdog calls this, and must not wait for a slow relay.
        """
        try:
            sock = self.client.sock
            if sock is not None and not self.broken:
                sock.settimeout(1.0)
                sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        finally:
            self.client.close()
            _watchdog.forget(self)

    def close(self) -> None:
        try:
            if self.broken or self.mid_transaction:
                # QUIT could be read as message content; closing the socket
                # ends any open transaction without delivering it.
                self.client.close()
                return
            self.deadline = time.monotonic() + EXCHANGE_LIMIT
            try:
                self.client.quit()
            except (OSError, smtplib.SMTPException):
                self.client.close()
        finally:
            _watchdog.forget(self)
            self.deadline = None


def _is_lost(outcome: Delivered | DeliveryFailure) -> bool:
    return isinstance(outcome, DeliveryFailure) and outcome.connection_lost


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
    exc: BaseException, context: str = "the connection to the relay failed"
) -> TemporaryFailure:
    return TemporaryFailure(f"{context}: {exc}", connection_lost=True)


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
