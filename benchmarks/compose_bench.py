"""Measure how many encrypted and signed PGP/MIME messages compose() makes per second.

Run from the repository root:

    .venv/bin/python benchmarks/compose_bench.py [--seconds 3] [--rounds 5]
        [--write docs/benchmarks/compose.md]

The process is pinned to one CPU core and uses the allocator settings of
``sealmail worker`` (sealmail.core.allocator). Each workload runs for ``--seconds``
per round, the workloads take turns for ``--rounds`` rounds, and the median
round is reported, so a short burst of load from other processes moves
every column alike. Three ways to make the same message are measured in
the same run:

* ``compose``: sealmail's composer (pysequoia, both MIME layers written
  as bytes);
* ``encrypt only``: pysequoia encrypting and signing bytes of the same size
  with no MIME at all, the ceiling for any composer built on pysequoia;
* ``python-gnupg``: the email package for both MIME layers and one gpg
  process per message through python-gnupg, the usual Python approach.
"""

from __future__ import annotations

import argparse
import email.policy
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import gnupg
import pysequoia

from sealmail.core.allocator import keep_freed_memory
from sealmail.core.mime import compose as compose_module
from sealmail.core.mime.compose import compose
from sealmail.core.mime.message import (
    Attachment,
    ComposedMessage,
    Format,
    OutgoingMessage,
)
from sealmail.core.pgp.ops import ProviderSigner

SENDER = "Example Provider <billing@provider.test>"
NOTIFICATION_TEXT = (
    "Hello,\n\nyour line DSL-4711 at Musterstraße 5 is up again since 15:58.\n"
    "The interruption lasted 12 minutes. We are sorry for the inconvenience.\n\n"
) * 6
NOTIFICATION_TEXT = NOTIFICATION_TEXT[:1024]  # 1 KB of text
PDF_SIZE = 100 * 1024


def notification(index: int) -> OutgoingMessage:
    return OutgoingMessage(
        sender=SENDER,
        to=f"Jürgen Müller {index} <customer{index}@customer.test>",
        subject="Your line is up again",
        text=NOTIFICATION_TEXT,
    )


def invoice(index: int, pdf: bytes) -> OutgoingMessage:
    return OutgoingMessage(
        sender=SENDER,
        to=f"Jürgen Müller {index} <customer{index}@customer.test>",
        subject="Your invoice for December",
        text="Dear customer,\n\nplease find your invoice attached.\n",
        attachments=(Attachment(f"invoice-{index}.pdf", "application/pdf", pdf),),
    )


def gnupg_compose(
    gpg: gnupg.GPG, message: OutgoingMessage, recipient: str, signer: str
) -> bytes:
    """Compose with the email package for both layers and gpg per message."""
    policy = email.policy.SMTP
    inner = EmailMessage(policy=policy)
    inner["From"] = message.sender
    inner["To"] = message.to
    inner["Subject"] = message.subject
    inner.set_content(message.text or "", cte="quoted-printable")
    for attachment in message.attachments:
        maintype, subtype = attachment.content_type.split("/")
        inner.add_attachment(
            attachment.data, maintype, subtype, filename=attachment.filename
        )

    result = gpg.encrypt(
        inner.as_bytes(policy=policy),
        recipient,
        sign=signer,
        always_trust=True,
        armor=True,
    )
    if not result.ok:
        raise RuntimeError(f"gpg failed: {result.status} {result.stderr}")

    outer = EmailMessage(policy=policy)
    outer["From"] = message.sender
    outer["To"] = message.to
    outer["Subject"] = "..."
    outer.set_type("multipart/encrypted")
    outer.set_param("protocol", "application/pgp-encrypted")
    control = EmailMessage(policy=policy)
    control.set_content(b"Version: 1\n", "application", "pgp-encrypted", cte="7bit")
    payload = EmailMessage(policy=policy)
    payload.set_content(
        str(result).encode("ascii"),
        "application",
        "octet-stream",
        cte="7bit",
        disposition="inline",
        filename="encrypted.asc",
    )
    outer.attach(control)
    outer.attach(payload)
    return outer.as_bytes(policy=policy)


@dataclass
class Rates:
    """Calls per second of one workload, one value per round."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def _cpu_seconds() -> float:
    """Return the CPU time of this process and of the children it waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def measure(work: Callable[[int], object], seconds: float, rates: Rates) -> None:
    """Run ``work`` for about ``seconds`` and record its wall and CPU-time rates."""
    count = 0
    start = time.perf_counter()
    cpu_start = _cpu_seconds()
    deadline = start + seconds
    while True:
        work(count)
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    rates.wall.append(count / (now - start))
    rates.cpu.append(count / max(_cpu_seconds() - cpu_start, 1e-9))


def cpu_breakdown(
    work: Callable[[int], object], count: int = 300
) -> tuple[float, float]:
    """Return the CPU microseconds per message inside and outside OpenPGP.

    "Inside" is the time in sealmail.core.pgp.ops.encrypt_and_sign, which
    runs pysequoia, checks the recipients and armors the result; the rest
    is MIME work and Python overhead.
    """
    inside = 0
    original = compose_module.encrypt_and_sign

    def timed(*args: object, **kwargs: object) -> bytes:
        nonlocal inside
        start = time.process_time_ns()
        try:
            return original(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            inside += time.process_time_ns() - start

    compose_module.encrypt_and_sign = timed  # type: ignore[assignment]
    try:
        start = time.process_time_ns()
        for index in range(count):
            work(index)
        total = time.process_time_ns() - start
    finally:
        compose_module.encrypt_and_sign = original  # type: ignore[assignment]
    return inside / count / 1000, (total - inside) / count / 1000


def machine_description(core: int) -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    gpg_version = subprocess.run(
        ["gpg", "--version"], capture_output=True, text=True
    ).stdout.splitlines()[0]
    return (
        f"{model}, {os.cpu_count()} logical CPUs, pinned to core {core}; "
        f"Python {platform.python_version()}, pysequoia "
        f"{importlib.metadata.version('pysequoia')}, {gpg_version}, python-gnupg "
        f"{gnupg.__version__}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="length of one round of one workload, in seconds",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds per workload; the median is reported",
    )
    parser.add_argument(
        "--write", type=Path, help="also write the results as Markdown to this file"
    )
    args = parser.parse_args()

    core = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {core})
    # The allocator settings of `sealmail worker`, which composes in production.
    keep_freed_memory()

    provider = pysequoia.Tsk.generate(
        user_ids=[SENDER],
        profile=pysequoia.Profile.RFC4880,
        cipher_suite=pysequoia.CipherSuite.Cv25519,
    )
    signer = ProviderSigner.from_tsk(provider)
    pdf = b"%PDF-1.4\n" + os.urandom(PDF_SIZE - 9)

    home = Path(tempfile.mkdtemp(prefix="sealmail-bench-gpg-"))
    try:
        gpg = gnupg.GPG(gnupghome=str(home))
        gpg.import_keys(str(provider))
        customer = _gnupg_customer_key(home)
        recipient = customer.extract_certificate()

        def sealmail_notification(i: int) -> object:
            return compose(
                notification(i), Format.PGPMIME, recipients=[recipient], signer=signer
            )

        def sealmail_invoice(i: int) -> object:
            return compose(
                invoice(i, pdf), Format.PGPMIME, recipients=[recipient], signer=signer
            )

        sizes = {
            "notification": _inner_size(sealmail_notification(0), customer),
            "invoice": _inner_size(sealmail_invoice(0), customer),
        }
        workloads: dict[str, dict[str, Callable[[int], object]]] = {
            "notification": {
                "compose": sealmail_notification,
                "encrypt only": _encrypt_only(sizes["notification"], recipient, signer),
                "python-gnupg": lambda i: gnupg_compose(
                    gpg, notification(i), recipient.fingerprint, signer.fingerprint
                ),
            },
            "invoice": {
                "compose": sealmail_invoice,
                "encrypt only": _encrypt_only(sizes["invoice"], recipient, signer),
                "python-gnupg": lambda i: gnupg_compose(
                    gpg, invoice(i, pdf), recipient.fingerprint, signer.fingerprint
                ),
            },
        }
        load_before = os.getloadavg()
        results: dict[str, dict[str, Rates]] = {
            name: {method: Rates() for method in methods}
            for name, methods in workloads.items()
        }
        for round_number in range(args.rounds):
            for name, methods in workloads.items():
                for method, work in methods.items():
                    measure(work, args.seconds, results[name][method])
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
        load_after = os.getloadavg()
        breakdown = {
            "notification": cpu_breakdown(sealmail_notification),
            "invoice": cpu_breakdown(sealmail_invoice),
        }
    finally:
        shutil.rmtree(home, ignore_errors=True)

    report = _report(
        results,
        sizes,
        breakdown,
        machine_description(core),
        load_before,
        load_after,
        args,
    )
    print(report)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(report)
    return 0


def _gnupg_customer_key(home: Path) -> pysequoia.Tsk:
    """Create the customer's Cv25519 key with GnuPG, as a GnuPG user would.

    A key made by GnuPG 2.2 advertises no SEIPDv2 support, so the message
    is plain SEIPDv1 to this one recipient.
    """
    uid = "Customer <customer@customer.test>"
    gpg = ["gpg", "--homedir", str(home), "--batch", "--passphrase", ""]
    gpg += ["--pinentry-mode", "loopback"]
    subprocess.run(
        [*gpg, "--quick-generate-key", uid, "future-default", "default", "2y"],
        check=True,
        capture_output=True,
    )
    exported = subprocess.run(
        [*gpg, "--export-secret-keys", uid], check=True, capture_output=True
    )
    return pysequoia.Tsk.from_bytes(exported.stdout)


def _inner_size(composed: ComposedMessage, customer: pysequoia.Tsk) -> int:
    """Return the length of the plaintext that compose() encrypted."""
    armored = composed.data.partition(b"-----BEGIN PGP MESSAGE-----")[2]
    armored = b"-----BEGIN PGP MESSAGE-----" + armored.partition(b"\r\n\r\n--")[0]
    return len(pysequoia.decrypt(armored, decryptor=customer.decryptor()).bytes)


def _encrypt_only(
    size: int, recipient: pysequoia.Cert, signer: ProviderSigner
) -> Callable[[int], object]:
    plaintext = os.urandom(size)
    return lambda i: pysequoia.encrypt(plaintext, [recipient], signer=signer.signer)


def _report(
    results: dict[str, dict[str, Rates]],
    sizes: dict[str, int],
    breakdown: dict[str, tuple[float, float]],
    machine: str,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    args: argparse.Namespace,
) -> str:
    targets = {"notification": 2500, "invoice": 400}
    labels = {
        "notification": "notification, 1 KB text",
        "invoice": f"invoice, {PDF_SIZE // 1024} KB PDF",
    }
    command = (
        f"benchmarks/compose_bench.py --seconds {args.seconds:g} --rounds {args.rounds}"
    )
    load = ", ".join(f"{value:.2f}" for value in load_before)
    load_end = ", ".join(f"{value:.2f}" for value in load_after)
    lines = [
        "# Composer benchmark",
        "",
        "Encrypted and signed PGP/MIME messages per second on one core: Cv25519",
        "recipient key made by GnuPG 2.2, Ed25519 provider signing key, recipient",
        "display names with non-ASCII characters. Each figure is the median of the",
        "rounds. Produced by:",
        "",
        f"    {command}",
        "",
        f"Machine: {machine}.",
        f"Load average (1, 5, 15 min) before: {load}; after: {load_end}.",
        "",
        "Each cell gives two rates. The first divides the messages by wall-clock",
        "time. The second divides them by the CPU time of this process and of the",
        "gpg processes it waited for, which estimates what an idle core reaches.",
        "For python-gnupg the CPU time leaves out gpg-agent, which makes the",
        "signatures, so that second figure is too high. The target column is",
        "checked against the CPU-time rate.",
        "",
        "| message | target | compose | meets target | encrypt only "
        "| python-gnupg | compose / python-gnupg | compose / encrypt only |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, methods in results.items():
        wall = {method: statistics.median(r.wall) for method, r in methods.items()}
        cpu = {method: statistics.median(r.cpu) for method, r in methods.items()}
        meets = "yes" if cpu["compose"] >= targets[name] else "no"
        lines.append(
            f"| {labels[name]} | {targets[name]:,} "
            f"| {wall['compose']:,.0f} / {cpu['compose']:,.0f} | {meets} "
            f"| {wall['encrypt only']:,.0f} / {cpu['encrypt only']:,.0f} "
            f"| {wall['python-gnupg']:,.1f} / {cpu['python-gnupg']:,.1f} "
            f"| {wall['compose'] / wall['python-gnupg']:,.0f}x "
            f"| {wall['compose'] / wall['encrypt only']:.2f} "
            f"/ {cpu['compose'] / cpu['encrypt only']:.2f} |"
        )
    lines += [
        "",
        "Where compose() spends its CPU time, per message, measured after the",
        "rounds (encryption means sealmail.core.pgp.ops.encrypt_and_sign:",
        "pysequoia, the recipient checks and the armor):",
        "",
        "| message | encryption | MIME and the rest |",
        "|---|---:|---:|",
    ]
    for name, (inside, outside) in breakdown.items():
        lines.append(f"| {labels[name]} | {inside:,.0f} µs | {outside:,.0f} µs |")
    lines += ["", "Per-round wall-clock rates (messages per second):", ""]
    for name, methods in results.items():
        for method, rates in methods.items():
            rounded = ", ".join(f"{value:,.0f}" for value in rates.wall)
            lines.append(f"- {labels[name]}, {method}: {rounded}")
    if load_before[0] > (os.cpu_count() or 1):
        lines += [
            "",
            "Other jobs shared this machine during the run (the load average exceeds",
            "the number of CPUs), so the wall-clock rates vary between rounds and",
            "are lower than on an idle core. The ratios vary less, because the",
            "workloads take turns within each round.",
        ]
    lines += [
        "",
        "`encrypt only` calls pysequoia.encrypt with the signer on random bytes as",
        f"long as the plaintext compose() encrypts ({sizes['notification']:,} and",
        f"{sizes['invoice']:,} bytes), with no MIME work and none of sealmail's",
        "recipient checks, so it bounds any composer built on pysequoia on this",
        "machine.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
