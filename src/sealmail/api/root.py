"""The JSON API: one NinjaAPI under ``/api/``, one router per service part."""

from __future__ import annotations

from ninja import NinjaAPI, Schema

from sealmail import __version__
from sealmail.api.auth import TokenAuth

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
)


class Health(Schema):
    status: str
    version: str


@api.get("/v1/health", response=Health, auth=None, tags=["service"])
def health(request) -> dict[str, str]:
    """Report that the web process is up; needs no token."""
    return {"status": "ok", "version": __version__}


from sealmail.notifications.api import router as notifications_router  # noqa: E402

api.add_router("/v1/", notifications_router)
