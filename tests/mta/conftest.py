"""The private Postfix instance shared by the MTA tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.mta.postfix import PostfixInstance, create_instance
from tests.support import free_port, missing, require_tool

MAILBOX_DOMAIN = "customer.test"
ROLE_ADDRESSES = (
    "support@provider.test",
    "sales@provider.test",
    "accounts@provider.test",
)


@pytest.fixture(scope="session")
def postfix() -> Iterator[PostfixInstance]:
    """A running Postfix on 127.0.0.1 with STARTTLS, Maildir delivery and LMTP.

    Mail for ``*@customer.test`` lands in ``postfix.maildir``. Mail for the
    role addresses goes over LMTP to 127.0.0.1:``postfix.lmtp_port``, where
    the test that needs it starts sealmail's inbound server.
    """
    binary = require_tool("postfix", "postfix")
    if os.geteuid() != 0:
        missing(
            "root for starting a private Postfix master", "run the MTA tests as root"
        )
    instance = create_instance(
        MAILBOX_DOMAIN,
        ROLE_ADDRESSES,
        port=free_port(),
        lmtp_port=free_port(),
        postfix=binary,
    )
    try:
        instance.start()
        yield instance
    finally:
        instance.remove()
