"""Provider keys on disk: the signing key, rotated keys and role-address keys.

One directory (mode 0700) contains one armored secret key per file
(``FINGERPRINT.key``, mode 0600) and ``keys.json``. The index records which
key signs now, which keys are retired and which role address has its own
decryption key. Passphrases are never stored: a protected key names the
environment variable or file that contains its passphrase.

Secret material never appears in log lines or error messages; errors name
keys by fingerprint only.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pysequoia

from sealmail.core.errors import KeyImportError, KeyStoreError
from sealmail.core.pgp import packets as pk
from sealmail.core.pgp.generate import generate_provider_key
from sealmail.core.pgp.ops import DecryptionKey, ProviderSigner, decryption_keys_of

logger = logging.getLogger(__name__)

INDEX_FILE = "keys.json"
PASSPHRASE_ENV = "SEALMAIL_KEY_PASSPHRASE"
PASSPHRASE_FILE_ENV = "SEALMAIL_KEY_PASSPHRASE_FILE"
RSA_WARNING = (
    "this key uses RSA; pysequoia's wheels do RSA with the Rust `rsa` crate, which has an "
    "unfixed timing side channel (RUSTSEC-2023-0071), and an RSA-3072 signature costs about "
    "5 ms against 0.04 ms for Ed25519. Prefer `sealmail orgkey generate` (Ed25519/Cv25519)"
)


@dataclass(frozen=True)
class StoredKey:
    """One key in the store, as ``orgkey list`` shows it."""

    fingerprint: str
    role: str | None  # None: a provider key; else the role address it decrypts for
    current: bool  # the provider key that signs now
    retired: datetime | None  # when rotation replaced it; it still decrypts
    added: datetime
    algorithm: str
    user_ids: list[str]
    protected: bool  # the secret key needs a passphrase
    warnings: list[str] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _has_secret_stub(tsk_bytes: bytes) -> bool:
    """Return whether a secret key packet contains a GnuPG stub instead of the secret.

    ``gpg --export-secret-subkeys`` and keys on a smartcard write the GNU
    extension S2K (type 101, "GNU", mode 1 or 2) in place of secret material.
    """
    packets = pk.read_packets(pk.dearmor(tsk_bytes).data)
    for packet in packets:
        if packet.tag not in pk.SECRET_TAGS:
            continue
        rest = packet.body[len(pk.parse_key(packet).public_body) :]
        if len(rest) >= 7 and rest[0] in (254, 255) and rest[2] == 101 and rest[4:7] == b"GNU":
            return True
    return False


def _secret_summary(tsk_bytes: bytes) -> tuple[str, bool, list[str]]:
    """Return the primary algorithm, whether any secret is passphrase-protected, and warnings."""
    packets = pk.read_packets(pk.dearmor(tsk_bytes).data)
    keys = [(packet, pk.parse_key(packet)) for packet in packets if packet.tag in pk.KEY_TAGS]
    primary = keys[0][1]
    protected = False
    for packet, info in keys:
        if packet.tag in pk.SECRET_TAGS:
            usage = packet.body[len(info.public_body)] if len(packet.body) > len(info.public_body) else 0
            protected = protected or usage != 0
    warnings = []
    if any(info.algorithm_id in pk.RSA_ALGORITHMS for _, info in keys):
        warnings.append(RSA_WARNING)
    return primary.algorithm, protected, warnings


class KeyStore:
    """The provider's secret keys in one directory.

    ``signer()`` and ``decryption_keys()`` cache unlocked keys per instance
    and reload when ``keys.json`` or a key file changes, so callers may ask
    for them per message.
    """

    def __init__(self, directory: Path | str, *, environ: dict[str, str] | None = None) -> None:
        self.directory = Path(directory)
        self._environ = environ
        self._lock = threading.RLock()
        self._cache_stamp: tuple[int, ...] | None = None
        self._signer: ProviderSigner | None = None
        self._decryption_keys: list[DecryptionKey] | None = None
        self._certificates: list[pysequoia.Cert] | None = None

    # --- index ------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        return self.directory / INDEX_FILE

    def _ensure_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    def _read_index(self) -> dict:
        try:
            text = self.index_path.read_text()
        except FileNotFoundError:
            return self._adopt_legacy_files()
        except OSError as exc:
            raise KeyStoreError(f"cannot read the key index {str(self.index_path)!r}: {exc}") from None
        try:
            index = json.loads(text)
        except ValueError as exc:
            raise KeyStoreError(
                f"the key index {str(self.index_path)!r} is damaged ({exc}); restore it from a backup"
            ) from None
        index.setdefault("keys", {})
        index.setdefault("roles", {})
        return index

    def _adopt_legacy_files(self) -> dict:
        """Build an index for key files written before ``keys.json`` existed."""
        index: dict = {"current": None, "keys": {}, "roles": {}}
        if not self.directory.is_dir():
            return index
        files = sorted(self.directory.glob("*.key"), key=lambda path: path.stat().st_mtime)
        for path in files:
            index["keys"][path.stem.lower()] = {
                "added": _iso(datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)),
                "role": None,
                "retired": None,
            }
            index["current"] = path.stem.lower()
        return index

    def _write_index(self, index: dict) -> None:
        self._ensure_directory()
        _write_private(self.index_path, json.dumps(index, indent=2, sort_keys=True).encode())
        self._invalidate()

    def _invalidate(self) -> None:
        with self._lock:
            self._cache_stamp = None
            self._signer = None
            self._decryption_keys = None
            self._certificates = None

    def _stamp(self) -> tuple[int, ...]:
        """Return a cheap fingerprint of the directory state from the index's and directory's stat."""
        stamps = []
        for path in (self.index_path, self.directory):
            try:
                stat = path.stat()
                stamps.extend((stat.st_mtime_ns, stat.st_size, stat.st_ino))
            except FileNotFoundError:
                stamps.extend((0, 0, 0))
        return tuple(stamps)

    def _fresh(self) -> None:
        stamp = self._stamp()
        if stamp != self._cache_stamp:
            self._signer = None
            self._decryption_keys = None
            self._certificates = None
            self._cache_stamp = stamp

    def _key_path(self, fingerprint: str) -> Path:
        return self.directory / f"{fingerprint.lower()}.key"

    def _load(self, fingerprint: str) -> pysequoia.Tsk:
        path = self._key_path(fingerprint)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyStoreError(
                f"cannot read the key file {str(path)!r}: {exc.strerror}"
            ) from None
        try:
            return pysequoia.Tsk.from_bytes(data)
        except Exception:  # pysequoia raises plain Exception; its text may quote key data
            raise KeyStoreError(
                f"the key file {str(path)!r} is not a valid OpenPGP secret key; restore it "
                "from a backup"
            ) from None

    def _passphrase(self, entry: dict) -> str | None:
        environ = self._environ if self._environ is not None else os.environ
        if not entry.get("protected"):
            return None
        variable = entry.get("passphrase_env") or PASSPHRASE_ENV
        if environ.get(variable):
            return environ[variable]
        file_name = entry.get("passphrase_file") or environ.get(PASSPHRASE_FILE_ENV)
        if file_name:
            try:
                return Path(file_name).read_text().rstrip("\r\n")
            except OSError as exc:
                raise KeyStoreError(
                    f"cannot read the passphrase file {file_name!r}: {exc.strerror}"
                ) from None
        raise KeyStoreError(
            f"the key {entry.get('fingerprint', '')} is passphrase-protected; set "
            f"{variable} or {PASSPHRASE_FILE_ENV} to its passphrase"
        )

    # --- queries ----------------------------------------------------------

    def is_empty(self) -> bool:
        index = self._read_index()
        return not any(entry.get("role") is None for entry in index["keys"].values())

    def list(self) -> list[StoredKey]:
        """Return every key, the current provider key first, then newest first."""
        index = self._read_index()
        result = []
        for fingerprint, entry in index["keys"].items():
            try:
                data = self._key_path(fingerprint).read_bytes()
                algorithm, protected, warnings = _secret_summary(data)
                cert = pysequoia.Tsk.from_bytes(data).extract_certificate()
                user_ids = [str(uid) for uid in cert.user_ids]
            except (OSError, pk.PacketError, Exception):  # pysequoia raises plain Exception
                algorithm, protected, warnings, user_ids = "unreadable", False, [], []
                warnings.append("the key file is missing or damaged")
            result.append(
                StoredKey(
                    fingerprint=fingerprint,
                    role=entry.get("role"),
                    current=fingerprint == index.get("current"),
                    retired=_parse_time(entry.get("retired")),
                    added=_parse_time(entry.get("added")) or _now(),
                    algorithm=algorithm,
                    user_ids=user_ids,
                    protected=protected,
                    warnings=warnings,
                )
            )
        result.sort(key=lambda key: (not key.current, key.role is not None, -key.added.timestamp()))
        return result

    def current_fingerprint(self) -> str:
        index = self._read_index()
        current = index.get("current")
        if not current:
            raise KeyStoreError(
                f"no provider key in {str(self.directory)!r}; run `sealmail orgkey generate`"
            )
        return current

    def signer(self) -> ProviderSigner:
        """Return the current provider key, unlocked for signing (cached)."""
        with self._lock:
            self._fresh()
            if self._signer is None:
                index = self._read_index()
                current = self.current_fingerprint()
                entry = dict(index["keys"].get(current, {}), fingerprint=current)
                self._signer = ProviderSigner.from_tsk(self._load(current), self._passphrase(entry))
            return self._signer

    def certificates(self) -> list[pysequoia.Cert]:
        """Return the public certificates of the provider keys, the current one first (cached)."""
        with self._lock:
            self._fresh()
            if self._certificates is None:
                self._certificates = [
                    self._load(key.fingerprint).extract_certificate()
                    for key in self.list()
                    if key.role is None
                ]
            return list(self._certificates)

    def certificate(self, fingerprint: str | None = None) -> pysequoia.Cert:
        """Return one public certificate; the current provider key by default."""
        fingerprint = (fingerprint or self.current_fingerprint()).lower()
        if fingerprint not in self._read_index()["keys"]:
            raise KeyStoreError(f"no key {fingerprint.upper()} in {str(self.directory)!r}")
        return self._load(fingerprint).extract_certificate()

    def certificate_for_address(self, address: str) -> pysequoia.Cert:
        """Return the certificate to publish for ``address``: its role key or the provider key."""
        index = self._read_index()
        role_key = index["roles"].get(address.lower())
        return self.certificate(role_key) if role_key else self.certificate()

    def roles(self) -> dict[str, str]:
        """Return the role addresses that have their own key, mapped to its fingerprint."""
        return dict(self._read_index()["roles"])

    def decryption_keys(self) -> list[DecryptionKey]:
        """Return every provider and role decryption subkey, rotated keys included (cached)."""
        with self._lock:
            self._fresh()
            if self._decryption_keys is None:
                index = self._read_index()
                keys: list[DecryptionKey] = []
                for fingerprint, entry in index["keys"].items():
                    entry = dict(entry, fingerprint=fingerprint)
                    try:
                        keys.extend(decryption_keys_of(self._load(fingerprint), self._passphrase(entry)))
                    except KeyStoreError as exc:
                        logger.error("key %s cannot decrypt: %s", fingerprint, exc)
                self._decryption_keys = keys
            return list(self._decryption_keys)

    def decryptors(self) -> list[tuple[str, pysequoia.PyDecryptor]]:
        """Return ``(primary fingerprint, decryptor)`` for every decryption subkey."""
        return [(key.fingerprint, key.decryptor) for key in self.decryption_keys()]

    # --- changes ----------------------------------------------------------

    def _store(
        self,
        tsk_bytes: bytes,
        *,
        role: str | None,
        make_current: bool,
        passphrase_env: str | None = None,
        passphrase_file: str | None = None,
        protected: bool = False,
    ) -> str:
        cert = pysequoia.Tsk.from_bytes(tsk_bytes).extract_certificate()
        fingerprint = cert.fingerprint.lower()
        with self._lock:
            index = self._read_index()
            if fingerprint in index["keys"]:
                raise KeyImportError(f"the key {fingerprint.upper()} is already in the store")
            self._ensure_directory()
            _write_private(self._key_path(fingerprint), pysequoia.armor(
                pk.dearmor(tsk_bytes).data, pysequoia.ArmorKind.SecretKey
            ).encode())
            entry = {"added": _iso(_now()), "role": role, "retired": None, "protected": protected}
            if passphrase_env:
                entry["passphrase_env"] = passphrase_env
            if passphrase_file:
                entry["passphrase_file"] = passphrase_file
            index["keys"][fingerprint] = entry
            if role is not None:
                previous = index["roles"].get(role)
                if previous and previous in index["keys"]:
                    index["keys"][previous]["retired"] = _iso(_now())
                index["roles"][role] = fingerprint
            elif make_current:
                previous = index.get("current")
                if previous and previous in index["keys"]:
                    index["keys"][previous]["retired"] = _iso(_now())
                index["current"] = fingerprint
            self._write_index(index)
        logger.info("stored key %s (role %s, current %s)", fingerprint, role or "-", make_current)
        return fingerprint

    def generate(self, user_ids: Sequence[str], *, role: str | None = None) -> pysequoia.Cert:
        """Generate an Ed25519/Cv25519 key; a provider key becomes the current signing key."""
        tsk_bytes = generate_provider_key(list(user_ids))
        fingerprint = self._store(tsk_bytes, role=_role(role), make_current=role is None)
        return self.certificate(fingerprint)

    def rotate(self, user_ids: Sequence[str] | None = None) -> pysequoia.Cert:
        """Generate a new provider key that signs from now on; old keys keep decrypting."""
        if user_ids is None:
            user_ids = [str(uid) for uid in self.certificate().user_ids]
        if not user_ids:
            raise KeyStoreError("the current key has no user ID; pass the user IDs for the new key")
        return self.generate(user_ids)

    def import_key(
        self,
        data: bytes,
        *,
        role: str | None = None,
        make_current: bool = True,
        passphrase: str | None = None,
        passphrase_env: str | None = None,
        passphrase_file: str | None = None,
    ) -> StoredKey:
        """Import an armored or binary secret key as a provider key or a role key.

        The passphrase (if the key is protected) is checked now and later read
        from ``passphrase_env`` or ``passphrase_file``, never stored. Raises
        :class:`KeyImportError` for anything but one usable secret key.
        """
        role = _role(role)
        try:
            packets = pk.read_packets(pk.dearmor(data).data)
        except pk.PacketError as exc:
            raise KeyImportError(f"the key to import is not valid OpenPGP data: {exc}") from None
        primaries = [packet for packet in packets if packet.tag in (pk.TAG_SECRET_KEY, pk.TAG_PUBLIC_KEY)]
        if len(primaries) != 1:
            raise KeyImportError(
                f"the input contains {len(primaries)} keys; import exactly one secret key"
            )
        if primaries[0].tag != pk.TAG_SECRET_KEY:
            raise KeyImportError(
                "the input is a public key; export the secret key "
                "(`gpg --armor --export-secret-keys FINGERPRINT`)"
            )
        try:
            tsk = pysequoia.Tsk.from_bytes(data)
        except Exception:  # pysequoia raises plain Exception; its text may quote key data
            raise KeyImportError("the secret key could not be read") from None
        fingerprint = tsk.extract_certificate().fingerprint
        if _has_secret_stub(data):
            raise KeyImportError(
                f"the key {fingerprint.upper()} lacks part of its secret material (exported with "
                "`gpg --export-secret-subkeys`, or kept on a smartcard); export the whole "
                f"key with `gpg --armor --export-secret-keys {fingerprint.upper()}`"
            )
        algorithm, protected, warnings = _secret_summary(data)
        if protected and passphrase is None:
            entry = {
                "protected": True,
                "passphrase_env": passphrase_env,
                "passphrase_file": passphrase_file,
                "fingerprint": fingerprint,
            }
            passphrase = self._passphrase(entry)
        try:
            if role is None:
                tsk.signer(passphrase)
            if not decryption_keys_of(tsk, passphrase):
                raise KeyImportError(
                    f"the key {fingerprint.upper()} has no usable encryption subkey"
                )
        except KeyImportError:
            raise
        except Exception:  # pysequoia raises plain Exception
            raise KeyImportError(
                f"the key {fingerprint.upper()} cannot be unlocked or has no valid signing key; "
                "check the passphrase"
            ) from None
        for warning in warnings:
            logger.warning("imported key %s: %s", fingerprint, warning)
        self._store(
            bytes(data),
            role=role,
            make_current=make_current and role is None,
            passphrase_env=passphrase_env if protected else None,
            passphrase_file=passphrase_file if protected else None,
            protected=protected,
        )
        return next(key for key in self.list() if key.fingerprint == fingerprint.lower())

    def export(self, fingerprint: str | None = None) -> str:
        """Return the armored public certificate of a key (the current provider key by default)."""
        return str(self.certificate(fingerprint))


def _role(role: str | None) -> str | None:
    if role is None:
        return None
    role = role.strip().lower()
    if "@" not in role:
        raise KeyStoreError(f"the role {role!r} is not an email address, e.g. support@example.com")
    return role
