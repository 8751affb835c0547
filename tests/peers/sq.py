"""Sequoia's ``sq`` (Debian 12: sq 0.27) as the customer's side.

sq 0.27 is built on sequoia-openpgp 1.12, which cannot read v6 (RFC 9580)
keys or messages; tests needing v6 use OpenPGP.js instead.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.peers.results import Decryption, Verification
from tests.support import require_tool


class Sq:
    """Run sq with explicit key files; sq 0.27 keeps no keyring of its own."""

    def __init__(self, home: Path) -> None:
        self.binary = require_tool("sq", "sq")
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.secret_keys: list[Path] = []
        self.certificates: list[Path] = []

    def add_secret_key(self, armored: bytes) -> None:
        path = self.home / f"secret-{len(self.secret_keys)}.asc"
        path.write_bytes(armored)
        self.secret_keys.append(path)

    def add_certificate(self, armored: bytes) -> None:
        path = self.home / f"cert-{len(self.certificates)}.asc"
        path.write_bytes(armored)
        self.certificates.append(path)

    def _run(self, args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [self.binary, *args],
            input=data,
            capture_output=True,
            timeout=60,
            env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"},
        )

    def decrypt(self, ciphertext: bytes) -> Decryption:
        args = ["decrypt"]
        for path in self.secret_keys:
            args += ["--recipient-key", str(path)]
        for path in self.certificates:
            args += ["--signer-cert", str(path)]
        proc = self._run(args, ciphertext)
        stderr = proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0 and not proc.stdout:
            raise AssertionError(f"sq decrypt failed ({proc.returncode}):\n{stderr}")
        # With --signer-cert, sq exits non-zero unless a signature verified.
        valid = proc.returncode == 0 and "Good signature" in stderr
        return Decryption(proc.stdout, [Verification(valid, stderr)])

    def verify_detached(self, data: bytes, signature: bytes) -> Verification:
        sig_path = self.home / "detached.asc"
        sig_path.write_bytes(signature)
        args = ["verify", "--detached", str(sig_path)]
        for path in self.certificates:
            args += ["--signer-cert", str(path)]
        proc = self._run(args, data)
        stderr = proc.stderr.decode("utf-8", "replace")
        return Verification(proc.returncode == 0 and "Good signature" in stderr, stderr)
