"""``sealmail compose``: write one composed message to standard output.

This shows a provider's engineer exactly what a customer receives in each
format, without storing or sending anything.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path
from typing import Any

import pysequoia
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sealmail.core.errors import SealmailError
from sealmail.core.mime.compose import compose
from sealmail.core.mime.message import Attachment, Format, OutgoingMessage
from sealmail.core.pgp.ops import ProviderSigner

logger = logging.getLogger(__name__)

_SECRET_TAGS = (pysequoia.packet.Tag.SecretKey, pysequoia.packet.Tag.SecretSubkey)


def _read_bytes(path: str, description: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(
            f"cannot read the {description} {path}: {exc.strerror}"
        ) from exc


def _read_text(path: str, description: str) -> str:
    data = _read_bytes(path, description)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"the {description} {path} is not UTF-8 text "
            f"({exc.reason} at byte {exc.start}); convert it to UTF-8"
        ) from exc


def _load_certificate(path: str) -> pysequoia.Cert:
    data = _read_bytes(path, "recipient key")
    try:
        return pysequoia.Cert.from_bytes(data)
    except Exception as exc:  # pysequoia raises plain Exception
        raise CommandError(
            f"the recipient key {path} is not an OpenPGP certificate: {exc}"
        ) from exc


def _load_signer(path: str, passphrase_file: str | None) -> ProviderSigner:
    data = _read_bytes(path, "signing key")
    hint = "export it with 'gpg --armor --export-secret-keys'"
    try:
        packets = pysequoia.packet.PacketPile.from_bytes(data)
        has_secret = any(packet.tag in _SECRET_TAGS for packet in packets)
        tsk = pysequoia.Tsk.from_bytes(data)
    except Exception as exc:  # pysequoia raises plain Exception
        raise CommandError(
            f"the signing key {path} is not an OpenPGP secret key: {exc}; {hint}"
        ) from exc
    if not has_secret:
        raise CommandError(
            f"the signing key {path} is a public key without secret key material; "
            + hint
        )
    passphrase = None
    if passphrase_file:
        passphrase = _read_text(passphrase_file, "passphrase file").rstrip("\r\n")
    try:
        return ProviderSigner.from_tsk(tsk, passphrase)
    except SealmailError as exc:
        raise CommandError(str(exc)) from exc


class Command(BaseCommand):
    help = (
        "Compose one message in the given format and write it to standard output, "
        "exactly as it would go on the wire (CRLF line endings)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # Keys
        parser.add_argument(
            "--recipient-key",
            action="append",
            default=[],
            metavar="FILE",
            help="recipient's OpenPGP certificate (armored or binary); repeat for "
            "several recipients; required for pgpmime and inline",
        )
        parser.add_argument(
            "--signing-key",
            required=True,
            metavar="FILE",
            help="provider's OpenPGP secret key: signs the message (all formats but "
            "plain) and goes into the Autocrypt header",
        )
        parser.add_argument(
            "--signing-key-passphrase-file",
            metavar="FILE",
            help="file whose first line is the signing key's passphrase",
        )

        # Message
        parser.add_argument(
            "--from",
            dest="sender",
            required=True,
            metavar="ADDRESS",
            help="From address, optionally 'Name <address>'",
        )
        parser.add_argument(
            "--to",
            required=True,
            metavar="ADDRESS",
            help="To address, optionally 'Name <address>'",
        )
        parser.add_argument(
            "--subject", required=True, metavar="TEXT", help="Subject line"
        )
        parser.add_argument("--text", metavar="FILE", help="UTF-8 plain text body")
        parser.add_argument("--html", metavar="FILE", help="UTF-8 HTML body")
        parser.add_argument(
            "--attach",
            action="append",
            default=[],
            metavar="FILE",
            help="file to attach, its type guessed from the name; repeatable",
        )

        # Output
        parser.add_argument(
            "--format",
            required=True,
            choices=[item.value for item in Format],
            help="pgpmime (encrypted and signed), inline, signed or plain",
        )
        subject = parser.add_mutually_exclusive_group()
        subject.add_argument(
            "--hide-subject",
            dest="hide_subject",
            action="store_true",
            default=True,
            help="replace the outer Subject of encrypted mail with '...' (default)",
        )
        subject.add_argument(
            "--show-subject",
            dest="hide_subject",
            action="store_false",
            help="leave the real Subject on the outside of encrypted mail",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["text"] and not options["html"]:
            raise CommandError("give --text FILE, --html FILE or both")

        attachments = []
        for path in options["attach"]:
            content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
            data = _read_bytes(path, "attachment")
            attachments.append(Attachment(Path(path).name, content_type, data))
        message = OutgoingMessage(
            sender=options["sender"],
            to=options["to"],
            subject=options["subject"],
            text=_read_text(options["text"], "text body") if options["text"] else None,
            html=_read_text(options["html"], "HTML body") if options["html"] else None,
            attachments=tuple(attachments),
        )

        recipients = [_load_certificate(p) for p in options["recipient_key"]]
        signer = _load_signer(
            options["signing_key"], options["signing_key_passphrase_file"]
        )

        try:
            composed = compose(
                message,
                Format(options["format"]),
                recipients=recipients,
                signer=signer,
                hide_subject=bool(options["hide_subject"]),
            )
        except SealmailError as exc:
            raise CommandError(str(exc)) from exc

        logger.info(
            "composed %s message %s", composed.format.value, composed.message_id
        )
        self.stdout.write(composed.data.decode("ascii"), ending="")
