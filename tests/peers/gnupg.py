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
        # The lowest S2K count keeps passphrase-protected test keys quick to unlock.
        (self.home / "gpg-agent.conf").write_text("allow-loopback-pinentry\ns2k-count 65536\n")

    def run(
        self,
        *args: str,
        input: bytes = b"",
        check: bool = True,
        faked_time: str | None = None,
        passphrase: str = "",
    ) -> GpgResult:
        """Run gpg; ``faked_time`` (e.g. ``20230101T000000``) sets --faked-system-time.

        The clock is frozen at that time ("!" suffix): a ticking fake clock
        restarts at the same second in every gpg call, so a key made in one
        call could look a second too new to the next one.
        """
        timing = ["--faked-system-time", faked_time.rstrip("!") + "!"] if faked_time else []
        command = [
            self.binary,
            "--homedir", str(self.home),
            "--batch", "--yes", "--no-tty",
            "--pinentry-mode", "loopback", "--passphrase", passphrase,
            "--trust-model", "always",
            "--status-fd", "2",
            *timing,
            *args,
        ]
        proc = subprocess.run(command, input=input, capture_output=True, timeout=120)
        stderr = proc.stderr.decode("utf-8", "replace")
        status = [line[9:] for line in stderr.splitlines() if line.startswith("[GNUPG:] ")]
        result = GpgResult(proc.returncode, proc.stdout, status, stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"gpg {' '.join(args)} failed ({proc.returncode}):\n{stderr}")
        return result

    def generate(
        self,
        uid: str,
        algo: str = "future-default",
        expire: str = "2y",
        *extra: str,
        usage: str = "default",
        faked_time: str | None = None,
    ) -> str:
        """Create a key and return its fingerprint (upper case)."""
        self.run(*extra, "--quick-generate-key", uid, algo, usage, expire, faked_time=faked_time)
        return self.fingerprint(uid)

    def add_subkey(
        self, fingerprint: str, algo: str = "cv25519", usage: str = "encr",
        expire: str = "never", *, faked_time: str | None = None,
    ) -> str:
        """Add a subkey and return its fingerprint (upper case)."""
        self.run("--quick-add-key", fingerprint, algo, usage, expire, faked_time=faked_time)
        return self.subkey_fingerprints(fingerprint)[-1]

    def subkey_fingerprints(self, fingerprint: str) -> list[str]:
        out = self.run("--with-colons", "--list-keys", fingerprint).stdout.decode()
        lines = out.splitlines()
        return [
            lines[i + 1].split(":")[9]
            for i, line in enumerate(lines)
            if line.startswith("sub:") and i + 1 < len(lines)
        ]

    def revoke_subkey(self, fingerprint: str, index: int = 1) -> None:
        """Revoke the ``index``-th subkey through ``--edit-key`` (GnuPG 2.2 has no quick command)."""
        commands = f"key {index}\nrevkey\ny\n0\n\ny\nsave\n".encode()
        self.run("--command-fd", "0", "--edit-key", fingerprint, input=commands)

    def revoke_key(self, fingerprint: str) -> None:
        """Import the revocation certificate GnuPG wrote when it generated the key."""
        path = self.home / "openpgp-revocs.d" / f"{fingerprint.upper()}.rev"
        text = path.read_text().replace(":-----BEGIN PGP", "-----BEGIN PGP")
        self.import_key(text.encode())

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


@dataclass
class GpgVerdict:
    """GnuPG's verdict on one certificate, from ``gpg --show-keys --with-colons``."""

    validity: str  # field 2 of the pub line: "-", "e" expired, "r" revoked, "i" invalid
    capabilities: str  # field 12: upper-case letters are usable capabilities of the whole key
    output: str

    @property
    def can_encrypt(self) -> bool:
        return self.validity not in {"e", "r", "i"} and "E" in self.capabilities


def show_keys(data: bytes, home: Path) -> GpgVerdict | None:
    """Return GnuPG's verdict on a public key, or None when GnuPG cannot read it."""
    gpg = GnuPG(home)
    key_file = home / "key.input"
    key_file.write_bytes(data)
    # Plain options: with --trust-model always and no trust database, GnuPG
    # 2.2 stops with a fatal error on expired and revoked keys.
    proc = subprocess.run(
        [gpg.binary, "--homedir", str(home), "--batch", "--no-tty",
         "--show-keys", "--with-colons", str(key_file)],
        capture_output=True, timeout=120,
    )
    result = GpgResult(proc.returncode, proc.stdout, [], proc.stderr.decode("utf-8", "replace"))
    out = result.stdout.decode("utf-8", "replace")
    pub = next((line for line in out.splitlines() if line.startswith("pub:")), None)
    if pub is None:
        return None
    fields = pub.split(":")
    return GpgVerdict(fields[1], fields[11], out)
