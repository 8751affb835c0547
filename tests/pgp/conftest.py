"""Session-wide OpenPGP fixtures: the key corpus and peer tools, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers.gnupg import GnuPG
from tests.peers.sq import Sq
from tests.pgp.corpus import CorpusKey, build_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CorpusKey]:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def gpg_home(tmp_path: Path) -> Path:
    return tmp_path / "gnupg-show"


@pytest.fixture
def sq(tmp_path: Path) -> Sq:
    return Sq(tmp_path / "sq")


@pytest.fixture(scope="session")
def customer(tmp_path_factory: pytest.TempPathFactory) -> tuple[GnuPG, str]:
    """A GnuPG customer with an Ed25519/Cv25519 key; returns the peer and its fingerprint."""
    gpg = GnuPG(tmp_path_factory.mktemp("customer") / "gnupg")
    return gpg, gpg.generate("customer@example.test", "future-default", "2y")
