"""The mail address of an OpenPGP user ID, taken as GnuPG takes it.

GnuPG (``mailbox_from_userid`` in common/mbox-util.c) reads a user ID's
address in one of two ways. If the user ID contains ``<``, the address is
the text between the first ``<`` and the next ``>``, whatever text comes
before or after. Otherwise the whole user ID must be one bare address. So
``sales@example.net <support@example.net>`` names support@ only, and
``a@example.net, b@example.net`` names no address at all. WKD clients and
key lookups by address rely on this reading. The tests compare this module
with ``gpg-wks-client --print-wkd-hash`` of GnuPG 2.2.
"""

from __future__ import annotations

import string

# ASCII characters allowed in a bare address, as GnuPG checks it. Any
# non-ASCII character is allowed, so that user IDs may contain UTF-8 addresses.
_ATOM = string.ascii_letters + string.digits + "_-."
_LOCAL_EXTRA = "!#$%&'*+/=?^`{|}~"


def user_id_address(user_id: str) -> str | None:
    """Return the address of ``user_id`` with ASCII letters in lower case, or None.

    The address is the one in angle brackets when the user ID has a ``<``,
    else the whole user ID when it is a bare address. Returns None when that
    text is not an address: no ``@`` or more than one, an empty local part or
    domain, a trailing dot, a space or control character, or ``..`` in the
    domain. A bare address is checked more strictly, as GnuPG does: its
    ASCII characters must be letters, digits or ``_-.`` (the local part also
    allows ``!#$%&'*+/=?^`{|}~``), and it must contain no ``..`` at all.
    """
    # GnuPG handles a user ID as a C string, which ends at the first NUL.
    user_id = user_id.partition("\0")[0]
    start = user_id.find("<")
    if start >= 0:
        end = user_id.find(">", start + 1)
        if end < 0:
            return None
        address = user_id[start + 1 : end]
        valid = _plausible(address)
    else:
        address = user_id
        valid = _plausible(address) and _bare_address(address)
    return _ascii_lower(address) if valid else None


def _plausible(address: str) -> bool:
    """Apply GnuPG's checks for the address in angle brackets."""
    local, _, domain = address.partition("@")
    return (
        address.count("@") == 1
        and bool(local)
        and bool(domain)
        and not address.endswith(".")
        and not any(char <= " " for char in address)
        and ".." not in domain
    )


def _bare_address(address: str) -> bool:
    """Apply GnuPG's extra checks for a user ID that is only an address."""
    local, _, domain = address.partition("@")
    if ".." in address:
        return False
    local_ok = all(
        char in _ATOM or char in _LOCAL_EXTRA or not char.isascii() for char in local
    )
    domain_ok = all(char in _ATOM or not char.isascii() for char in domain)
    return local_ok and domain_ok


def _ascii_lower(text: str) -> str:
    return "".join(char.lower() if "A" <= char <= "Z" else char for char in text)
