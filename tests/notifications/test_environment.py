"""The settings helpers that the notification settings use."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from sealmail.project.environment import env_int_list, env_mapping


def test_int_list_sorted_largest_first(monkeypatch):
    monkeypatch.setenv("SEALMAIL_KEY_WARNING_DAYS", "1, 30,7,7")
    assert env_int_list("SEALMAIL_KEY_WARNING_DAYS", [5]) == [30, 7, 1]


def test_int_list_default(monkeypatch):
    monkeypatch.delenv("SEALMAIL_KEY_WARNING_DAYS", raising=False)
    assert env_int_list("SEALMAIL_KEY_WARNING_DAYS", [1, 30, 7]) == [30, 7, 1]


@pytest.mark.parametrize("value", ["30,x", "0", "-1,7", ","])
def test_int_list_invalid_named(monkeypatch, value):
    monkeypatch.setenv("SEALMAIL_KEY_WARNING_DAYS", value)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_int_list("SEALMAIL_KEY_WARNING_DAYS", [30])
    assert f"SEALMAIL_KEY_WARNING_DAYS={value!r}" in str(excinfo.value)


def test_mapping_parsed(monkeypatch):
    monkeypatch.setenv(
        "SEALMAIL_WKD_URLS",
        "Customer.TEST=https://127.0.0.1:8443, b.test=https://[::1]:9",
    )
    assert env_mapping("SEALMAIL_WKD_URLS") == {
        "customer.test": "https://127.0.0.1:8443",
        "b.test": "https://[::1]:9",
    }


def test_mapping_invalid_pair_named(monkeypatch):
    monkeypatch.setenv("SEALMAIL_WKD_URLS", "customer.test")
    with pytest.raises(
        ImproperlyConfigured, match="'customer.test', which is not KEY=VALUE"
    ):
        env_mapping("SEALMAIL_WKD_URLS")
