from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from huey import PriorityRedisHuey, SqliteHuey

from sealmail.project import environment


def test_data_dir_created_private(tmp_path, monkeypatch):
    target = tmp_path / "instance"
    monkeypatch.setenv("SEALMAIL_DATA_DIR", str(target))
    path = environment.data_dir()
    assert path == target
    assert stat.S_IMODE((target / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_secret_key_generated_once(tmp_path):
    first = environment.ensure_secret_key(tmp_path)
    second = environment.ensure_secret_key(tmp_path)
    assert first == second
    assert len(first) >= 50
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


def test_empty_secret_key_file_rejected(tmp_path):
    (tmp_path / "secret_key").write_text("")
    with pytest.raises(ImproperlyConfigured, match="secret_key.*delete it"):
        environment.ensure_secret_key(tmp_path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:8000", ("127.0.0.1", 8000)), ("[::1]:2525", ("::1", 2525))],
)
def test_listen_address_parsed(monkeypatch, value, expected):
    monkeypatch.setenv("SEALMAIL_WEB_ADDR", value)
    assert environment.env_addr("SEALMAIL_WEB_ADDR", "x") == expected


@pytest.mark.parametrize("value", ["8000", "localhost:", "host:99999", ":80"])
def test_bad_listen_address_named(monkeypatch, value):
    monkeypatch.setenv("SEALMAIL_WEB_ADDR", value)
    with pytest.raises(ImproperlyConfigured, match=r"SEALMAIL_WEB_ADDR=.*HOST:PORT"):
        environment.env_addr("SEALMAIL_WEB_ADDR", "127.0.0.1:8000")


def test_role_addresses_default_to_sender_domain():
    assert environment.role_addresses("", "billing@isp.example") == [
        "support@isp.example",
        "sales@isp.example",
        "accounts@isp.example",
    ]


def test_role_addresses_rejects_non_address():
    with pytest.raises(ImproperlyConfigured, match="'helpdesk'"):
        environment.role_addresses("support@isp.example, helpdesk", "x@isp.example")


def test_bad_boolean_named(monkeypatch):
    monkeypatch.setenv("SEALMAIL_DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SEALMAIL_DEBUG='maybe'"):
        environment.env_bool("SEALMAIL_DEBUG", False)


def test_queue_url_selects_backend(tmp_path):
    assert isinstance(environment.huey_from_url("", tmp_path / "q", immediate=False), SqliteHuey)
    redis = environment.huey_from_url("redis://127.0.0.1:6379/3", tmp_path / "q", immediate=False)
    assert isinstance(redis, PriorityRedisHuey)
    with pytest.raises(ImproperlyConfigured, match="amqp://"):
        environment.huey_from_url("amqp://x", tmp_path / "q", immediate=False)


def test_settings_follow_environment(tmp_path):
    env = dict(
        os.environ,
        SEALMAIL_DATA_DIR=str(tmp_path),
        SEALMAIL_FROM="noreply@isp.example",
        DATABASE_URL="postgres://db.internal:5432/sealmail",
        SEALMAIL_QUEUE_URL="redis://127.0.0.1:6379/2",
        SEALMAIL_SMTP_URL="smtp://relay.internal:25",
        DJANGO_SETTINGS_MODULE="sealmail.project.settings",
    )
    code = (
        "from django.conf import settings as s\n"
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['HOST'])\n"
        "print(type(s.HUEY).__name__, s.SEALMAIL_SMTP_URL)\n"
        "print(','.join(s.SEALMAIL_ROLE_ADDRESSES))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert output[0] == "django.db.backends.postgresql db.internal"
    assert output[1] == "PriorityRedisHuey smtp://relay.internal:25"
    assert output[2] == "support@isp.example,sales@isp.example,accounts@isp.example"
    assert (Path(tmp_path) / "secret_key").exists()


def test_trusted_proxies_off_by_default(monkeypatch):
    monkeypatch.delenv("SEALMAIL_TRUSTED_PROXIES", raising=False)
    assert environment.env_networks("SEALMAIL_TRUSTED_PROXIES") == []


def test_trusted_proxies_parsed(monkeypatch):
    monkeypatch.setenv("SEALMAIL_TRUSTED_PROXIES", " 10.0.0.5, 10.1.0.0/24,,fd00::/8 ")
    parsed = environment.env_networks("SEALMAIL_TRUSTED_PROXIES")
    assert [str(network) for network in parsed] == [
        "10.0.0.5/32",
        "10.1.0.0/24",
        "fd00::/8",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.300", r"'10\.0\.0\.300', which is not an IP address or CIDR network"),
        ("proxy.internal", r"'proxy\.internal', which is not an IP address"),
        ("10.0.0.5, 10.0.0.1/24", r"'10\.0\.0\.1/24'.*host bits set.*10\.0\.0\.0/24"),
        ("0.0.0.0/0", r"'0\.0\.0\.0/0', which matches every address"),
        ("::/0", r"'::/0', which matches every address"),
    ],
)
def test_bad_trusted_proxy_named(monkeypatch, value, message):
    monkeypatch.setenv("SEALMAIL_TRUSTED_PROXIES", value)
    expected = rf"SEALMAIL_TRUSTED_PROXIES contains {message}"
    with pytest.raises(ImproperlyConfigured, match=expected):
        environment.env_networks("SEALMAIL_TRUSTED_PROXIES")


def test_bad_trusted_proxy_fails_at_start(tmp_path):
    env = dict(
        os.environ,
        SEALMAIL_DATA_DIR=str(tmp_path),
        SEALMAIL_TRUSTED_PROXIES="10.0.0.5,10.0.0.256",
        DJANGO_SETTINGS_MODULE="sealmail.project.settings",
    )
    command = [sys.executable, "-m", "django", "check"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SEALMAIL_TRUSTED_PROXIES contains '10.0.0.256'" in result.stderr


@pytest.mark.parametrize("value", ["-1", "abc", "1e9", "nan", "inf", "241"])
def test_bad_smtp_keepalive_named(tmp_path, value):
    url = f"smtp://127.0.0.1:2525?keepalive={value}"
    expected = rf"SEALMAIL_SMTP_URL has keepalive='{value}'; give seconds from 0 "
    with pytest.raises(ImproperlyConfigured, match=expected):
        environment.smtp_url(url, tmp_path, "noreply@isp.example")


def test_smtp_url_returned_unchanged(tmp_path):
    url = "smtps://billing:s3cret@127.0.0.1?keepalive=0&timeout=5"
    assert environment.smtp_url(url, tmp_path, "noreply@isp.example") == url
    assert environment.smtp_url("", tmp_path, "noreply@isp.example") == ""


def test_bad_smtp_url_fails_at_start(tmp_path):
    env = dict(
        os.environ,
        SEALMAIL_DATA_DIR=str(tmp_path),
        SEALMAIL_SMTP_URL="smtp://127.0.0.1:2525?keepalive=-1",
        DJANGO_SETTINGS_MODULE="sealmail.project.settings",
    )
    command = [sys.executable, "-m", "django", "check"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SEALMAIL_SMTP_URL has keepalive='-1'" in result.stderr
