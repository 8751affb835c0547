"""Helpers that turn environment variables into settings values.

Each helper raises ``ImproperlyConfigured`` naming the variable, the value
and the expected form, so a typo fails at start-up rather than later.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured
from huey import PriorityRedisHuey, SqliteHuey
from huey.api import Huey

from sealmail.outbox.transport import TransportConfigError, transport_from_url

HUEY_NAME = "sealmail"


def data_dir() -> Path:
    """Return ``SEALMAIL_DATA_DIR`` as an absolute path, creating it."""
    path = Path(os.environ.get("SEALMAIL_DATA_DIR", "var")).expanduser().resolve()
    try:
        # A new data directory is private: it contains the database, the queue
        # and the secret key, not only the keys directory.
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        (path / "static").mkdir(exist_ok=True)
        keys = path / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        keys.chmod(0o700)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"SEALMAIL_DATA_DIR={str(path)!r} cannot be created: {exc.strerror}; "
            "point it at a writable directory"
        ) from exc
    return path


def ensure_secret_key(directory: Path) -> str:
    """Return the Django secret key stored in ``directory``, generating it once."""
    path = directory / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if not key:
            raise ImproperlyConfigured(
                f"{str(path)!r} is empty; delete it to generate a new secret key"
            ) from None
        return key
    key = secrets.token_urlsafe(50)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use true or false")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not an integer; give a whole number"
        ) from None


def env_int_list(name: str, default: list[int]) -> list[int]:
    """Parse comma-separated positive integers from ``name``, largest first."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return sorted(default, reverse=True)
    try:
        numbers = [int(item) for item in value.split(",") if item.strip()]
    except ValueError:
        numbers = []
    if not numbers or any(number <= 0 for number in numbers):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a list of positive integers; "
            "give comma-separated numbers like 30,7,1"
        )
    return sorted(set(numbers), reverse=True)


def env_mapping(name: str) -> dict[str, str]:
    """Parse comma-separated ``KEY=VALUE`` pairs from ``name``; keys are lower-cased."""
    value = os.environ.get(name, "")
    mapping: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, target = item.partition("=")
        if not sep or not key.strip() or not target.strip():
            raise ImproperlyConfigured(
                f"{name} contains {item.strip()!r}, which is not KEY=VALUE; give "
                "comma-separated pairs like example.net=https://mirror.example.net"
            )
        mapping[key.strip().lower()] = target.strip()
    return mapping


def env_addr(name: str, default: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[::1]:PORT`` for IPv6) from ``name``."""
    value = os.environ.get(name) or default
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a listen address; use HOST:PORT, "
            "for example 127.0.0.1:8000 or [::1]:8000"
        )
    return host.strip("[]"), int(port)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def env_networks(name: str) -> list[IPNetwork]:
    """Parse comma-separated IP addresses and CIDR networks from ``name``.

    A bare address becomes a network of one address. Raises
    ``ImproperlyConfigured`` for an entry that is no address or network, for
    a network written with host bits set and for a network of every address.
    """
    value = os.environ.get(name, "")
    networks = []
    for item in value.split(","):
        entry = item.strip()
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry)
        except ValueError:
            raise ImproperlyConfigured(_network_error(name, entry)) from None
        if network.prefixlen == 0:
            raise ImproperlyConfigured(
                f"{name} contains {entry!r}, which matches every address, so any "
                "client could set its own address; list only your proxies' "
                "addresses or networks, like 10.0.0.5 or 10.0.0.0/24"
            )
        networks.append(network)
    return networks


def _network_error(name: str, entry: str) -> str:
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return (
            f"{name} contains {entry!r}, which is not an IP address or CIDR network; "
            "give comma-separated entries like 10.0.0.5, 10.0.0.0/24 or fd00::/8"
        )
    return (
        f"{name} contains {entry!r}, a network with host bits set; "
        f"write its network address, {network}"
    )


def role_addresses(value: str, sender: str) -> list[str]:
    """Return the role addresses, defaulting to support@, sales@ and accounts@."""
    addresses = [item.strip().lower() for item in value.split(",") if item.strip()]
    if not addresses:
        domain = sender.rpartition("@")[2]
        addresses = [f"{local}@{domain}" for local in ("support", "sales", "accounts")]
    for address in addresses:
        local, at, domain = address.partition("@")
        if not at or not local or not domain:
            raise ImproperlyConfigured(
                f"SEALMAIL_ROLE_ADDRESSES contains {address!r}, which is not an "
                "address; give comma-separated addresses like support@example.net"
            )
    return addresses


def smtp_url(url: str, maildir: Path, sender: str) -> str:
    """Validate ``SEALMAIL_SMTP_URL`` (``url``) and return it unchanged.

    A worker would otherwise find a typo only when it delivers, and count
    every delivery attempt until the messages fail.
    """
    try:
        transport_from_url(url, maildir, sender.rpartition("@")[2] or "localhost")
    except TransportConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None
    return url


def huey_from_url(url: str, sqlite_path: Path, *, immediate: bool) -> Huey:
    """Build the Huey instance: SQLite at ``sqlite_path`` or Redis at ``url``."""
    if not url:
        return SqliteHuey(HUEY_NAME, filename=str(sqlite_path), immediate=immediate)
    parsed = urlparse(url)
    if parsed.scheme in {"redis", "rediss"}:
        # Delivery tasks carry priorities, which plain RedisHuey cannot enqueue.
        return PriorityRedisHuey(HUEY_NAME, url=url, immediate=immediate)
    if parsed.scheme == "sqlite":
        return SqliteHuey(HUEY_NAME, filename=parsed.path, immediate=immediate)
    raise ImproperlyConfigured(
        f"SEALMAIL_QUEUE_URL={url!r} has an unknown scheme; "
        "use redis://HOST:PORT/DB or sqlite:///PATH"
    )
