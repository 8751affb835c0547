"""Stateless OpenPGP (SOP) command lines as the customer's side.

One adapter drives the three SOP implementations Debian 12 ships:
``sqop`` (Sequoia 0.27), ``gosop`` (GopenPGP 2.5, the library behind
Proton's clients) and ``pgpainless-cli`` (PGPainless 1.3 on Bouncy
Castle). None of these versions reads v6 (RFC 9580) keys.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.peers.results import Decryption, Verification
from tests.support import require_tool

# command -> Debian package; each takes the same SOP subcommands.
IMPLEMENTATIONS = {"sqop": "sqop", "gosop": "gosop", "pgpainless-cli": "pgpainless-cli"}

# gosop 0.0.0 accepts only the older spelling of --verifications-out.
_VERIFICATIONS_OPTION = {"gosop": "--verify-out"}


class Sop:
    """One SOP implementation with key files kept in ``home``."""

    def __init__(self, command: str, home: Path) -> None:
        self.command = command
        self.binary = require_tool(command, IMPLEMENTATIONS[command])
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
            timeout=120,
            cwd=self.home,
            env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"},
        )

    def decrypt(self, ciphertext: bytes) -> Decryption:
        verifications = self.home / "verifications.txt"
        verifications.unlink(missing_ok=True)
        option = _VERIFICATIONS_OPTION.get(self.command, "--verifications-out")
        args = ["decrypt", f"{option}={verifications}"]
        args += [f"--verify-with={path}" for path in self.certificates]
        args += [str(path) for path in self.secret_keys]
        proc = self._run(args, ciphertext)
        stderr = proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise AssertionError(
                f"{self.command} decrypt failed ({proc.returncode}):\n{stderr}"
            )
        # Each line of the verifications file is one signature that verified.
        lines = verifications.read_text().splitlines() if verifications.exists() else []
        signatures = [Verification(True, line) for line in lines if line.strip()]
        if not signatures:
            signatures = [
                Verification(False, f"no verified signature; stderr:\n{stderr}")
            ]
        return Decryption(proc.stdout, signatures)

    def verify_detached(self, data: bytes, signature: bytes) -> Verification:
        sig_path = self.home / "detached.asc"
        sig_path.write_bytes(signature)
        args = ["verify", str(sig_path), *(str(path) for path in self.certificates)]
        proc = self._run(args, data)
        output = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        return Verification(proc.returncode == 0 and bool(proc.stdout.strip()), output)


class SopSender:
    """A customer who writes with one SOP implementation and a key it generated."""

    def __init__(self, command: str, home: Path, user_id: str) -> None:
        self.command = command
        self.binary = require_tool(command, IMPLEMENTATIONS[command])
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        # gosop 0.0.0 crashes on short relative file names, so every path
        # passed to a SOP tool is absolute.
        self.key = self.home / "sender-key.asc"
        self.cert = self.home / "sender-cert.asc"
        self.key.write_bytes(self._run(["generate-key", user_id]))
        self.cert.write_bytes(self._run(["extract-cert"], self.key.read_bytes()))

    def _run(self, args: list[str], data: bytes = b"") -> bytes:
        proc = subprocess.run(
            [self.binary, *args],
            input=data,
            capture_output=True,
            timeout=120,
            cwd=self.home,
            env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"},
        )
        if proc.returncode != 0:
            stderr = proc.stderr.decode("utf-8", "replace")
            raise AssertionError(f"{self.command} {args[0]} failed ({proc.returncode}):\n{stderr}")
        return proc.stdout

    def certificate(self) -> bytes:
        return self.cert.read_bytes()

    def encrypt(self, data: bytes, recipient: bytes, *, sign: bool = True) -> bytes:
        """Return an armored message to the ``recipient`` certificate."""
        recipient_path = self.home / "recipient-cert.asc"
        recipient_path.write_bytes(recipient)
        args = ["encrypt"]
        if sign:
            args.append(f"--sign-with={self.key}")
        return self._run([*args, str(recipient_path)], data)

    def sign_detached(self, data: bytes) -> bytes:
        return self._run(["sign", str(self.key)], data)

    def clearsign(self, data: bytes) -> bytes:
        return self._run(["inline-sign", "--as=clearsigned", str(self.key)], data)
