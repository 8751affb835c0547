"""`sealmail welcome` prints the portal URL and the destination of outgoing mail."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command


def welcome() -> str:
    output = io.StringIO()
    call_command("welcome", stdout=output)
    return output.getvalue()


@pytest.mark.django_db
def test_welcome_hides_relay_password(settings):
    settings.SEALMAIL_SMTP_URL = "smtp://billing:s3cret@127.0.0.1:2599?tls=none"
    output = welcome()
    assert "127.0.0.1:2599" in output
    assert "s3cret" not in output
    assert "billing:" not in output


@pytest.mark.django_db
def test_welcome_names_the_maildir(settings, tmp_path):
    settings.SEALMAIL_SMTP_URL = ""
    settings.MAILDIR = tmp_path / "maildir"
    assert str(tmp_path / "maildir") in welcome()
