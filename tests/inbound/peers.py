"""The customer's OpenPGP implementations: GnuPG, sq, RNP, GopenPGP and OpenPGP.js.

Each peer owns one customer key in a throwaway directory and offers the same
few operations, so every message shape can be made by every implementation.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from tests.peers.gnupg import GnuPG
from tests.support import missing, require_tool


def _run(command: list[str], data: bytes = b"") -> bytes:
    proc = subprocess.run(command, input=data, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({proc.returncode}):\n"
            + proc.stderr.decode("utf-8", "replace")
        )
    return proc.stdout


class Peer:
    """One customer with one key, using one OpenPGP implementation."""

    name = ""
    can_clearsign = True

    def __init__(self, home: Path, address: str) -> None:
        self.home = home
        self.address = address
        home.mkdir(parents=True, exist_ok=True)

    def certificate(self) -> bytes:
        """Return the customer's public certificate, armored."""
        raise NotImplementedError

    def encrypt(self, data: bytes, recipient: bytes, *, sign: bool = True) -> bytes:
        """Return an armored message to the ``recipient`` certificate."""
        raise NotImplementedError

    def sign_detached(self, data: bytes) -> bytes:
        raise NotImplementedError

    def clearsign(self, data: bytes) -> bytes:
        raise NotImplementedError


class GnuPGPeer(Peer):
    name = "gnupg"

    def __init__(self, home: Path, address: str) -> None:
        super().__init__(home, address)
        self.gpg = GnuPG(home)
        self.fingerprint = self.gpg.generate(f"Customer <{address}>")
        self._imported: set[bytes] = set()

    def certificate(self) -> bytes:
        return self.gpg.export(self.address)

    def _recipient(self, recipient: bytes) -> str:
        if recipient not in self._imported:
            self.gpg.import_key(recipient)
            self._imported.add(recipient)
        out = self.gpg.run(
            "--with-colons", "--show-keys", input=recipient
        ).stdout.decode()
        return next(
            line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")
        )

    def encrypt(
        self,
        data: bytes,
        recipient: bytes,
        *,
        sign: bool = True,
        extra: tuple[str, ...] = (),
    ) -> bytes:
        args = ["--armor", "--encrypt", *extra]
        if "--hidden-recipient" not in extra:
            args += ["--recipient", self._recipient(recipient)]
        if sign:
            args += ["--sign", "--local-user", self.fingerprint]
        return self.gpg.run(*args, input=data).stdout

    def encrypt_hidden(self, data: bytes, recipient: bytes) -> bytes:
        fingerprint = self._recipient(recipient)
        return self.encrypt(data, recipient, extra=("--hidden-recipient", fingerprint))

    def sign_detached(self, data: bytes) -> bytes:
        args = ["--armor", "--detach-sign", "--local-user", self.fingerprint]
        return self.gpg.run(*args, input=data).stdout

    def clearsign(self, data: bytes) -> bytes:
        return self.gpg.run(
            "--clearsign", "--local-user", self.fingerprint, input=data
        ).stdout


class SequoiaPeer(Peer):
    name = "sq"

    def __init__(self, home: Path, address: str) -> None:
        super().__init__(home, address)
        self.sq = require_tool("sq", "sq")
        self.key = home / "customer-key.pgp"
        self.cert = home / "customer-cert.pgp"
        _run(
            [
                self.sq,
                "key",
                "generate",
                "--userid",
                f"Customer <{address}>",
                "--export",
                str(self.key),
            ]
        )
        _run([self.sq, "key", "extract-cert", str(self.key), "-o", str(self.cert)])

    def certificate(self) -> bytes:
        return self.cert.read_bytes()

    def encrypt(self, data: bytes, recipient: bytes, *, sign: bool = True) -> bytes:
        recipient_path = self.home / "recipient-cert.asc"
        recipient_path.write_bytes(recipient)
        command = [self.sq, "encrypt", "--recipient-cert", str(recipient_path)]
        if sign:
            command += ["--signer-key", str(self.key)]
        return _run(command, data)

    def sign_detached(self, data: bytes) -> bytes:
        return _run(
            [self.sq, "sign", "--detached", "--signer-key", str(self.key)], data
        )

    def clearsign(self, data: bytes) -> bytes:
        return _run(
            [self.sq, "sign", "--cleartext-signature", "--signer-key", str(self.key)],
            data,
        )


class RnpPeer(Peer):
    name = "rnp"

    def __init__(self, home: Path, address: str) -> None:
        super().__init__(home, address)
        self.rnp = require_tool("rnp", "rnp")
        self.rnpkeys = require_tool("rnpkeys", "rnp")
        self.keyring = home / "rnp-home"
        self.keyring.mkdir(mode=0o700, exist_ok=True)
        _run(
            [
                self.rnpkeys,
                "--homedir",
                str(self.keyring),
                "--generate-key",
                "--userid",
                f"Customer <{address}>",
                "--password",
                "",
            ]
        )
        self._imported: dict[bytes, str] = {}

    def _base(self) -> list[str]:
        return [
            self.rnp,
            "--homedir",
            str(self.keyring),
            "--password",
            "",
            "--output=-",
        ]

    def certificate(self) -> bytes:
        return _run(
            [self.rnpkeys, "--homedir", str(self.keyring), "--export-key", self.address]
        )

    def _recipient(self, recipient: bytes) -> str:
        if recipient not in self._imported:
            path = self.home / "recipient-cert.asc"
            path.write_bytes(recipient)
            _run([self.rnpkeys, "--homedir", str(self.keyring), "--import", str(path)])
            import pysequoia

            self._imported[recipient] = pysequoia.Cert.from_bytes(recipient).fingerprint
        return self._imported[recipient]

    def encrypt(self, data: bytes, recipient: bytes, *, sign: bool = True) -> bytes:
        command = [
            *self._base(),
            "--encrypt",
            "--armor",
            "-r",
            self._recipient(recipient),
        ]
        if sign:
            command += ["--sign", "-u", self.address]
        return _run(command, data)

    def sign_detached(self, data: bytes) -> bytes:
        return _run(
            [*self._base(), "--sign", "--detach", "--armor", "-u", self.address], data
        )

    def clearsign(self, data: bytes) -> bytes:
        return _run([*self._base(), "--clearsign", "-u", self.address], data)


class GopenPGPPeer(Peer):
    """GopenPGP (Proton) through its Stateless OpenPGP command line, gosop."""

    name = "gosop"
    can_clearsign = False

    def __init__(self, home: Path, address: str) -> None:
        super().__init__(home, address)
        self.gosop = require_tool("gosop", "gosop")
        # gosop 0.0.0 crashes on file names shorter than five characters,
        # so every path passed to it is absolute.
        self.key = home / "customer-key.asc"
        self.cert = home / "customer-cert.asc"
        self.key.write_bytes(
            _run([self.gosop, "generate-key", f"Customer <{address}>"])
        )
        self.cert.write_bytes(_run([self.gosop, "extract-cert"], self.key.read_bytes()))

    def certificate(self) -> bytes:
        return self.cert.read_bytes()

    def encrypt(self, data: bytes, recipient: bytes, *, sign: bool = True) -> bytes:
        recipient_path = self.home / "recipient-cert.asc"
        recipient_path.write_bytes(recipient)
        command = [self.gosop, "encrypt"]
        if sign:
            command += ["--sign-with", str(self.key)]
        return _run([*command, str(recipient_path)], data)

    def sign_detached(self, data: bytes) -> bytes:
        return _run([self.gosop, "sign", str(self.key)], data)


class OpenPgpJsPeer(Peer):
    """OpenPGP.js under node, the engine of Mailvelope and Proton's web mail."""

    name = "openpgpjs"

    def __init__(self, home: Path, address: str) -> None:
        super().__init__(home, address)
        self.node = require_tool("node", "nodejs")
        if not (NODE_PACKAGES / "node_modules" / "openpgp").is_dir():
            missing(
                "the openpgp npm package",
                f"run 'npm ci' in {NODE_PACKAGES} (make test does)",
            )
        keys = self._call({"op": "generate", "userID": f"Customer <{address}>"})
        self.private_key = keys["privateKey"]
        self.public_key = keys["publicKey"].encode()

    def _call(self, request: dict[str, str]) -> dict[str, str]:
        output = _run([self.node, str(SENDER_SCRIPT)], json.dumps(request).encode())
        return json.loads(output)

    def certificate(self) -> bytes:
        return self.public_key

    def encrypt(self, data: bytes, recipient: bytes, *, sign: bool = True) -> bytes:
        request = {
            "op": "encrypt",
            "data": base64.b64encode(data).decode(),
            "recipientKey": recipient.decode(),
        }
        if sign:
            request["signingKey"] = self.private_key
        return self._call(request)["message"].encode()

    def sign_detached(self, data: bytes) -> bytes:
        request = {
            "op": "sign",
            "data": base64.b64encode(data).decode(),
            "signingKey": self.private_key,
        }
        return self._call(request)["signature"].encode()

    def clearsign(self, data: bytes) -> bytes:
        request = {
            "op": "clearsign",
            "text": data.decode(),
            "signingKey": self.private_key,
        }
        return self._call(request)["message"].encode()


NODE_PACKAGES = Path(__file__).resolve().parent.parent / "peers" / "node"
SENDER_SCRIPT = Path(__file__).resolve().parent / "node" / "sender.mjs"

PEERS = [GnuPGPeer, SequoiaPeer, RnpPeer, GopenPGPPeer, OpenPgpJsPeer]
