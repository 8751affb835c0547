"""Two `sealmail worker` processes on a Redis queue deliver a bulk request once.

The instance runs in subprocesses with its own data directory. Its database
is PostgreSQL when the suite runs on PostgreSQL (a database created for this
test and dropped after it), else an SQLite file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from django.db import connection

from sealmail.outbox.tasks import BATCH_SIZE
from tests.outbox.smtp_server import LoopbackRelay

pytestmark = pytest.mark.db_backends

ROOT = Path(__file__).resolve().parents[2]
# Four tasks, so that each of the two workers gets at least one.
COUNT = 4 * BATCH_SIZE


@pytest.fixture
def instance_database(tmp_path: Path, django_db_blocker):
    """A database URL for the instance: a fresh PostgreSQL database or SQLite."""
    with django_db_blocker.unblock():
        vendor = connection.vendor
    if vendor != "postgresql":
        yield f"sqlite:///{tmp_path / 'instance.sqlite3'}"
        return
    import psycopg

    base = os.environ["DATABASE_URL"]
    name = f"sealmail_workers_{uuid.uuid4().hex[:8]}"
    admin_url = urlunsplit(urlsplit(base)._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_two_workers_on_redis(tmp_path, redis_url, instance_database):
    redis.Redis.from_url(redis_url).flushdb()
    relay = LoopbackRelay(tmp_path)
    relay.start()
    env = {
        **os.environ,
        "SEALMAIL_DATA_DIR": str(tmp_path / "instance"),
        "SEALMAIL_QUEUE_URL": redis_url,
        "SEALMAIL_SMTP_URL": relay.url(),
        "SEALMAIL_FROM": "billing@provider.test",
        "DATABASE_URL": instance_database,
        "SEALMAIL_LOG_LEVEL": "INFO",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    workers: list[subprocess.Popen[str]] = []
    try:
        run(env, "-m", "sealmail", "migrate", "--no-input", "-v", "0")
        run(env, "-m", "sealmail", "orgkey", "generate", "--if-missing")
        run(env, "-m", "tests.outbox.instance", "setup", str(COUNT))
        logs = [tmp_path / f"worker{n}.log" for n in (1, 2)]
        for log in logs:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "sealmail", "worker", "--processes", "1", "--workers", "2"],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=log.open("w"),
                    text=True,
                )
            )
        # Both consumers must be polling before the work arrives, or the
        # first to start could take every batch.
        deadline = time.monotonic() + 60
        while not all("consumer started" in log.read_text() for log in logs):
            assert time.monotonic() < deadline, "the workers did not start"
            assert all(w.poll() is None for w in workers), "a worker exited"
            time.sleep(0.1)
        run(env, "-m", "tests.outbox.instance", "enqueue")
        deadline = time.monotonic() + 90
        while len(relay.received) < COUNT and time.monotonic() < deadline:
            assert all(w.poll() is None for w in workers), "a worker exited"
            time.sleep(0.2)
        time.sleep(0.5)  # would catch a late duplicate
        report = json.loads(run(env, "-m", "tests.outbox.instance", "report"))
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGINT)
        for worker in workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        relay.stop()
        redis.Redis.from_url(redis_url).flushdb()

    received = relay.received
    assert len(received) == COUNT
    assert len({r.message_id for r in received}) == COUNT
    assert report["counts"] == {"sent": COUNT}
    assert report["formats"] == {"pgpmime": COUNT // 2, "plain": COUNT // 2}
    assert report["message_ids"] == COUNT
    encrypted = [
        r for r in received if r.message.get_content_type() == "multipart/encrypted"
    ]
    assert len(encrypted) == COUNT // 2
    for r in encrypted:
        assert b"secret body text" not in r.data
    for log in logs:
        assert "batch of" in log.read_text(), f"{log.name} delivered nothing"
