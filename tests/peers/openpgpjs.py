"""OpenPGP.js under node (the engine of Mailvelope and Proton) as the customer.

The pinned npm package lives in tests/peers/node; ``make test`` installs it
with ``npm ci``. node/peer.mjs documents the request format.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from tests.peers.results import Decryption, Verification
from tests.support import missing, require_tool

NODE_DIR = Path(__file__).parent / "node"


class OpenPgpJs:
    """Keep one private key and one verification key, as a webmail client does."""

    def __init__(self) -> None:
        self.node = require_tool("node", "nodejs")
        if not (NODE_DIR / "node_modules" / "openpgp").is_dir():
            missing(
                "the openpgp npm package",
                f"run 'npm ci' in {NODE_DIR} (make test does)",
            )
        self.private_key: str | None = None
        self.verification_key: str | None = None

    def add_secret_key(self, armored: bytes) -> None:
        self.private_key = armored.decode("ascii")

    def add_certificate(self, armored: bytes) -> None:
        self.verification_key = armored.decode("ascii")

    def _call(self, request: dict[str, object]) -> dict[str, object]:
        proc = subprocess.run(
            [self.node, str(NODE_DIR / "peer.mjs")],
            input=json.dumps(request).encode(),
            capture_output=True,
            timeout=60,
            cwd=NODE_DIR,
        )
        if proc.returncode != 0:
            raise AssertionError(proc.stderr.decode("utf-8", "replace"))
        return json.loads(proc.stdout)

    def decrypt(self, ciphertext: bytes) -> Decryption:
        armored = ciphertext.lstrip().startswith(b"-----BEGIN PGP")
        result = self._call(
            {
                "op": "decrypt",
                "message": ciphertext.decode("ascii")
                if armored
                else base64.b64encode(ciphertext).decode(),
                "binary": not armored,
                "privateKey": self.private_key,
                "verificationKey": self.verification_key,
            }
        )
        return Decryption(
            base64.b64decode(result["data"]),  # type: ignore[arg-type]
            [_verification(item) for item in result["signatures"]],  # type: ignore[union-attr]
        )

    def verify_detached(self, data: bytes, signature: bytes) -> Verification:
        result = self._call(
            {
                "op": "verify",
                "data": base64.b64encode(data).decode(),
                "signature": signature.decode("ascii"),
                "verificationKey": self.verification_key,
            }
        )
        signatures = [_verification(item) for item in result["signatures"]]  # type: ignore[union-attr]
        return signatures[0] if signatures else Verification(False, "no signature")


def _verification(item: dict[str, object]) -> Verification:
    hash_name = item.get("hash")
    return Verification(
        bool(item["valid"]),
        json.dumps(item),
        hash_name.upper() if isinstance(hash_name, str) else None,
    )


class OpenPgpJsSender(OpenPgpJs):
    """A customer who writes with OpenPGP.js and a Curve25519 key it generated."""

    def __init__(self, name: str, address: str) -> None:
        super().__init__()
        keys = self._call({"op": "generate", "userID": {"name": name, "email": address}})
        self.private_key = str(keys["privateKey"])
        self.public_key = str(keys["publicKey"])

    def certificate(self) -> bytes:
        return self.public_key.encode("ascii")

    def encrypt(self, data: bytes, recipient: bytes, *, sign: bool = True) -> bytes:
        """Return an armored message to the ``recipient`` certificate."""
        result = self._call(
            {
                "op": "encrypt",
                "data": base64.b64encode(data).decode(),
                "encryptionKey": recipient.decode("ascii"),
                "signingKey": self.private_key if sign else None,
            }
        )
        return str(result["message"]).encode("ascii")

    def sign_detached(self, data: bytes) -> bytes:
        result = self._call(
            {
                "op": "sign",
                "data": base64.b64encode(data).decode(),
                "signingKey": self.private_key,
                "cleartext": False,
            }
        )
        return str(result["signature"]).encode("ascii")

    def clearsign(self, data: bytes) -> bytes:
        result = self._call(
            {
                "op": "sign",
                "data": base64.b64encode(data).decode(),
                "signingKey": self.private_key,
                "cleartext": True,
            }
        )
        return str(result["signature"]).encode("utf-8")
