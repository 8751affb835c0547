"""schemathesis against /api/openapi.json: no input makes the API return a 5xx.

Every route of the schema is fuzzed for server errors. The customers and
messages routes must also respond with documented status codes, content
types and schemas. The positive-data check is left out on purpose:
schema-valid input can still name an unknown customer or an invalid
address, which the API rejects with 400.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sealmail.api.models import ApiToken
from sealmail.contacts.models import Contact, Customer
from tests.support import IN_CI

pytestmark = [pytest.mark.django_db, pytest.mark.db_backends]

CONFORMANCE_PREFIXES = ("/api/v1/customers", "/api/v1/messages")

schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())


@pytest.fixture(autouse=True)
def keep_connection():
    """Keep the test transaction's connection open across WSGI requests.

    Django closes connections when a request finishes; its test client
    turns that off the same way, and the WSGI app here must too.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def token() -> str:
    _row, secret = ApiToken.issue("fuzz")
    customer = Customer.objects.create(account_number="K-1", name="Fuzz Customer")
    Contact.objects.create(customer=customer, address="fuzz@customer.test")
    return secret


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    # CI replays the same examples on every run; local runs keep exploring.
    derandomize=IN_CI,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_never_answers_5xx(case, token):
    checks = [not_a_server_error]
    if case.path.startswith(CONFORMANCE_PREFIXES):
        checks += [
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=checks)
