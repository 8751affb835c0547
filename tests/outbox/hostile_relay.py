"""A scripted SMTP relay on a raw loopback socket that can misbehave on purpose.

``HostileRelay(respond)`` accepts one connection, or ``connections``
one after another, or with ``concurrent=True`` each in a thread of its
own, so that several may be open at once. It calls
``respond(event, number)`` for every command line, with the line without
CRLF as ``event``, and for every message content, with ``"<content>"`` as
``event``. ``number`` counts the MAIL commands seen so far. ``respond``
returns an :class:`Action`, a reply string, or None for the default reply. The relay records every
command and every content it read, with the dot-stuffing undone as
RFC 5321 section 4.5.2 prescribes (only CRLF ends a line).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Action:
    """What the relay does instead of a plain reply.

    ``chunks`` are written one after another with ``pause`` seconds between
    them, so a reply can arrive split across packets. ``then`` is ``""``,
    ``"close"`` (FIN after the chunks), ``"reset"`` (RST after the chunks)
    or ``"hang"`` (send nothing more until :meth:`stop`).
    ``data_mode`` sets whether the relay reads a message content after
    these chunks, which a 354 reply normally decides.
    """

    chunks: list[bytes] = field(default_factory=list)
    pause: float = 0.0
    then: str = ""
    data_mode: bool | None = None


Respond = Callable[[str, int], "Action | str | None"]

DEFAULTS = {"DATA": "354 go ahead", "QUIT": "221 bye", "<content>": "250 queued"}
EHLO = "250-hostile.test\r\n250-PIPELINING\r\n250 8BITMIME"


class HostileRelay:
    def __init__(
        self,
        respond: Respond,
        *,
        ehlo: str = EHLO,
        connections: int = 1,
        concurrent: bool = False,
    ) -> None:
        self.respond = respond
        self.ehlo = ehlo
        self.connections = connections
        self.concurrent = concurrent
        self.conversations: list[threading.Thread] = []
        self.accepted = 0  # connections accepted so far
        self.commands: list[str] = []
        # For each entry of ``commands``, the number of the socket read that
        # brought its last byte, so a test can see which commands shared a packet.
        self.packets: list[int] = []
        self.contents: list[bytes] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self, timeout: float = 2, keepalive: float = 0) -> str:
        """The relay's URL; by default each session ends with QUIT, not reuse."""
        return (
            f"smtp://127.0.0.1:{self.port}?tls=none&timeout={timeout}"
            f"&keepalive={keepalive}"
        )

    def stop(self) -> None:
        self.stopped.set()
        try:
            # Closing alone does not wake a thread blocked in accept().
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()
        self.thread.join(timeout=10)
        for conversation in self.conversations:
            conversation.join(timeout=10)

    def _serve(self) -> None:
        for _ in range(self.connections):
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            if not self.concurrent:
                self._converse(connection)
                continue
            conversation = threading.Thread(
                target=self._converse, args=(connection,), daemon=True
            )
            self.conversations.append(conversation)
            conversation.start()

    def _converse(self, connection: socket.socket) -> None:
        buffer, reads = b"", 0

        def readline() -> bytes:
            nonlocal buffer, reads
            while b"\r\n" not in buffer:
                try:
                    chunk = connection.recv(65536)
                except OSError:
                    return b""
                if not chunk:
                    return b""
                buffer += chunk
                reads += 1
            line, _, buffer = buffer.partition(b"\r\n")
            return line + b"\r\n"

        def act(action: Action | str | None, default: str) -> tuple[str, bool]:
            """Carry out ``action`` and return what follows and whether DATA mode starts."""
            if action is None:
                action = default
            if isinstance(action, str):
                action = Action([action.encode() + b"\r\n"])
            for index, chunk in enumerate(action.chunks):
                if index and action.pause:
                    time.sleep(action.pause)
                try:
                    connection.sendall(chunk)
                except OSError:
                    return "close", False
            data_mode = action.data_mode
            if data_mode is None:
                lines = b"".join(action.chunks).rstrip(b"\r\n").split(b"\r\n")
                data_mode = lines[-1].startswith(b"354")
            return action.then, data_mode

        with connection:
            connection.sendall(b"220 hostile.test ESMTP\r\n")
            number = 0
            while line := readline():
                command = line.decode("utf-8", "replace").rstrip("\r\n")
                self.commands.append(command)
                self.packets.append(reads)
                verb = command.split(" ", 1)[0].upper()
                if verb == "MAIL":
                    number += 1
                if verb in ("EHLO", "HELO"):
                    action: Action | str | None = self.ehlo
                else:
                    action = self.respond(command, number)
                then, data_mode = act(action, DEFAULTS.get(verb, "250 OK"))
                while then == "" and data_mode:
                    content = b""
                    while (chunk := readline()) != b".\r\n":
                        if not chunk:
                            return
                        content += chunk[1:] if chunk.startswith(b".") else chunk
                    self.contents.append(content)
                    self.commands.append("<content>")
                    self.packets.append(reads)
                    then, data_mode = act(
                        self.respond("<content>", number), DEFAULTS["<content>"]
                    )
                    data_mode = False
                if then == "close":
                    return
                if then == "reset":
                    connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    return
                if then == "hang":
                    while not self.stopped.wait(0.05):
                        pass
                    return
                if verb == "QUIT":
                    return
