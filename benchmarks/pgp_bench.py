"""Benchmark the OpenPGP core against python-gnupg (one gpg process per message).

Run: .venv/bin/python benchmarks/pgp_bench.py [--seconds S]

Measures, in one run on this machine:
- inspect_key() on an RSA-4096 key with four user IDs (GnuPG-generated),
  and on a key flooded with 5000 third-party certifications;
- encrypt+sign messages per second for 1 KB and 100 KB payloads to a
  Cv25519 recipient, signed by an Ed25519 provider key: sealmail
  (pysequoia in process) against python-gnupg, which runs gpg per message.
Prints a Markdown table; docs/benchmarks/pgp.md records a run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gnupg
import pysequoia

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sealmail.core.pgp.inspect import inspect_key  # noqa: E402
from sealmail.core.pgp.keystore import KeyStore  # noqa: E402
from sealmail.core.pgp.ops import encrypt_and_sign  # noqa: E402
from tests.peers.gnupg import GnuPG  # noqa: E402
from tests.pgp.corpus import _flood  # noqa: E402
from sealmail.core.pgp import packets as pk  # noqa: E402


ROUNDS = 5
FLOOD_CERTIFICATIONS = 5000


def timed_calls(function, seconds: float, minimum: int = 5) -> list[float]:
    """Call ``function`` repeatedly for about ``seconds`` and return each call's duration."""
    durations = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(durations) < minimum:
        start = time.perf_counter()
        function()
        durations.append(time.perf_counter() - start)
    return durations


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="time spent on each measurement, in seconds (default 3)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pgp-bench-"))
    customer = GnuPG(workdir / "customer")
    rsa = customer.generate("Bench RSA <rsa@bench.test>", "rsa4096", "2y", usage="cert,sign")
    customer.add_subkey(rsa, "rsa4096", "encr", "2y")
    for uid in ("Bench RSA <rsa-2@bench.test>", "Bench RSA (work) <rsa-3@bench.test>",
                "Bench RSA <rsa-4@bench.test>"):
        customer.run("--quick-add-uid", rsa, uid)
    rsa_key = customer.export(rsa)

    cv = customer.generate("bench@bench.test", "future-default", "2y")
    cv_key = customer.export(cv)
    certifier = customer.generate("certifier@bench.test", "ed25519", "2y", usage="cert,sign")
    customer.run("--default-key", certifier, "--quick-sign-key", cv)
    certified = pk.read_packets(customer.export(cv, armor=False))
    certification = next(
        p for p in certified
        if p.tag == pk.TAG_SIGNATURE and pk.parse_signature(p).issuer_fingerprint == certifier.lower()
    )
    plain = b"".join(p.serialize() for p in certified if p is not certification)
    flooded = _flood(plain, certification, FLOOD_CERTIFICATIONS)

    rows = []
    inspect_rsa = timed_calls(lambda: inspect_key(rsa_key), args.seconds)
    rows.append(("inspect_key, RSA-4096, 4 user IDs (median)", f"{statistics.median(inspect_rsa) * 1000:.2f} ms"))
    inspect_flood = timed_calls(lambda: inspect_key(flooded), args.seconds)
    rows.append((f"inspect_key, {FLOOD_CERTIFICATIONS} third-party certifications, "
                 f"{len(flooded) // 1024} KB (median)",
                 f"{statistics.median(inspect_flood) * 1000:.1f} ms"))

    store = KeyStore(workdir / "keys")
    provider = store.generate(["<billing@bench.test>"])
    signer = store.signer()
    recipient = pysequoia.Cert.from_bytes(cv_key)

    provider_home = workdir / "provider-gnupg"
    provider_gpg = GnuPG(provider_home)
    provider_gpg.import_key((store.directory / f"{provider.fingerprint}.key").read_bytes())
    provider_gpg.import_key(cv_key)
    python_gnupg = gnupg.GPG(gnupghome=str(provider_home))

    def gnupg_encrypt(payload: bytes) -> None:
        result = python_gnupg.encrypt(
            payload, cv, sign=provider.fingerprint, always_trust=True, armor=True
        )
        if not result.ok:
            raise RuntimeError(f"python-gnupg failed: {result.status} {result.stderr[-300:]}")

    for size in (1024, 100 * 1024):
        payload = os.urandom(size // 2).hex().encode()
        ours: list[float] = []
        raw: list[float] = []
        theirs: list[float] = []
        # Interleave short rounds so that load from other processes affects all three alike.
        for _ in range(ROUNDS):
            ours += timed_calls(
                lambda: encrypt_and_sign(payload, [recipient], signer), args.seconds / ROUNDS
            )
            raw += timed_calls(
                lambda: pysequoia.encrypt(payload, [recipient], signer=signer.signer),
                args.seconds / ROUNDS,
            )
            theirs += timed_calls(lambda: gnupg_encrypt(payload), args.seconds / ROUNDS)
        ours_rate = len(ours) / sum(ours)
        raw_rate = len(raw) / sum(raw)
        theirs_rate = len(theirs) / sum(theirs)
        label = f"{size // 1024} KB"
        rows.append((f"encrypt+sign {label}, sealmail encrypt_and_sign", f"{ours_rate:,.0f} msg/s"))
        rows.append((f"encrypt+sign {label}, pysequoia.encrypt alone", f"{raw_rate:,.0f} msg/s"))
        rows.append((f"encrypt+sign {label}, python-gnupg (gpg per message)", f"{theirs_rate:,.1f} msg/s"))
        rows.append((f"encrypt+sign {label}, sealmail / python-gnupg", f"{ours_rate / theirs_rate:,.1f}x"))

    gpg_version = subprocess.run(["gpg", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; Python {platform.python_version()}; "
          f"pysequoia {getattr(pysequoia, '__version__', '0.1.35')}; {gpg_version}; "
          f"python-gnupg {gnupg.__version__}")
    print()
    print("| measurement | result |")
    print("| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
