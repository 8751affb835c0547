"""The Content-Security-Policy header of every response, set by one middleware.

Every response gets :data:`PORTAL_POLICY`. A view decorated with
:func:`content_security_policy` gets that policy instead, which the staff
ticket queue uses for its stricter policy. Django 5.2 has no CSP support of
its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponseBase

HEADER = "Content-Security-Policy"

# Scripts, styles, images, fonts and connections come only from the portal's
# own origin, so no inline script or style attribute runs. The policy also
# blocks plugins and <base> elements, lets forms post only to the portal and
# lets no other site frame a page.
PORTAL_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

View = TypeVar("View", bound=Callable[..., Any])


def content_security_policy(policy: str) -> Callable[[View], View]:
    """Mark a view so that its responses carry ``policy`` instead of the portal's.

    The mark is a function attribute, which ``functools.wraps`` copies, so it
    survives decorators such as ``login_required`` applied around it.
    """

    def mark(view: View) -> View:
        view.content_security_policy = policy  # type: ignore[attr-defined]
        return view

    return mark


class ContentSecurityPolicyMiddleware:
    """Set the Content-Security-Policy header on every response that has none."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        policy = getattr(request, "content_security_policy", PORTAL_POLICY)
        response.headers.setdefault(HEADER, policy)
        return response

    def process_view(
        self,
        request: HttpRequest,
        view: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        policy = getattr(view, "content_security_policy", None)
        if policy is not None:
            request.content_security_policy = policy  # type: ignore[attr-defined]
