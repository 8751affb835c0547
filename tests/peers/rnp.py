"""RNP (Debian 12: rnp 0.16, the OpenPGP engine of Thunderbird) as the customer."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.peers.results import Decryption, Verification
from tests.support import require_tool


class Rnp:
    """Run rnp and rnpkeys with their own home directory."""

    def __init__(self, home: Path) -> None:
        self.rnp = require_tool("rnp", "rnp")
        self.rnpkeys = require_tool("rnpkeys", "rnp")
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)

    def _run(
        self, binary: str, args: list[str], data: bytes = b""
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [binary, "--homedir", str(self.home), *args],
            input=data,
            capture_output=True,
            timeout=60,
        )

    def _import(self, armored: bytes) -> None:
        path = self.home / "import.asc"
        path.write_bytes(armored)
        proc = self._run(self.rnpkeys, ["--import", str(path)])
        if proc.returncode != 0:
            raise AssertionError(f"rnpkeys --import failed:\n{proc.stderr.decode()}")

    def add_secret_key(self, armored: bytes) -> None:
        self._import(armored)

    def add_certificate(self, armored: bytes) -> None:
        self._import(armored)

    def decrypt(self, ciphertext: bytes) -> Decryption:
        proc = self._run(
            self.rnp, ["--decrypt", "--password", "", "--output", "-"], ciphertext
        )
        stderr = proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0 and not proc.stdout:
            raise AssertionError(f"rnp --decrypt failed ({proc.returncode}):\n{stderr}")
        return Decryption(proc.stdout, _signatures(stderr, proc.returncode))

    def verify_detached(self, data: bytes, signature: bytes) -> Verification:
        data_path = self.home / "signed.bin"
        sig_path = self.home / "signed.bin.asc"
        data_path.write_bytes(data)
        sig_path.write_bytes(signature)
        proc = self._run(
            self.rnp, ["--verify", str(sig_path), "--source", str(data_path)]
        )
        stderr = proc.stderr.decode("utf-8", "replace")
        signatures = _signatures(stderr, proc.returncode)
        return signatures[0] if signatures else Verification(False, stderr)


def _signatures(stderr: str, returncode: int) -> list[Verification]:
    good = re.findall(r"^Good signature.*$", stderr, re.MULTILINE)
    bad = re.findall(
        r"^(?:BAD signature|Signature verification failure).*$", stderr, re.MULTILINE
    )
    results = [Verification(returncode == 0, line + "\n" + stderr) for line in good]
    results += [Verification(False, line + "\n" + stderr) for line in bad]
    if not results:
        results.append(Verification(False, stderr))
    return results
