"""Provider keys on disk: the signing key and the role addresses' decryption keys.

NOTE: minimal first version of the contract; the full store adds import,
rotation, passphrases and per-role keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import pysequoia

from sealmail.core.errors import KeyStoreError
from sealmail.core.pgp.ops import ProviderSigner


class KeyStore:
    """Secret keys in one directory (mode 0700), one armored file per key."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _key_files(self) -> list[Path]:
        return sorted(self.directory.glob("*.key"), key=lambda p: p.stat().st_mtime, reverse=True)

    def _load(self, path: Path) -> pysequoia.Tsk:
        try:
            return pysequoia.Tsk.from_file(str(path))
        except Exception as exc:
            raise KeyStoreError(f"cannot read the provider key {str(path)!r}: {exc}") from exc

    def is_empty(self) -> bool:
        return not self._key_files()

    def generate(self, user_ids: list[str]) -> pysequoia.Cert:
        tsk = pysequoia.Tsk.generate(
            user_ids=user_ids,
            profile=pysequoia.Profile.RFC4880,
            cipher_suite=pysequoia.CipherSuite.Cv25519,
        )
        cert = tsk.extract_certificate()
        path = self.directory / f"{cert.fingerprint}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(str(tsk))
        return cert

    def signer(self) -> ProviderSigner:
        files = self._key_files()
        if not files:
            raise KeyStoreError(
                f"no provider key in {str(self.directory)!r}; run `sealmail orgkey generate`"
            )
        return ProviderSigner.from_tsk(self._load(files[0]))

    def certificates(self) -> list[pysequoia.Cert]:
        return [self._load(path).extract_certificate() for path in self._key_files()]

    def decryptors(self) -> list[tuple[str, pysequoia.PyDecryptor]]:
        result = []
        for path in self._key_files():
            tsk = self._load(path)
            result.append((tsk.extract_certificate().fingerprint, tsk.decryptor()))
        return result
