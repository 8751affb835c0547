"""Render message header fields as folded, 7-bit CRLF bytes.

The ``email`` package does the RFC 2047 encoding and the folding. Its header
registry takes hundreds of microseconds per header, so plain ASCII values
and short non-ASCII ones take a direct path. Other results are cached
because bulk mail repeats the same sender and subject.
"""

from __future__ import annotations

import email.charset
import email.policy
import email.utils
import functools
import re
import secrets
import time
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from email.headerregistry import Address

from sealmail.core.errors import CompositionError

MAX_LINE_LENGTH = 78
# RFC 2047 section 2: an encoded word is at most 75 characters long.
_MAX_ENCODED_WORD_LENGTH = 75
_UTF8 = email.charset.Charset("utf-8")


class CachingPolicy(email.policy.EmailPolicy):
    """An EmailPolicy that parses and folds each distinct header value once.

    The leaf and multipart headers of a body tree (Content-Type,
    Content-Transfer-Encoding) repeat from message to message, and parsing
    them dominates the cost of building a tree. Header objects are
    immutable, so the cached ones are shared between messages.
    """

    def header_store_parse(self, name: str, value: object) -> tuple[str, object]:
        if isinstance(value, str):
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name} contains a line break: {value!r}")
            return (name, _parse_header(self, name, value))
        return super().header_store_parse(name, value)

    def header_max_count(self, name: str) -> int | None:
        key = name.lower()
        if key not in _max_counts:
            _max_counts[key] = super().header_max_count(name)
        return _max_counts[key]

    def fold_binary(self, name: str, value: object) -> bytes:
        if hasattr(value, "name"):
            return _fold_header(self, name, str(value), value)
        return super().fold_binary(name, value)


def _policy_key(policy: email.policy.EmailPolicy) -> tuple[object, ...]:
    return (policy.max_line_length, policy.linesep, policy.utf8, policy.cte_type)


_max_counts: dict[str, int | None] = {}
_parsed_headers: dict[tuple[object, ...], object] = {}
_folded_headers: dict[tuple[object, ...], bytes] = {}
_HEADER_CACHE_SIZE = 4096


def _parse_header(policy: email.policy.EmailPolicy, name: str, value: str) -> object:
    key = (*_policy_key(policy), name.lower(), name, value)
    header = _parsed_headers.get(key)
    if header is None:
        header = policy.header_factory(name, value)
        if len(_parsed_headers) >= _HEADER_CACHE_SIZE:
            _parsed_headers.clear()
        _parsed_headers[key] = header
    return header


def _fold_header(
    policy: email.policy.EmailPolicy, name: str, text: str, header: object
) -> bytes:
    key = (*_policy_key(policy), name, text)
    folded = _folded_headers.get(key)
    if folded is None:
        folded = email.policy.EmailPolicy.fold_binary(policy, name, header)
        if len(_folded_headers) >= _HEADER_CACHE_SIZE:
            _folded_headers.clear()
        _folded_headers[key] = folded
    return folded


# SMTP settings: CRLF line endings, RFC 2047 for non-ASCII, lines folded at 78.
WIRE_POLICY = CachingPolicy(linesep="\r\n", max_line_length=MAX_LINE_LENGTH)
# A message identifier cannot be folded, and RFC 5322 limits a line to 998
# octets including the longest field name that carries one ("In-Reply-To: ").
MAX_MESSAGE_ID_LENGTH = 980

# RFC 5322 atext: characters a dot-atom local part and an unquoted phrase may use.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_PLAIN_ADDR = re.compile(
    rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
_PLAIN_PHRASE = re.compile(rf"[{_ATEXT}]+(?: [{_ATEXT}]+)*")
# "Name <user@example.org>" or "user@example.org" with nothing to quote or decode.
# A display-name word: atext or any non-ASCII character (encoded on output).
_NAME_WORD = rf"[\u0080-\U0010ffff{_ATEXT}]+"
_PLAIN_MAILBOX = re.compile(
    rf"\s*(?:(?P<name>{_NAME_WORD}(?: {_NAME_WORD})*)\s*<)?"
    rf"(?P<username>[{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@"
    rf"(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?(name)>)\s*"
)
_PLAIN_UNSTRUCTURED = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_MSGID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")


@functools.lru_cache(maxsize=1024)
def parse_mailbox(value: str, field: str) -> Address:
    """Parse one ``Name <addr@domain>`` or ``addr@domain`` into an Address.

    Raises CompositionError naming ``field`` when the value is not exactly
    one mailbox. A non-ASCII domain is converted to its IDNA (punycode)
    form, because the message is sent without SMTPUTF8.
    """
    if "\r" in value or "\n" in value:
        raise CompositionError(f"{field} {value!r} contains a line break; remove it")
    match = _PLAIN_MAILBOX.fullmatch(value)
    if match is not None:
        name, username, domain = match.group("name", "username", "domain")
        return Address(display_name=name or "", username=username, domain=domain)
    addresses = email.utils.getaddresses([value])
    if len(addresses) != 1 or not addresses[0][1]:
        raise CompositionError(
            f"{field} {value!r} is not a single mail address; "
            "give one address such as 'Name <user@example.org>'"
        )
    display_name, addr_spec = addresses[0]
    local_part, at, domain = addr_spec.rpartition("@")
    if not at or not local_part or not domain:
        raise CompositionError(
            f"{field} address {addr_spec!r} is missing a local part or domain"
        )
    if not local_part.isascii():
        raise CompositionError(
            f"{field} address {addr_spec!r} has a non-ASCII local part, which "
            "needs SMTPUTF8; use an ASCII address"
        )
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise CompositionError(
                f"{field} address {addr_spec!r} has an invalid domain: {exc}"
            ) from exc
    try:
        return Address(display_name=display_name, username=local_part, domain=domain)
    except (ValueError, TypeError) as exc:
        raise CompositionError(
            f"{field} address {addr_spec!r} is invalid: {exc}"
        ) from exc


def format_mailboxes(name: str, mailboxes: Iterable[Address]) -> bytes:
    """Render an address header field such as From or To."""
    # Address objects are not hashable, so the cache key is their fields.
    key = tuple((box.display_name, box.username, box.domain) for box in mailboxes)
    parts = []
    for display_name, username, domain in key:
        addr_spec = f"{username}@{domain}"
        if not _PLAIN_ADDR.fullmatch(addr_spec):
            return _fold_cached(name, key)
        if not display_name:
            parts.append(addr_spec)
        elif _PLAIN_PHRASE.fullmatch(display_name):
            parts.append(f"{display_name} <{addr_spec}>")
        elif (word := _encoded_word(display_name)) is not None:
            parts.append(f"{word} <{addr_spec}>")
        else:
            return _fold_cached(name, key)
    line = f"{name}: {', '.join(parts)}"
    if len(line) > MAX_LINE_LENGTH:
        return _fold_cached(name, key)
    return line.encode("ascii") + b"\r\n"


def format_unstructured(name: str, value: str) -> bytes:
    """Render an unstructured field (Subject, Comments, most X- fields)."""
    if "\r" in value or "\n" in value:
        raise CompositionError(
            f"header {name} {value!r} contains a line break; remove it"
        )
    # Whitespace at either end would leave a header line ending in a space.
    value = value.strip()
    if not value:
        return f"{name}:\r\n".encode("ascii")
    line = f"{name}: {value}"
    if len(line) <= MAX_LINE_LENGTH and _PLAIN_UNSTRUCTURED.fullmatch(value):
        return line.encode("ascii") + b"\r\n"
    if not value.isascii() and (word := _encoded_word(value)) is not None:
        line = f"{name}: {word}"
        if len(line) <= MAX_LINE_LENGTH:
            return line.encode("ascii") + b"\r\n"
    return _fold_cached(name, value)


def _encoded_word(text: str) -> str | None:
    """Return ``text`` as one RFC 2047 encoded word, or None if it is too long.

    The email package picks the shorter of Q and B encoding. Its Q encoding
    escapes every character that is special in a phrase, so the word is
    valid in a display name as well as in unstructured text.
    """
    if not text.isprintable():
        return None
    word = _UTF8.header_encode(text)
    return word if len(word) <= _MAX_ENCODED_WORD_LENGTH else None


def prefix_field(name: str, field: bytes) -> bytes:
    """Return the rendered ``field`` as the value of a new unstructured field.

    ``HP-Outer: To: =?utf-8?q?...?= <a@example.org>`` decodes to the same
    text as the outer To field. Lines that grow past 78 characters are
    folded again at a space, which unfolding turns back into that space.
    """
    lines = (f"{name}: ".encode("ascii") + field).split(b"\r\n")
    folded = []
    for line in lines[:-1]:
        while len(line) > MAX_LINE_LENGTH:
            cut = line.rfind(b" ", len(name) + 2, MAX_LINE_LENGTH)
            if cut <= len(name) + 2:
                break  # no space to fold at; RFC 5322 allows up to 998
            folded.append(line[:cut])
            line = line[cut:]
        folded.append(line)
    return b"\r\n".join(folded) + b"\r\n"


def format_message_ids(name: str, message_ids: Iterable[str]) -> bytes:
    """Render Message-ID, In-Reply-To or References, one identifier per line."""
    ids = [normalize_message_id(value, name) for value in message_ids]
    if not ids:
        return b""
    return (f"{name}: " + "\r\n ".join(ids) + "\r\n").encode("ascii")


def normalize_message_id(value: str, field: str = "Message-ID") -> str:
    """Return ``value`` as ``<id-left@id-right>``, adding missing angle brackets."""
    candidate = value.strip()
    if not candidate.startswith("<"):
        candidate = f"<{candidate}>"
    if not _MSGID.fullmatch(candidate) or len(candidate) > MAX_MESSAGE_ID_LENGTH:
        raise CompositionError(
            f"{field} {value!r} is not a valid message identifier; use the form "
            f"<unique-part@domain> in printable ASCII, at most {MAX_MESSAGE_ID_LENGTH} "
            "characters"
        )
    return candidate


def make_message_id(domain: str) -> str:
    """Return a new ``<random@domain>`` identifier with 128 random bits."""
    return f"<{secrets.token_hex(16)}@{domain}>"


def format_date(value: datetime | None) -> str:
    """Return an RFC 5322 date; a naive datetime is taken as UTC, None as now."""
    if value is None:
        return _format_now(int(time.time()))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return _format_aware(value, value.utcoffset())


@functools.lru_cache(maxsize=1)
def _format_now(timestamp: int) -> str:
    return email.utils.format_datetime(datetime.fromtimestamp(timestamp, timezone.utc))


@functools.lru_cache(maxsize=8)
def _format_aware(value: datetime, offset: timedelta | None) -> str:
    """Format an aware datetime; a batch of mail shares one, so it is formatted once.

    ``offset`` is part of the cache key because equal instants in other time
    zones compare equal but print another offset.
    """
    return email.utils.format_datetime(value)


def format_raw(name: str, value: str) -> bytes:
    """Render a field whose value is already folded 7-bit text (Content-Type)."""
    return f"{name}: {value}\r\n".encode("ascii")


def format_header(name: str, value: str) -> bytes:
    """Render a caller-supplied extra header field, encoding it as needed."""
    if not re.fullmatch(r"[\x21-\x39\x3b-\x7e]+", name):
        raise CompositionError(
            f"header name {name!r} is invalid; use printable ASCII without a colon"
        )
    return format_unstructured(name, value)


@functools.lru_cache(maxsize=4096)
def _fold_cached(name: str, value: str | tuple[tuple[str, str, str], ...]) -> bytes:
    try:
        if isinstance(value, tuple):
            header = WIRE_POLICY.header_factory(
                name, [Address(*fields) for fields in value]
            )
        else:
            header = WIRE_POLICY.header_factory(name, value)
        folded = header.fold(policy=WIRE_POLICY)
    except (ValueError, TypeError, IndexError) as exc:
        raise CompositionError(
            f"header {name} {value!r} cannot be encoded: {exc}"
        ) from exc
    if header.defects:
        raise CompositionError(
            f"header {name} {value!r} is invalid: {header.defects[0]}"
        )
    try:
        return folded.encode("ascii")
    except UnicodeEncodeError as exc:
        raise CompositionError(
            f"header {name} {value!r} cannot be encoded as 7-bit ASCII: {exc}"
        ) from exc
