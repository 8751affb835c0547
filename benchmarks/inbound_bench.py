"""Measure inbound throughput: store, decrypt, verify and file messages per second.

Runs on a throwaway instance (SQLite in a temporary SEALMAIL_DATA_DIR) and
compares, in the same run:

* one by one, plain: each message stored and then parsed, filed in a
  ticket with its parts, before the next; plain messages, so the
  difference to the next line is the cost of OpenPGP;
* one by one, pgp-mime: messages signed and encrypted by a customer
  (PGP/MIME), each decrypted with the provider key and verified against
  the customer's confirmed key;
* batched: both kinds stored first, then the queued parse tasks run in
  order as a worker runs them after a burst, each parsing a batch;
* parse only: both kinds through the parser and the OpenPGP layer in one
  process without storing anything, which shows the share of the database.

Usage::

    .venv/bin/python benchmarks/inbound_bench.py [--messages N] [--workers W]
        [--database-url postgres://127.0.0.1:5432/postgres]
        [--queue-url redis://127.0.0.1:6379/14]

With ``--database-url`` the script creates a throwaway database next to the
one named in the URL and drops it at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def _setup(data_dir: Path, database_url: str = "", queue_url: str = "") -> None:
    os.environ["SEALMAIL_DATA_DIR"] = str(data_dir)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    if queue_url:
        os.environ["SEALMAIL_QUEUE_URL"] = queue_url
    os.environ.setdefault("SEALMAIL_FROM", "billing@provider.test")
    os.environ["SEALMAIL_INBOUND_ACKNOWLEDGE"] = "false"
    os.environ["SEALMAIL_QUEUE_IMMEDIATE"] = "false"
    os.environ["SEALMAIL_LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_SETTINGS_MODULE"] = "sealmail.project.settings"
    import django

    from sealmail.core.allocator import keep_freed_memory

    keep_freed_memory()  # as `sealmail worker` does

    django.setup()


def _prepare(count: int) -> tuple[list[bytes], list[bytes]]:
    """Create keys and a customer; return plain and PGP/MIME messages."""
    import pysequoia
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    from sealmail.contacts.models import Contact, ContactKey, Customer
    from sealmail.core.pgp.keystore import KeyStore

    call_command("migrate", verbosity=0)
    provider = KeyStore(settings.KEYS_DIR).generate(["support@provider.test"])
    customer_key = pysequoia.Tsk.generate(
        "Customer <customer@customer.test>", cipher_suite=pysequoia.CipherSuite.Cv25519
    )
    certificate = customer_key.extract_certificate()
    customer = Customer.objects.create(account_number="BENCH-1", name="Bench customer")
    contact = Contact.objects.create(
        customer=customer, address="customer@customer.test"
    )
    key = ContactKey.objects.create(
        contact=contact,
        fingerprint=certificate.fingerprint,
        certificate=bytes(certificate),
        version=4,
        algorithm="Ed25519/Cv25519",
        key_created=timezone.now(),
    )
    contact.encryption = Contact.Encryption.ACTIVE
    contact.active_key = key
    contact.save()
    time.sleep(1.1)  # signatures made in the key's creation second do not verify

    signer = customer_key.signer()
    plain, encrypted = [], []
    for number in range(count):
        head = (
            "From: Customer <customer@customer.test>\r\nTo: support@provider.test\r\n"
            f"Subject: Line {number} down\r\nMessage-ID: <bench-{number}@customer.test>\r\n"
            "MIME-Version: 1.0\r\n"
        ).encode()
        body = (
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
            + f"Line {number} has been down since 9:00. Gr\u00fc\u00dfe\r\n".encode()
            * 20
        )
        plain.append(head + body)
        ciphertext = pysequoia.encrypt(body, [provider], signer=signer)
        encrypted.append(
            head
            + b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; '
            b'boundary="b"\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\n'
            b"Version: 1\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n"
            + ciphertext.replace(b"\n", b"\r\n")
            + b"\r\n--b--\r\n"
        )
    return plain, encrypted


def _run_batch(messages: list[bytes], batched: bool = False) -> tuple[float, float]:
    """Store and process ``messages``; return wall and CPU seconds.

    One by one, each message is stored and then parsed with
    ``processing.process()``. Batched, all are stored first and then the
    queued parse tasks run in order, as one worker would run them after a
    burst: each task parses the waiting messages of its batch slot.
    """
    from django.db import connections

    from sealmail.inbound import processing
    from sealmail.inbound.smtp import store_raw
    from sealmail.inbound.tasks import parse_inbound

    def store(raw: bytes) -> int:
        return store_raw(
            "smtp", "bench", "customer@customer.test", ["support@provider.test"], raw
        )

    connections.close_all()
    start, cpu_start = time.perf_counter(), time.process_time()
    if batched:
        ids = [store(raw) for raw in messages]
        for message_id in ids:
            parse_inbound.call_local(message_id)
    else:
        for raw in messages:
            processing.process(store(raw))
    return time.perf_counter() - start, time.process_time() - cpu_start


def _parse_only(messages: list[bytes]) -> tuple[float, float]:
    """Decrypt, verify and parse ``messages`` without storing them; wall and CPU seconds."""
    from sealmail.core.mime.inbound import parse_message
    from sealmail.inbound.openpgp import CertificateLookup, openpgp_for

    start, cpu_start = time.perf_counter(), time.process_time()
    for raw in messages:
        parse_message(raw, openpgp_for(CertificateLookup("customer@customer.test")))
    return time.perf_counter() - start, time.process_time() - cpu_start


def _worker(
    data_dir: str,
    urls: tuple[str, str],
    messages: list[bytes],
    batched: bool,
    queue: multiprocessing.Queue,
) -> None:
    _setup(Path(data_dir), *urls)
    queue.put(_run_batch(messages, batched))


@dataclass
class Round:
    wall: float  # seconds from the first message stored to the last one filed
    cpu: float  # CPU seconds of the benchmark processes (database server excluded)
    count: int

    @property
    def rate(self) -> float:
        return self.count / self.wall

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.count * 1000


def _measure(
    data_dir: Path,
    urls: tuple[str, str],
    messages: list[bytes],
    workers: int,
    batched: bool = False,
) -> Round:
    """Process ``messages`` split across ``workers`` processes and time it."""
    if workers == 1:
        return Round(*_run_batch(messages, batched), len(messages))
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = context.Queue()
    chunks = [messages[index::workers] for index in range(workers)]
    processes = [
        context.Process(
            target=_worker, args=(str(data_dir), urls, chunk, batched, queue)
        )
        for chunk in chunks
    ]
    for process in processes:
        process.start()
    # Each worker times its own batch after start-up; the slowest sets the pace.
    timings = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    if any(process.exitcode != 0 for process in processes):
        raise RuntimeError("a benchmark worker process failed; see its output above")
    return Round(
        max(wall for wall, _ in timings), sum(cpu for _, cpu in timings), len(messages)
    )


def _throwaway_database(url: str) -> str:
    """Create an empty PostgreSQL database beside the one in ``url``; return its URL."""
    import psycopg

    name = f"sealmail_bench_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name


def _drop_database(admin_url: str, url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--messages", type=int, default=2000, help="messages per kind (default 2000)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per CPU, as sealmail worker runs)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per kind (default 3)"
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL URL to create a throwaway database beside",
    )
    parser.add_argument(
        "--queue-url", default="", help="Huey queue URL, e.g. redis://127.0.0.1:6379/14"
    )
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="sealmail-bench-"))
    database_url = _throwaway_database(args.database_url) if args.database_url else ""
    urls = (database_url, args.queue_url)
    _setup(data_dir, *urls)
    try:
        return _benchmark(args, data_dir, urls)
    finally:
        if database_url:
            _drop_database(args.database_url, database_url)
        shutil.rmtree(data_dir, ignore_errors=True)


def _benchmark(args: argparse.Namespace, data_dir: Path, urls: tuple[str, str]) -> int:
    plain, encrypted = _prepare(args.messages)
    _run_batch(plain[:50])  # warm up imports and the database file

    from sealmail.inbound.models import InboundMessage

    results: dict[str, list[Round]] = {
        "one by one, plain": [],
        "one by one, pgp-mime": [],
        "batched, plain": [],
        "batched, pgp-mime": [],
        "parse only, plain": [],
        "parse only, pgp-mime": [],
    }
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        # One message at a time, stored and then parsed: the baseline path.
        results["one by one, plain"].append(
            _measure(data_dir, urls, plain, args.workers)
        )
        results["one by one, pgp-mime"].append(
            _measure(data_dir, urls, encrypted, args.workers)
        )
        # All stored first, then the queued parse tasks, which parse in batches.
        results["batched, plain"].append(
            _measure(data_dir, urls, plain, args.workers, batched=True)
        )
        results["batched, pgp-mime"].append(
            _measure(data_dir, urls, encrypted, args.workers, batched=True)
        )
        # One process, no storage: the parser and OpenPGP share of the cost.
        results["parse only, plain"].append(Round(*_parse_only(plain), len(plain)))
        results["parse only, pgp-mime"].append(
            Round(*_parse_only(encrypted), len(encrypted))
        )

    signed = InboundMessage.objects.filter(
        signed_by_customer=True, encryption="full"
    ).count()
    expected = 2 * args.rounds * args.messages  # one by one and batched
    from django.conf import settings

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[1]}, "
        f"queue {type(settings.HUEY).__name__}, workers={args.workers}, "
        f"messages={args.messages}, rounds={args.rounds}"
    )
    print(
        f"load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    for name, rounds in results.items():
        rates = [measured.rate for measured in rounds]
        cpu = statistics.median(measured.cpu_ms for measured in rounds)
        print(
            f"{name:28s} median {statistics.median(rates):6.0f} msg/s "
            f"(min {min(rates):.0f}, max {max(rates):.0f}), {cpu:.2f} ms CPU per message"
        )
    print(f"encrypted messages verified as signed by the customer: {signed}/{expected}")
    return 0 if signed == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
