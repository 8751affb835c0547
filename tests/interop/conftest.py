"""The provider key and the recipient keys shared by the interop matrix."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pysequoia
import pytest

from sealmail.core.pgp.ops import ProviderSigner
from tests.interop import keys
from tests.interop.keys import RecipientKey


@dataclass
class Provider:
    """The provider's signing key, made as ``sealmail orgkey generate`` makes it."""

    signer: ProviderSigner
    certificate: pysequoia.Cert
    armored_certificate: bytes
    fingerprints: set[str]  # primary and subkey fingerprints, upper case


@pytest.fixture(scope="session")
def provider() -> Provider:
    tsk = pysequoia.Tsk.generate(
        user_ids=["Example Provider Billing <billing@provider.test>"],
        profile=pysequoia.Profile.RFC4880,
        cipher_suite=pysequoia.CipherSuite.Cv25519,
    )
    certificate = tsk.extract_certificate()
    armored = str(certificate).encode()
    return Provider(
        ProviderSigner.from_tsk(tsk),
        certificate,
        armored,
        keys.key_fingerprints(armored),
    )


@pytest.fixture(scope="session")
def recipient_keys(
    tmp_path_factory: pytest.TempPathFactory, provider: Provider
) -> dict[str, RecipientKey]:
    """Every recipient key kind of the matrix, keyed by kind."""
    root = tmp_path_factory.mktemp("recipients")
    # RSA-4096 generation dominates, so the kinds are made in parallel
    # (each in its own GnuPG home).
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(make, root) for make in keys.KIND_MAKERS.values()]
        made = [future.result() for future in futures]
    for key in made:
        if key.gnupg is not None:
            # GnuPG and notmuch (through GPGME) verify with this certificate.
            key.gnupg.import_key(provider.armored_certificate)
    return {key.kind: key for key in made}
