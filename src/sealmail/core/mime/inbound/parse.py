"""Parse a received message into parts, decrypting and verifying as it goes.

The walk works on byte ranges of the raw message (see :mod:`.structure`),
so every signature is checked over the bytes that were received. Each
decryption or signature layer is recorded on every leaf beneath it, with its
scope: a signature counts for the whole message only when the entity it
covers is the whole message (or the whole decrypted message).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field, replace

from sealmail.core.errors import DecryptionError, SealmailError
from sealmail.core.mime.inbound import inline
from sealmail.core.mime.inbound.model import (
    DecryptionFailure,
    Encryption,
    ParsedMessage,
    Part,
    Scope,
    Signature,
    SignatureStatus,
)
from sealmail.core.mime.inbound.openpgp import (
    CheckedSignature,
    OpenPGP,
    describe_failure,
)
from sealmail.core.mime.inbound.structure import (
    Entity,
    clean_text,
    decode_text,
    decoded_payload,
    parse_entity,
    split_multipart,
)

ENCRYPTED_SUFFIXES = (".pgp", ".gpg", ".asc")
_LINE_BREAK = re.compile(rb"\r?\n")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


@dataclass(frozen=True)
class Limits:
    """Bounds that keep hostile input from exhausting memory or time."""

    max_depth: int = 16  # nested multiparts, encryption layers and message/rfc822
    max_parts: int = 500  # leaves and children of one multipart
    # Decrypted bytes of all encrypted parts of one message together; the
    # OpenPGP layer also checks it before decompressing.
    max_plaintext_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class _Context:
    path: str
    depth: int
    whole: bool  # this entity is all of the message content at this level
    encryption: Encryption = Encryption.NONE
    kind: str = ""
    signatures: tuple[Signature, ...] = field(default=())


def parse_message(
    raw: bytes, openpgp: OpenPGP, limits: Limits | None = None
) -> ParsedMessage:
    """Parse ``raw`` leniently, recording defects instead of raising.

    An unexpected error in the walk becomes a defect and the raw message is
    kept as one opaque part, so nothing a customer sent is dropped.
    tests/inbound/test_fuzz.py feeds it random and mutated MIME.
    """
    walker = _Walker(openpgp, limits or Limits())
    top = parse_entity(raw)
    message = ParsedMessage(parts=walker.parts, defects=walker.defects)
    message.defects.extend(top.defects)
    _read_headers(top, message)
    try:
        walker.walk(top, _Context(path="1", depth=0, whole=True))
    except Exception as exc:  # the robustness boundary of the parser, see above
        message.defects.append(f"the parser stopped: {type(exc).__name__}: {exc}")
        message.parts[:] = [
            Part(path="1", content_type="application/octet-stream", content=raw)
        ]
    message.repaired_mixed_up = walker.repaired_mixed_up
    if walker.inner_headers is not None:
        _apply_protected_headers(walker.inner_headers, message)
    return message


def _read_headers(top: Entity, message: ParsedMessage) -> None:
    message.subject = message.outer_subject = top.header("Subject")
    message.sender = message.outer_sender = top.header("From")
    message.to = top.header("To")
    message.message_id = top.header("Message-ID").strip()
    message.in_reply_to = top.header("In-Reply-To").strip()
    message.references = _MESSAGE_ID.findall(top.header("References"))


def _apply_protected_headers(inner: Entity, message: ParsedMessage) -> None:
    subject = inner.header("Subject")
    sender = inner.header("From")
    if subject:
        message.subject = subject
        message.protected_headers = True
    if sender:
        message.sender = sender
        message.protected_headers = True


class _Walker:
    def __init__(self, openpgp: OpenPGP, limits: Limits) -> None:
        self.openpgp = openpgp
        self.limits = limits
        self.parts: list[Part] = []
        self.defects: list[str] = []
        self.repaired_mixed_up = False
        self.inner_headers: Entity | None = None
        self.decrypted_bytes = 0

    def walk(self, entity: Entity, context: _Context) -> None:
        if context.depth > self.limits.max_depth:
            self.defects.append(
                f"part {context.path} is nested deeper than {self.limits.max_depth} "
                "levels; kept as an opaque attachment"
            )
            self._add(context, "application/octet-stream", entity.raw)
            return
        if len(self.parts) >= self.limits.max_parts:
            if not self.defects or "parts; the rest" not in self.defects[-1]:
                self.defects.append(
                    f"more than {self.limits.max_parts} parts; the rest was not parsed"
                )
            return
        self.defects.extend(f"{context.path}: {defect}" for defect in entity.defects)
        content_type = entity.content_type
        if content_type == "multipart/encrypted":
            self._pgp_mime_encrypted(entity, context, self._children(entity, context))
        elif content_type == "multipart/signed":
            self._pgp_mime_signed(entity, context)
        elif content_type.startswith("multipart/"):
            self._multipart(entity, context)
        elif content_type == "message/rfc822":
            inner = parse_entity(entity.body)
            self.walk(
                inner,
                replace(
                    context,
                    path=context.path + ".1",
                    depth=context.depth + 1,
                    whole=False,
                ),
            )
        else:
            self._leaf(entity, context)

    # region multipart ##########################################################

    def _children(self, entity: Entity, context: _Context) -> list[Entity]:
        boundary = entity.param("boundary")
        if not boundary:
            self.defects.append(f"{context.path}: multipart without a boundary")
            return []
        raw_children, defects = split_multipart(
            entity.body, boundary, self.limits.max_parts
        )
        self.defects.extend(f"{context.path}: {defect}" for defect in defects)
        return [parse_entity(child) for child in raw_children]

    def _multipart(self, entity: Entity, context: _Context) -> None:
        children = self._children(entity, context)
        if not children:
            self._add(context, "text/plain", entity.body)
            return
        if entity.content_type == "multipart/mixed":
            mixed_up = _mixed_up_shape(children)
            if mixed_up is not None:
                self.repaired_mixed_up = True
                self.defects.append(
                    f"{context.path}: repaired the multipart/mixed that Exchange or "
                    "Outlook makes of PGP/MIME"
                )
                self._pgp_mime_encrypted(entity, context, mixed_up)
                return
        # A signature inside one of several children, alternatives included,
        # covers only that child: the reader may be shown another one.
        whole = context.whole and len(children) == 1
        for number, child in enumerate(children, start=1):
            self.walk(
                child,
                replace(
                    context,
                    path=f"{context.path}.{number}",
                    depth=context.depth + 1,
                    whole=whole,
                ),
            )

    def _pgp_mime_encrypted(
        self, entity: Entity, context: _Context, children: list[Entity]
    ) -> None:
        """Decrypt RFC 3156 ``multipart/encrypted`` (or its repaired Exchange form)."""
        if (
            len(children) != 2
            or children[0].content_type != "application/pgp-encrypted"
        ):
            self.defects.append(
                f"{context.path}: multipart/encrypted is not the RFC 3156 shape "
                "(application/pgp-encrypted, then the ciphertext); shown as parts"
            )
            for number, child in enumerate(children, start=1):
                path = f"{context.path}.{number}"
                self._leaf(
                    child,
                    replace(context, path=path, depth=context.depth + 1, whole=False),
                )
            return
        if b"Version: 1" not in children[0].body:
            self.defects.append(f"{context.path}: the control part lacks 'Version: 1'")
        ciphertext, defects = decoded_payload(children[1])
        self.defects.extend(f"{context.path}.2: {defect}" for defect in defects)
        for block, block_context in self._message_blocks(ciphertext, context):
            decrypted = self._decrypt(
                block, block_context, "pgp-mime", "application/pgp-encrypted"
            )
            if decrypted is None:
                continue
            plaintext, signatures = decrypted
            inner = parse_entity(plaintext)
            if block_context.whole and self.inner_headers is None:
                self.inner_headers = inner
            self.walk(
                inner,
                replace(
                    block_context,
                    depth=context.depth + 1,
                    encryption=Encryption.DECRYPTED,
                    kind="pgp-mime",
                    signatures=context.signatures + signatures,
                ),
            )

    def _pgp_mime_signed(self, entity: Entity, context: _Context) -> None:
        """Verify RFC 3156 ``multipart/signed`` over the first child's raw bytes."""
        boundary = entity.param("boundary") or ""
        raw_children, defects = split_multipart(
            entity.body, boundary, self.limits.max_parts
        )
        self.defects.extend(f"{context.path}: {defect}" for defect in defects)
        protocol = (entity.param("protocol") or "").lower()
        if len(raw_children) != 2 or protocol != "application/pgp-signature":
            self.defects.append(
                f"{context.path}: multipart/signed with protocol {protocol!r} and "
                f"{len(raw_children)} parts is not PGP/MIME; the signature was not checked"
            )
            self._multipart(entity, replace(context, whole=False))
            return

        signed_raw = raw_children[0]
        signature_entity = parse_entity(raw_children[1])
        signature_bytes, _ = decoded_payload(signature_entity)

        # RFC 3156 signs the canonical form: the received lines with CRLF endings.
        canonical = _LINE_BREAK.sub(b"\r\n", signed_raw)
        try:
            checked = self.openpgp.verify_detached(canonical, signature_bytes)
        except SealmailError as exc:
            checked = [CheckedSignature(status="error", key_id=None)]
            self.defects.append(
                f"{context.path}: the signature could not be checked: {exc}"
            )
        signatures = self._signatures(checked, context.whole, "pgp-mime")

        self.walk(
            parse_entity(signed_raw),
            replace(
                context,
                path=f"{context.path}.1",
                depth=context.depth + 1,
                signatures=context.signatures + signatures,
            ),
        )

    # endregion
    # region leaves ############################################################

    def _leaf(self, entity: Entity, context: _Context) -> None:
        payload, defects = decoded_payload(entity)
        self.defects.extend(f"{context.path}: {defect}" for defect in defects)
        content_type = entity.content_type
        filename = _filename(entity)
        if filename and _looks_encrypted_attachment(filename, content_type, payload):
            self._encrypted_attachment(entity, context, payload, filename)
            return
        if content_type == "text/plain" and inline.contains_armor(payload):
            self._inline(entity, context, payload)
            return
        part = self._add(
            context, content_type, payload, entity=entity, filename=filename
        )
        if content_type.startswith("text/"):
            part.text, part.charset = decode_text(payload, [entity.param("charset")])

    def _encrypted_attachment(
        self, entity: Entity, context: _Context, payload: bytes, filename: str
    ) -> None:
        restored = filename[: -len(".pgp")] or "attachment"
        guessed = mimetypes.guess_type(restored)[0] or "application/octet-stream"
        for block, block_context in self._message_blocks(payload, context):
            decrypted = self._decrypt(
                block, block_context, "attachment", entity.content_type, filename
            )
            if decrypted is None:
                continue
            plaintext, signatures = decrypted
            part = self._add(
                replace(
                    block_context,
                    encryption=Encryption.DECRYPTED,
                    kind="attachment",
                    signatures=context.signatures + _narrowed(signatures),
                ),
                guessed,
                plaintext,
                entity=entity,
                filename=restored,
            )
            part.original_filename = filename
            part.is_attachment = True

    def _inline(self, entity: Entity, context: _Context, payload: bytes) -> None:
        segments = [
            segment
            for segment in inline.split_segments(payload)
            if segment.kind != "plain" or segment.data.strip()
        ]
        only = len(segments) == 1
        part_charset = entity.param("charset")
        for number, segment in enumerate(segments, start=1):
            path = context.path if only else f"{context.path}.i{number}"
            segment_context = replace(context, path=path, whole=context.whole and only)
            if segment.kind == "plain":
                part = self._add(
                    segment_context, "text/plain", segment.data, entity=entity
                )
                part.text, part.charset = decode_text(segment.data, [part_charset])
            elif segment.kind == "encrypted":
                self._inline_encrypted(
                    segment.data, segment_context, part_charset, entity
                )
            else:
                self._inline_signed(segment.data, segment_context, part_charset, entity)

    def _inline_encrypted(
        self, block: bytes, context: _Context, part_charset: str | None, entity: Entity
    ) -> None:
        armored = inline.normalise_encrypted(block)
        decrypted = self._decrypt(armored, context, "inline", "text/plain")
        if decrypted is None:
            return
        plaintext, signatures = decrypted
        part = self._add(
            replace(
                context,
                encryption=Encryption.DECRYPTED,
                kind="inline",
                signatures=context.signatures + signatures,
            ),
            "text/plain",
            plaintext,
            entity=entity,
        )
        part.text, part.charset = decode_text(
            plaintext, [inline.armor_charset(armored), part_charset]
        )

    def _inline_signed(
        self, block: bytes, context: _Context, part_charset: str | None, entity: Entity
    ) -> None:
        armored = inline.normalise_signed(block)
        try:
            content, checked = self.openpgp.verify_inline(armored)
        except SealmailError as exc:
            content, checked = armored, [CheckedSignature(status="error")]
            self.defects.append(
                f"{context.path}: the inline signature could not be checked: {exc}"
            )
        signatures = self._signatures(checked, context.whole, "inline")
        part = self._add(
            replace(context, signatures=context.signatures + signatures),
            "text/plain",
            content,
            entity=entity,
        )
        part.text, part.charset = decode_text(
            content, [inline.armor_charset(armored), part_charset]
        )

    # endregion
    # region helpers ###########################################################

    def _message_blocks(
        self, data: bytes, context: _Context
    ) -> list[tuple[bytes, _Context]]:
        """Split encrypted data that contains several armored messages into one entry each.

        Each message is then decrypted on its own and covers only itself,
        as with several inline PGP blocks in one text part. Other data is
        returned unchanged, as the only entry.
        """
        blocks = inline.message_blocks(data) if inline.contains_armor(data) else []
        if len(blocks) < 2:
            return [(data, context)]
        self.defects.append(
            f"{context.path}: contains {len(blocks)} OpenPGP messages; each was "
            "decrypted on its own and its signatures cover only its own content"
        )
        room = self.limits.max_parts - len(self.parts)
        if len(blocks) > room:
            self.defects.append(
                f"{context.path}: more than {self.limits.max_parts} parts; "
                f"only the first {max(room, 0)} messages were decrypted"
            )
            blocks = blocks[: max(room, 0)]
        return [
            (block, replace(context, path=f"{context.path}.m{number}", whole=False))
            for number, block in enumerate(blocks, start=1)
        ]

    def _decrypt(
        self,
        ciphertext: bytes,
        context: _Context,
        kind: str,
        content_type: str,
        filename: str | None = None,
    ) -> tuple[bytes, tuple[Signature, ...]] | None:
        """Decrypt or record a failed part; returns plaintext and inner signatures.

        All encrypted parts of one message share ``max_plaintext_bytes``.
        """
        left = self.limits.max_plaintext_bytes - self.decrypted_bytes
        try:
            result = self.openpgp.decrypt(ciphertext, max_plaintext=max(left, 0))
        except DecryptionError as exc:
            failure = describe_failure(exc)
            part = self._add(
                replace(context, encryption=Encryption.FAILED, kind=kind),
                content_type,
                ciphertext,
                filename=filename,
            )
            part.failure = DecryptionFailure(
                failure.reason, failure.message, failure.recipient_key_ids
            )
            part.is_attachment = True
            return None
        if len(result.plaintext) > left:
            part = self._add(
                replace(context, encryption=Encryption.FAILED, kind=kind),
                content_type,
                ciphertext,
                filename=filename,
            )
            part.failure = DecryptionFailure(
                "too_large",
                f"the decrypted data has {len(result.plaintext)} bytes, more than the "
                f"{left} bytes left of the limit of {self.limits.max_plaintext_bytes} "
                "for one message",
            )
            part.is_attachment = True
            return None
        self.decrypted_bytes += len(result.plaintext)
        return result.plaintext, self._signatures(
            result.signatures, context.whole, "combined"
        )

    @staticmethod
    def _signatures(
        checked: list[CheckedSignature], whole: bool, kind: str
    ) -> tuple[Signature, ...]:
        scope = Scope.MESSAGE if whole else Scope.PART
        signatures = []
        for item in checked:
            try:
                status = SignatureStatus(item.status)
            except ValueError:
                status = SignatureStatus.ERROR
            signatures.append(
                Signature(
                    status=status,
                    scope=scope,
                    signer_fingerprint=(item.signer_fingerprint or None)
                    and item.signer_fingerprint.lower(),
                    key_id=item.key_id,
                    hash_algorithm=item.hash_algorithm,
                    created=item.created,
                    kind=kind,
                )
            )
        return tuple(signatures)

    def _add(
        self,
        context: _Context,
        content_type: str,
        content: bytes,
        *,
        entity: Entity | None = None,
        filename: str | None = None,
    ) -> Part:
        disposition = ""
        if entity is not None:
            try:
                disposition = entity.headers.get_content_disposition() or ""
            except Exception:  # email raises assorted errors on hostile headers
                disposition = ""
        part = Part(
            path=context.path,
            content_type=content_type,
            content=content,
            filename=filename,
            is_attachment=disposition == "attachment" or bool(filename),
            encryption=context.encryption,
            signatures=list(context.signatures),
            kind=context.kind,
        )
        self.parts.append(part)
        return part

    # endregion


def _narrowed(signatures: tuple[Signature, ...]) -> tuple[Signature, ...]:
    """Narrow ``signatures`` to the part: inside an encrypted attachment they cover only it."""
    return tuple(replace(signature, scope=Scope.PART) for signature in signatures)


def _filename(entity: Entity) -> str | None:
    try:
        name = entity.headers.get_filename()
    except Exception:  # email raises assorted errors on hostile headers
        return None
    if not name:
        return None
    # Keep only the last path component and drop control characters.
    name = clean_text(str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in name if ch.isprintable()) or None


def _looks_encrypted_attachment(
    filename: str, content_type: str, payload: bytes
) -> bool:
    if not filename.lower().endswith(ENCRYPTED_SUFFIXES):
        return False
    if content_type in {"application/pgp-signature", "application/pgp-keys"}:
        return False
    head = payload.lstrip()[:64]
    if head.startswith(b"-----BEGIN PGP MESSAGE-----"):
        return True
    if not head or not head[0] & 0x80:
        return False
    first = head[0]
    tag = first & 0x3F if first & 0x40 else (first >> 2) & 0x0F
    return tag in {1, 3}  # PKESK or SKESK starts an encrypted message


def _mixed_up_shape(children: list[Entity]) -> list[Entity] | None:
    """Return the two PGP/MIME parts if ``children`` is the Exchange shape, else None.

    The shape is exactly: an optional first text/plain part with an empty
    body, an application/pgp-encrypted part holding ``Version: 1`` and an
    application/octet-stream part with the ciphertext.
    """
    rest = list(children)
    if (
        len(rest) == 3
        and rest[0].content_type == "text/plain"
        and not rest[0].body.strip()
    ):
        rest = rest[1:]
    if len(rest) != 2:
        return None
    control, data = rest
    if (
        control.content_type != "application/pgp-encrypted"
        or b"Version: 1" not in control.body
    ):
        return None
    if data.content_type != "application/octet-stream":
        return None
    return rest
