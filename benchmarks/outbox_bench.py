"""Measure bulk sending: one API call for N recipients until a relay accepted all.

Each configuration runs a fresh sealmail instance in subprocesses.
``sealmail web`` (gunicorn) receives one ``POST /api/v1/messages`` naming N
customers. ``sealmail worker`` with one or more consumer processes composes the messages
(encrypted and signed, PGP/MIME) and deliver them to an aiosmtpd relay with
STARTTLS on 127.0.0.1, which counts what it accepted. By default the relay
buffers the replies to a pipelined group and reads message content in
blocks, as Postfix does (``--relay aiosmtpd-buffered``); ``--relay aiosmtpd``
runs stock aiosmtpd, which does neither. The clock runs from just before the POST
until the relay accepted the N-th message. Every contact has an active
Cv25519 key of its own, checked when it was stored as intake does, so
no in-memory cache of certificates helps. The message is
the same short text for everyone, except in the ``default-template``
configuration, which renders the line status template per recipient.

With ``--relay smtp-sink``, Postfix's smtp-sink (written in C, without
TLS) takes the messages instead, and the clock stops when the outbox has
marked the N-th message sent, which it does only after the relay accepted
it. The check that every message went out encrypted then reads the stored
bytes, which are the bytes that were sent.

The baseline, in the same run, is the composer alone: N messages composed in
one thread of this process with no database, queue or SMTP, with the same
stored certificate checks.

Usage::

    .venv/bin/python benchmarks/outbox_bench.py [--count 10000]
        [--configs default,pg-redis-1,pg-redis-2]
        [--relay aiosmtpd-buffered|aiosmtpd|smtp-sink]
        [--postgres postgres://127.0.0.1:5432/postgres]
        [--redis redis://127.0.0.1:6379/12]

The PostgreSQL URL names a server and a database to connect to for creating
and dropping a benchmark database. The Redis database must be empty at the
start, because other programs' tasks in it would reach the benchmark's
workers; it is flushed after each configuration. Both must be on loopback.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
# `sealmail worker` runs one consumer process per CPU by default.
DEFAULT_PROCESSES = os.cpu_count() or 1
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the relay, in its own process ------------------------------------------


def buffered_smtp_class():
    """Return an aiosmtpd server class that reads and replies as Postfix does.

    Stock aiosmtpd 1.4.6 reads a message's content line by line in Python
    and writes each reply on its own, one TLS record and one system call
    per reply. Postfix, as RFC 2920 section 3.2 recommends, keeps the
    replies to a pipelined group until it has read the whole group, and
    reads message content in blocks. This class does both, so the
    benchmark's relay spends its CPU per message as a production relay
    does. It replies to every command as stock aiosmtpd does.
    """
    from aiosmtpd.smtp import SMTP

    class BufferedSMTP(SMTP):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._held: list[bytes] = []

        async def push(self, status) -> None:
            if isinstance(status, str):
                status = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
            self._held.append(status + b"\r\n")
            # Reply at once unless more pipelined input is already waiting.
            if not self._reader._buffer:  # noqa: SLF001 - asyncio keeps no public view
                await self._flush()

        async def _flush(self) -> None:
            if self._held:
                self._writer.write(b"".join(self._held))
                self._held.clear()
                await self._writer.drain()

        async def smtp_DATA(self, arg: str) -> None:
            if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
                return
            if not self.envelope.rcpt_tos:
                await self.push("503 Error: need RCPT command")
                return
            if arg:
                await self.push("501 Syntax: DATA")
                return
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._flush()
            first = await self._reader.readuntil(b"\r\n")
            if first == b".\r\n":
                content = b""
            else:
                self._reader._limit = max(self._reader._limit, 64 * 1024 * 1024)  # noqa: SLF001
                rest = await self._reader.readuntil(b"\r\n.\r\n")
                content = (first + rest[:-3]).replace(b"\r\n.", b"\r\n")
                if content.startswith(b"."):
                    content = content[1:]
            self.envelope.content = self.envelope.original_content = content
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push(status)

    return BufferedSMTP


def buffered_controller(handler, **kwargs):
    """Return an aiosmtpd controller whose connections use the buffered class."""
    from aiosmtpd.controller import Controller

    server_class = buffered_smtp_class()

    class BufferedController(Controller):
        def factory(self):
            return server_class(self.handler, **self.SMTP_kwargs)

    return BufferedController(handler, **kwargs)


def run_relay(
    port: int,
    certfile: str,
    keyfile: str,
    target: int,
    accepted,
    encrypted,
    done,
    done_at,
    buffered: bool = False,
    first_at=None,
) -> None:
    from aiosmtpd.controller import Controller

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            # aiosmtpd handles pipelined commands in order but does not say
            # so; relays such as Postfix and Exim announce PIPELINING.
            session.host_name = hostname
            responses.insert(-1, "250-PIPELINING")
            return responses

        async def handle_DATA(self, server, session, envelope):
            head = envelope.original_content[:4096]
            with accepted.get_lock():
                accepted.value += 1
                if b"multipart/encrypted" in head:
                    encrypted.value += 1
                if accepted.value == 1:
                    first_at.value = time.monotonic()
                if accepted.value == target:
                    done_at.value = time.monotonic()
                    done.set()
            return "250 2.0.0 Ok"

    controller = (buffered_controller if buffered else Controller)(
        Handler(), hostname="127.0.0.1", port=port, tls_context=context
    )
    controller.start()
    while True:  # until the benchmark terminates this process
        time.sleep(3600)


def start_smtp_sink(port: int) -> subprocess.Popen[bytes]:
    """Start Postfix's smtp-sink on 127.0.0.1:``port``; it accepts every message.

    smtp-sink is written in C and announces PIPELINING but not STARTTLS,
    so sealmail sends to it without TLS (opportunistic mode).
    """
    return subprocess.Popen(
        ["smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def count_sent(
    database_url: str | None, data_dir: Path, *, encrypted: bool = False
) -> int:
    """Return how many rows the instance's outbox marked sent.

    With ``encrypted``, count only those whose stored bytes, the bytes that
    went to the relay, are a PGP/MIME encrypted message.
    """
    sql = "SELECT COUNT(*) FROM outbox_outboxmessage WHERE status = 'sent'"
    if database_url:
        import psycopg

        if encrypted:
            sql += (
                " AND position(convert_to('multipart/encrypted', 'UTF8') in composed) > 0"
                " AND position(convert_to('-----BEGIN PGP MESSAGE-----', 'UTF8') in composed) > 0"
            )
        with psycopg.connect(database_url) as connection:
            return int(connection.execute(sql).fetchone()[0])
    import sqlite3

    if encrypted:
        sql += (
            " AND instr(composed, CAST('multipart/encrypted' AS BLOB)) > 0"
            " AND instr(composed, CAST('-----BEGIN PGP MESSAGE-----' AS BLOB)) > 0"
        )
    with sqlite3.connect(data_dir / "sealmail.sqlite3", timeout=30) as connection:
        return int(connection.execute(sql).fetchone()[0])


def wait_until_sent(
    count: int, database_url: str | None, data_dir: Path, timeout: float = 600
) -> float | None:
    """Poll the outbox until ``count`` rows are sent; return the monotonic time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count_sent(database_url, data_dir) >= count:
            return time.monotonic()
        time.sleep(0.02)
    return None


# --- instance setup, run inside the instance's environment -------------------


def generate_certificates(count: int, path: Path) -> None:
    """Write ``count`` new Cv25519 public certificates to ``path``, concatenated."""
    import pysequoia

    with path.open("wb") as handle:
        for n in range(count):
            tsk = pysequoia.Tsk.generate(
                user_ids=[f"Customer {n} <c{n}@customer.test>"],
                cipher_suite=pysequoia.CipherSuite.Cv25519,
            )
            handle.write(bytes(tsk.extract_certificate()))


def setup_instance(count: int, certificates: str) -> None:
    """Create ``count`` customers with one encrypted contact each (subprocess)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sealmail.project.settings")
    import django

    django.setup()
    from datetime import datetime

    import pysequoia

    from sealmail.contacts.models import Contact, ContactKey, Customer

    pool = pysequoia.Cert.split_bytes(Path(certificates).read_bytes())
    assert len(pool) >= count, "fewer certificates than customers"
    customers = Customer.objects.bulk_create(
        (
            Customer(account_number=f"K-{n:06d}", name=f"Customer {n}")
            for n in range(count)
        ),
        batch_size=1000,
    )
    contacts = Contact.objects.bulk_create(
        (
            Contact(customer=customer, address=f"c{n}@customer.test")
            for n, customer in enumerate(customers)
        ),
        batch_size=1000,
    )
    now = datetime.now(UTC)
    keys = []
    for n, contact in enumerate(contacts):
        key = ContactKey(
            contact=contact,
            fingerprint=pool[n].fingerprint.lower(),
            certificate=bytes(pool[n]),
            version=4,
            algorithm="ed25519/cv25519",
            user_ids=[str(uid) for uid in pool[n].user_ids],
            key_created=now,
            usable_until=pool[n].expiration,
        )
        # Intake checks each key when the customer registers it.
        key.refresh_send_check()
        keys.append(key)
    keys = ContactKey.objects.bulk_create(keys, batch_size=1000)
    for contact, key in zip(contacts, keys, strict=True):
        contact.active_key = key
        contact.encryption = Contact.Encryption.ACTIVE
    Contact.objects.bulk_update(contacts, ["active_key", "encryption"], batch_size=1000)


def report_instance() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sealmail.project.settings")
    import django

    django.setup()
    from django.db.models import Count

    from sealmail.outbox.models import OutboxMessage

    counts = dict(OutboxMessage.objects.values_list("status").annotate(n=Count("id")))
    formats = dict(OutboxMessage.objects.values_list("format").annotate(n=Count("id")))
    print(json.dumps({"status": counts, "format": formats}))


# --- the baseline -----------------------------------------------------------


TEXT = (
    "Dear Customer,\n\nyour line FTTH-4711 has been down since 10:02.\n\n"
    "Cause: fibre cut. We expect it to work again by 14:00.\n\n"
    "Kind regards,\nYour network operations team\n"
)


def composer_baseline(count: int, certificates: Path) -> float:
    """Seconds to compose ``count`` encrypted, signed messages in one thread."""
    import pysequoia

    from sealmail.core.mime.compose import compose
    from sealmail.core.mime.message import Format, OutgoingMessage
    from sealmail.core.pgp.ops import ProviderSigner

    signer = ProviderSigner.from_tsk(
        pysequoia.Tsk.generate(
            user_ids=["<billing@provider.test>"],
            cipher_suite=pysequoia.CipherSuite.Cv25519,
        )
    )
    from sealmail.core.allocator import keep_freed_memory
    from sealmail.core.pgp.ops import recipient_check

    keep_freed_memory()  # as `sealmail worker` does

    pool = pysequoia.Cert.split_bytes(certificates.read_bytes())
    # As in the outbox, each certificate was checked when it was registered.
    for cert in pool[:count]:
        recipient_check(bytes(cert))
    started = time.perf_counter()
    for n in range(count):
        message = OutgoingMessage(
            sender="billing@provider.test",
            to=f"c{n}@customer.test",
            subject="Line FTTH-4711 is down",
            text=TEXT,
            message_id=f"<{uuid.uuid4().hex}@provider.test>",
        )
        compose(
            message,
            Format.PGPMIME,
            recipients=[pool[n]],
            signer=signer,
            autocrypt_certificate=signer.certificate,
        )
    return time.perf_counter() - started


# --- one configuration ------------------------------------------------------


@dataclass
class Result:
    name: str
    workers: int
    api_seconds: float
    total_seconds: float
    accepted: int
    encrypted: int
    peak_rss_mb: list[float]
    status: dict
    cpu: dict[str, float]  # CPU seconds of the consumers, the relay and gunicorn while the clock ran
    first_seconds: float = float("nan")  # until the relay accepted the first message


def wait_for_consumers(pid: int, count: int, timeout: float = 30) -> list[int]:
    """Return the process IDs of the Huey consumers of the worker ``pid``."""
    if count == 1:
        return [pid]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) == count:
            return [int(child) for child in children]
        time.sleep(0.1)
    raise SystemExit(f"the worker did not start {count} consumer processes")


def wait_until_idle(pids: list[int], timeout: float = 60) -> None:
    """Wait until ``pids`` together use under 2 % of a CPU for half a second."""
    deadline = time.monotonic() + timeout
    before = sum(cpu_seconds(pid) for pid in pids)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(cpu_seconds(pid) for pid in pids)
        if now - before < 0.01:
            return
        before = now
    raise SystemExit(f"processes {pids} were still busy after {timeout:.0f} s")


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User and system CPU time of a process, with its reaped children if asked."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15, cutime and cstime 16 and 17 (man 5 proc).
    ticks = sum(int(value) for value in fields[11:15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now."""
    tree = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            tree.extend(process_tree(int(child)))
    return tree


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process (peak resident set size) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    proc = subprocess.run(
        [sys.executable, *args],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def create_postgres_database(admin_url: str) -> str:
    import psycopg

    name = f"sealmail_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def drop_postgres_database(admin_url: str, url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_config(
    name: str,
    *,
    count: int,
    workers: int,
    database_url: str | None,
    queue_url: str | None,
    tmp: Path,
    certificates: Path,
    template: bool,
    relay_kind: str = "aiosmtpd-buffered",
) -> Result:
    import trustme

    instance = tmp / name
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = (
        instance / "relay.pem",
        instance / "relay.key",
        instance / "ca.pem",
    )
    instance.mkdir(parents=True)
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))

    relay_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        "SEALMAIL_DATA_DIR": str(instance / "data"),
        "SEALMAIL_FROM": "billing@provider.test",
        "SEALMAIL_SMTP_URL": f"smtp://127.0.0.1:{relay_port}?cafile={cafile}",
        "SEALMAIL_WEB_ADDR": f"127.0.0.1:{web_port}",
        "SEALMAIL_LOG_LEVEL": "WARNING",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("DATABASE_URL", None)
    env.pop("SEALMAIL_QUEUE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    if queue_url:
        env["SEALMAIL_QUEUE_URL"] = queue_url

    run(env, "-m", "sealmail", "migrate", "--no-input", "-v", "0")
    run(env, "-m", "sealmail", "orgkey", "generate", "--if-missing")
    token = run(env, "-m", "sealmail", "apitoken", "create", "bench").strip()
    run(env, str(Path(__file__).resolve()), "_setup", str(count), str(certificates))

    context = multiprocessing.get_context("spawn")
    accepted, encrypted = context.Value("i", 0), context.Value("i", 0)
    done, done_at = context.Event(), context.Value("d", 0.0)
    first_at = context.Value("d", 0.0)
    if relay_kind == "smtp-sink":
        relay = None
        sink = start_smtp_sink(relay_port)
        relay_pid = sink.pid
    else:
        sink = None
        relay = context.Process(
            target=run_relay,
            args=(
                relay_port,
                str(certfile),
                str(keyfile),
                count,
                accepted,
                encrypted,
                done,
                done_at,
                relay_kind == "aiosmtpd-buffered",
                first_at,
            ),
        )
        relay.start()
        relay_pid = relay.pid
    processes: list[subprocess.Popen[bytes]] = []
    try:
        web = subprocess.Popen(
            [sys.executable, "-m", "sealmail", "web", "--workers", "2"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(instance / "web.log").open("w"),
        )
        processes.append(web)
        worker = subprocess.Popen(
            [sys.executable, "-m", "sealmail", "worker", f"--processes={workers}"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(instance / "worker.log").open("w"),
        )
        processes.append(worker)
        wait_for_port(web_port)
        wait_for_port(relay_port)
        consumers = wait_for_consumers(worker.pid, workers)
        # The clock measures the running service, so every process must have
        # finished starting (importing Django, starting Huey) first.
        wait_until_idle([*consumers, *process_tree(web.pid), relay_pid])

        content = (
            {
                "category": "line_status",
                "context": {
                    "line_id": "FTTH-4711",
                    "state": "down",
                    "since": "10:02",
                    "reason": "fibre cut",
                    "estimate": "14:00",
                },
            }
            if template
            else {
                "category": "custom",
                "subject": "Line FTTH-4711 is down",
                "text": TEXT,
            }
        )
        # A billing run names its call with an idempotency key, so that it can
        # repeat a failed call safely. The key also lets sealmail store the
        # messages in chunks and start delivering with the first one.
        body = json.dumps(
            {
                "customers": [f"K-{n:06d}" for n in range(count)],
                "idempotency_key": f"bench-{name}",
                **content,
            }
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{web_port}/api/v1/messages",
            data=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
            },
        )
        web_pids = process_tree(web.pid)
        cpu_before = {
            "worker": sum(cpu_seconds(pid) for pid in consumers),
            "relay": cpu_seconds(relay_pid),
            "web": sum(cpu_seconds(pid) for pid in web_pids),
        }
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=120) as response:
            created = json.load(response)
        api_seconds = time.monotonic() - started
        assert len(created["messages"]) == count
        if sink is not None:
            finished = wait_until_sent(count, database_url, instance / "data")
            if finished is None:
                raise SystemExit(f"{name}: not all {count} messages sent in 600 s")
            total_seconds = finished - started
            first_seconds = float("nan")
            accepted.value = count_sent(database_url, instance / "data")
            encrypted.value = count_sent(
                database_url, instance / "data", encrypted=True
            )
        elif not done.wait(timeout=600):
            raise SystemExit(
                f"{name}: only {accepted.value} of {count} accepted in 600 s"
            )
        else:
            total_seconds = done_at.value - started
            first_seconds = first_at.value - started
        peaks = [peak_rss_mb(pid) for pid in consumers]
        cpu = {
            "worker": sum(cpu_seconds(pid) for pid in consumers),
            "relay": cpu_seconds(relay_pid),
            "web": sum(cpu_seconds(pid) for pid in web_pids),
        }
        cpu = {name: seconds - cpu_before[name] for name, seconds in cpu.items()}
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if relay is not None:
            relay.terminate()
            relay.join(timeout=10)
        if sink is not None:
            sink.terminate()
            sink.wait(timeout=10)
    status = json.loads(run(env, str(Path(__file__).resolve()), "_report"))
    return Result(
        name,
        workers,
        api_seconds,
        total_seconds,
        accepted.value,
        encrypted.value,
        peaks,
        status,
        cpu,
        first_seconds,
    )


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def check_loopback(url: str, option: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise SystemExit(f"{option} {url!r} is not on loopback; use 127.0.0.1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--count", type=int, default=10_000, help="recipients (default 10000)"
    )
    parser.add_argument(
        "--configs",
        default="default,default-template,pg-redis-1,pg-redis-2",
        help="comma-separated: default, default-template, pg-redis-1, pg-redis-2",
    )
    parser.add_argument(
        "--postgres",
        default="postgres://127.0.0.1:5432/postgres",
        help="PostgreSQL server to create the benchmark database on",
    )
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/12",
        help="an empty Redis database, flushed after use",
    )
    parser.add_argument(
        "--relay",
        choices=["aiosmtpd-buffered", "aiosmtpd", "smtp-sink"],
        default="aiosmtpd-buffered",
        help="the loopback relay: aiosmtpd with STARTTLS that replies to a "
        "pipelined group at once and reads content in blocks, as Postfix does "
        "(the default); stock aiosmtpd with STARTTLS; or Postfix's smtp-sink "
        "(C, no TLS; the clock stops when the outbox has marked every message "
        "sent)",
    )
    args = parser.parse_args()
    check_loopback(args.postgres, "--postgres")
    check_loopback(args.redis, "--redis")

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}, "
        f"relay {args.relay}"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="sealmail-bench-") as tmp:
        certificates = Path(tmp) / "certificates.bin"
        generate_certificates(args.count, certificates)
        baseline = composer_baseline(args.count, certificates)
        print(f"baseline: composer alone, {args.count} messages: {baseline:.2f} s")
        for name in args.configs.split(","):
            database_url = queue_url = None
            workers = DEFAULT_PROCESSES
            if name.startswith("pg-redis-"):
                import redis

                workers = int(name.rpartition("-")[2])
                queue_url = args.redis
                if redis.Redis.from_url(queue_url).dbsize():
                    raise SystemExit(
                        f"Redis database {queue_url} is not empty; another program "
                        "uses it, so pick an unused one with --redis"
                    )
                database_url = create_postgres_database(args.postgres)
            elif name not in {"default", "default-template"}:
                raise SystemExit(f"unknown configuration {name!r}")
            try:
                result = run_config(
                    name,
                    count=args.count,
                    workers=workers,
                    database_url=database_url,
                    queue_url=queue_url,
                    tmp=Path(tmp),
                    certificates=certificates,
                    template=name == "default-template",
                    relay_kind=args.relay,
                )
            finally:
                if database_url:
                    drop_postgres_database(args.postgres, database_url)
                if queue_url:
                    import redis

                    redis.Redis.from_url(queue_url).flushdb()
            results.append(result)
            print(
                f"{name}: {result.total_seconds:.2f} s total, API call "
                f"{result.api_seconds:.2f} s, first accepted after "
                f"{result.first_seconds:.2f} s, {result.accepted} accepted, "
                f"{result.encrypted} encrypted, worker peak RSS "
                f"{', '.join(f'{mb:.0f} MiB' for mb in result.peak_rss_mb)}, "
                f"outbox {result.status}, load average {os.getloadavg()[0]:.1f}, "
                "CPU ms per message: "
                + ", ".join(
                    f"{name} {seconds * 1000 / args.count:.2f}"
                    for name, seconds in result.cpu.items()
                )
            )

    print()
    print(
        "| configuration | worker processes | API call (s) | until all accepted (s) | messages/s | worker peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| baseline: composer alone, one thread | - | - | {baseline:.2f} | {args.count / baseline:.0f} | - |"
    )
    for result in results:
        print(
            f"| {result.name} | {result.workers} | {result.api_seconds:.2f} | "
            f"{result.total_seconds:.2f} | {args.count / result.total_seconds:.0f} | "
            f"{', '.join(f'{mb:.0f}' for mb in result.peak_rss_mb)} |"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_setup":
        setup_instance(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "_report":
        report_instance()
    else:
        main()
