"""`sealmail serve` starts web, worker and inbound SMTP, and Ctrl-C stops all three;
`sealmail worker` runs and stops its consumer processes."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port, port_open


@pytest.fixture
def instance_env(tmp_path):
    env = dict(os.environ)
    env.update(
        SEALMAIL_DATA_DIR=str(tmp_path / "instance"),
        SEALMAIL_WEB_ADDR=f"127.0.0.1:{free_port()}",
        SEALMAIL_SMTPD_ADDR=f"127.0.0.1:{free_port()}",
        SEALMAIL_FROM="noreply@isp.example",
        DJANGO_SETTINGS_MODULE="sealmail.project.settings",
    )
    env.pop("SEALMAIL_BASE_URL", None)
    env.pop("DATABASE_URL", None)
    env.pop("SEALMAIL_QUEUE_URL", None)
    subprocess.run([sys.executable, "-m", "sealmail", "migrate", "-v", "0"], env=env, check=True)
    return env


def wait_for_port(host: str, port: int, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early with status {process.returncode}")
        if port_open(host, port, timeout=0.2):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listened on {host}:{port} within {seconds} s")


def test_serve_answers_and_stops_cleanly(instance_env):
    web_host, web_port = instance_env["SEALMAIL_WEB_ADDR"].split(":")
    smtp_host, smtp_port = instance_env["SEALMAIL_SMTPD_ADDR"].split(":")
    process = subprocess.Popen(
        [sys.executable, "-m", "sealmail", "serve"],
        env=instance_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(web_host, int(web_port), process)
        wait_for_port(smtp_host, int(smtp_port), process)

        with urllib.request.urlopen(f"http://{web_host}:{web_port}/", timeout=10) as response:
            assert response.status == 200
            assert b"sealmail" in response.read()
        with urllib.request.urlopen(
            f"http://{web_host}:{web_port}/api/v1/health", timeout=10
        ) as response:
            assert response.status == 200
        with smtplib.SMTP(smtp_host, int(smtp_port), timeout=10) as client:
            code, _ = client.ehlo("test.example")
            assert code == 250

        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    log = output.decode(errors="replace")
    assert process.returncode == 0, log
    for name in ("web", "worker", "smtpd"):
        assert f"stopped {name}" in log, log
    assert not port_open(web_host, int(web_port))
    assert not port_open(smtp_host, int(smtp_port))


def test_serve_restarts_killed_worker(instance_env):
    web_host, web_port = instance_env["SEALMAIL_WEB_ADDR"].split(":")
    process = subprocess.Popen(
        [sys.executable, "-m", "sealmail", "serve"],
        env=instance_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(web_host, int(web_port), process)
        worker = subprocess.run(
            ["pgrep", "-P", str(process.pid), "-f", "sealmail worker"],
            capture_output=True,
            text=True,
        )
        worker_pid = int(worker.stdout.split()[0])
        os.kill(worker_pid, signal.SIGKILL)
        time.sleep(3)
        assert process.poll() is None
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    log = output.decode(errors="replace")
    assert process.returncode == 0, log
    assert "worker was killed by SIGKILL; restarting it" in log
    assert log.count("started worker (pid") == 2


def children_of(pid: int) -> list[tuple[int, str]]:
    found = subprocess.run(
        ["pgrep", "-a", "-P", str(pid)], capture_output=True, text=True
    ).stdout.splitlines()
    return [(int(line.split()[0]), line) for line in found]


def wait_for_children(pid: int, count: int, seconds: float = 20) -> list[tuple[int, str]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        children = children_of(pid)
        if len(children) == count:
            return children
        time.sleep(0.1)
    raise AssertionError(f"process {pid} has {children_of(pid)}, not {count} children")


def alive(pid: int) -> bool:
    """Return whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_worker_runs_one_consumer_per_process(instance_env):
    process = subprocess.Popen(
        [sys.executable, "-m", "sealmail", "worker", "--processes", "2"],
        env=instance_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        consumers = wait_for_children(process.pid, 2)
        # Only the first consumer schedules the periodic tasks.
        assert sum("--no-periodic" in line for _, line in consumers) == 1
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    log = output.decode(errors="replace")
    assert process.returncode == 0, log
    assert "stopped consumer 1" in log, log
    assert "stopped consumer 2" in log, log
    assert not any(alive(pid) for pid, _ in consumers)


def test_consumers_stop_when_their_worker_is_killed(instance_env):
    process = subprocess.Popen(
        [sys.executable, "-m", "sealmail", "worker", "--processes", "2"],
        env=instance_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        consumers = wait_for_children(process.pid, 2)
        time.sleep(1)  # let the consumers start Huey
        process.kill()
        process.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(alive(pid) for pid, _ in consumers):
            time.sleep(0.2)
        assert not any(alive(pid) for pid, _ in consumers)
    finally:
        for pid, _ in children_of(process.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("command", "variable", "value", "message"),
    [
        ("worker", "SEALMAIL_WORKER_PROCESSES", "many", "SEALMAIL_WORKER_PROCESSES='many' is not a number"),
        ("worker", "SEALMAIL_WORKER_PROCESSES", "0", "give 1 to 256 processes"),
        ("worker", "SEALMAIL_WORKER_PROCESSES", "1000000000000", "give 1 to 256 processes"),
        ("worker", "SEALMAIL_WORKER_THREADS", "x", "SEALMAIL_WORKER_THREADS='x' is not a number"),
        ("serve", "SEALMAIL_WORKER_PROCESSES", "x", "SEALMAIL_WORKER_PROCESSES='x' is not a number"),
    ],
)
def test_worker_settings_are_checked(instance_env, command, variable, value, message):
    env = {**instance_env, variable: value}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "sealmail", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    # serve stops before it starts the portal or the SMTP server.
    assert "started web" not in result.stderr
    assert time.monotonic() - started < 15


def test_consumers_get_pythonpath(instance_env, tmp_path):
    extra = tmp_path / "site"
    extra.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "sealmail", "worker", "--processes", "2", "--pythonpath", str(extra)],
        env=instance_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        consumers = wait_for_children(process.pid, 2)
        for pid, _ in consumers:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            paths = [item for item in environ if item.startswith(b"PYTHONPATH=")]
            assert paths and paths[0].split(b"=", 1)[1].split(b":")[0] == str(extra).encode()
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)


def test_smtpd_reports_a_busy_port(instance_env):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**instance_env, "SEALMAIL_SMTPD_ADDR": f"127.0.0.1:{port}"}
        result = subprocess.run(
            [sys.executable, "-m", "sealmail", "smtpd"], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_web_rejects_bad_worker_count(instance_env):
    env = {**instance_env, "SEALMAIL_WEB_WORKERS": "two"}
    result = subprocess.run(
        [sys.executable, "-m", "sealmail", "web"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "SEALMAIL_WEB_WORKERS='two' is not a number" in result.stderr
    assert "Traceback" not in result.stderr
