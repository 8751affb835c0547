"""GnuPG 2.2 as the customer's side, in a throwaway home directory."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import require_tool


@dataclass
class GpgResult:
    returncode: int
    stdout: bytes
    status: list[str]  # --status-fd lines without the "[GNUPG:] " prefix
    stderr: str


class GnuPG:
    """Run gpg with its own home; each instance is one customer's keyring."""

    def __init__(self, home: Path) -> None:
        self.binary = require_tool("gpg", "gnupg")
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        (self.home / "gpg.conf").write_text("no-auto-key-locate\nno-auto-key-retrieve\n")
        (self.home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")

    def run(self, *args: str, input: bytes = b"", check: bool = True) -> GpgResult:
        command = [
            self.binary,
            "--homedir", str(self.home),
            "--batch", "--yes", "--no-tty",
            "--pinentry-mode", "loopback", "--passphrase", "",
            "--trust-model", "always",
            "--status-fd", "2",
            *args,
        ]
        proc = subprocess.run(command, input=input, capture_output=True, timeout=120)
        stderr = proc.stderr.decode("utf-8", "replace")
        status = [line[9:] for line in stderr.splitlines() if line.startswith("[GNUPG:] ")]
        result = GpgResult(proc.returncode, proc.stdout, status, stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"gpg {' '.join(args)} failed ({proc.returncode}):\n{stderr}")
        return result

    def generate(self, uid: str, algo: str = "future-default", expire: str = "2y", *extra: str) -> str:
        """Create a key and return its fingerprint (upper case)."""
        self.run(*extra, "--quick-generate-key", uid, algo, "default", expire)
        return self.fingerprint(uid)

    def fingerprint(self, uid: str) -> str:
        out = self.run("--with-colons", "--list-keys", uid).stdout.decode()
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))

    def export(self, uid: str, *, secret: bool = False, armor: bool = True) -> bytes:
        args = ["--export-secret-keys" if secret else "--export", uid]
        if armor:
            args.insert(0, "--armor")
        return self.run(*args).stdout

    def import_key(self, data: bytes) -> None:
        self.run("--import", input=data)

    def decrypt(self, data: bytes, check: bool = True) -> GpgResult:
        return self.run("--decrypt", input=data, check=check)

    def encrypt(self, data: bytes, recipient_fpr: str, *, sign_as: str | None = None, armor: bool = True) -> bytes:
        args = ["--encrypt", "--recipient", recipient_fpr]
        if sign_as:
            args += ["--sign", "--local-user", sign_as]
        if armor:
            args.insert(0, "--armor")
        return self.run(*args, input=data).stdout

    def verify_detached(self, data: bytes, signature: bytes, tmp: Path) -> GpgResult:
        sig_path = tmp / "signature.asc"
        sig_path.write_bytes(signature)
        return self.run("--verify", str(sig_path), "-", input=data, check=False)
