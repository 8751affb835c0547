"""The JSON API: one NinjaAPI under ``/api/``, one router per service part."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema

from sealmail import __version__
from sealmail.api.auth import TokenAuth
from sealmail.contacts.api import router as contacts_router
from sealmail.contacts.api_customers import router as customers_router
from sealmail.inbound.api import router as tickets_router
from sealmail.notifications.api import router as notifications_router
from sealmail.outbox.api import router as messages_router
from sealmail.project.csp import PORTAL_POLICY, content_security_policy

# Swagger UI's stylesheet draws its icons as data: URLs.
API_DOCS_POLICY = PORTAL_POLICY + "; img-src 'self' data:"

api = NinjaAPI(
    title="sealmail API",
    version="1",
    description=(
        "Send OpenPGP-encrypted customer mail, manage customers, contacts and "
        "keys, post line and order events, and read tickets. Every route needs "
        "a bearer token from `sealmail apitoken create NAME`."
    ),
    auth=TokenAuth(),
    urls_namespace="api",
    docs_decorator=content_security_policy(API_DOCS_POLICY),
)


class Health(Schema):
    status: str
    version: str


@api.get("/v1/health", response=Health, auth=None, tags=["service"])
def health(request) -> dict[str, str]:
    """Report that the web process is up; needs no token."""
    return {"status": "ok", "version": __version__}


@api.exception_handler(RequestDataTooBig)
def request_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return api.create_response(
        request,
        {
            "detail": "the request body is larger than "
            f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes; send smaller "
            "attachments or split the request"
        },
        status=413,
    )


@api.exception_handler(UnicodeEncodeError)
def text_not_encodable(request: HttpRequest, exc: UnicodeEncodeError) -> HttpResponse:
    # JSON may carry "\ud800", a lone surrogate that no UTF-8 store accepts.
    return api.create_response(
        request,
        {
            "detail": "the request contains text that is not valid Unicode (a lone "
            "surrogate such as \\ud800); send well-formed UTF-8 text"
        },
        status=422,
    )


api.add_router("/v1/customers", customers_router)
api.add_router("/v1/contacts", contacts_router)
api.add_router("/v1/messages", messages_router)
api.add_router("/v1/tickets", tickets_router)
api.add_router("/v1/", notifications_router)
