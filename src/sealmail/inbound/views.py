"""The staff ticket queue: list, read, download, view raw and reply."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from sealmail.inbound.models import InboundMessage, MessagePart, Ticket
from sealmail.inbound.rendering import sanitise_html
from sealmail.inbound.security import message_badges, part_badges
from sealmail.project.csp import content_security_policy

logger = logging.getLogger(__name__)

# No remote loads at all, even if the sanitiser ever let a URL through.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Require a logged-in, active staff user (403 for other users).

    The view's responses carry the ticket queue's Content-Security-Policy.
    """

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied("the ticket queue is for staff only")
        return view(request, *args, **kwargs)

    return content_security_policy(CONTENT_SECURITY_POLICY)(wrapper)


@staff_required
def ticket_list(request: HttpRequest) -> HttpResponse:
    tickets = Ticket.objects.select_related("customer")
    queue = request.GET.get("queue", "")
    status = request.GET.get("status", "")
    if queue:
        tickets = tickets.filter(queue=queue)
    if status in Ticket.Status.values:
        tickets = tickets.filter(status=status)
    page = Paginator(tickets, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "inbound/ticket_list.html",
        {
            "page": page,
            "queues": settings.SEALMAIL_ROLE_ADDRESSES,
            "statuses": Ticket.Status.choices,
            "queue": queue,
            "status": status,
        },
    )


def _part_view(part: MessagePart) -> dict[str, Any]:
    html = ""
    if part.content_type == "text/html" and part.encryption != "failed":
        html = sanitise_html(part.text)
    show_text = (
        part.content_type.startswith("text/") and part.content_type != "text/html"
    )
    return {
        "part": part,
        "badges": part_badges(part),
        "html": html,
        "text": part.text if show_text and part.encryption != "failed" else "",
        "download": part.is_attachment or not (html or show_text),
    }


@staff_required
def ticket_detail(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = get_object_or_404(
        Ticket.objects.select_related("customer", "contact"), pk=ticket_id
    )
    entries = [
        {
            "message": message,
            "badges": message_badges(message),
            "parts": [_part_view(part) for part in message.parts.all()],
        }
        for message in ticket.messages.order_by("received_at").prefetch_related("parts")
    ]
    return render(
        request,
        "inbound/ticket_detail.html",
        {
            "ticket": ticket,
            "entries": entries,
            "replies": ticket.replies.select_related("author"),
            "statuses": Ticket.Status.choices,
        },
    )


@staff_required
def unfiled(request: HttpRequest) -> HttpResponse:
    """Messages without a ticket: not parsed yet, or parsing failed."""
    pending = InboundMessage.objects.filter(ticket__isnull=True).only(
        "pk", "received_at", "state", "parse_error", "size", "protocol"
    )[:200]
    return render(request, "inbound/unfiled.html", {"messages_": pending})


@staff_required
def part_download(request: HttpRequest, part_id: int) -> HttpResponse:
    part = get_object_or_404(MessagePart, pk=part_id)
    name = part.filename or f"part-{part.path}.bin"
    response = HttpResponse(
        bytes(part.content), content_type="application/octet-stream"
    )
    response["Content-Disposition"] = _attachment_header(name)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _attachment_header(name: str) -> str:
    from urllib.parse import quote

    ascii_name = "".join(
        ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name
    )
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


@staff_required
def message_raw(request: HttpRequest, message_id: int) -> HttpResponse:
    message = get_object_or_404(InboundMessage, pk=message_id)
    response = HttpResponse(
        bytes(message.raw), content_type="text/plain; charset=utf-8"
    )
    if request.GET.get("download"):
        response["Content-Disposition"] = _attachment_header(
            f"inbound-{message.pk}.eml"
        )
    response["X-Content-Type-Options"] = "nosniff"
    return response


@staff_required
@require_POST
def ticket_reply(request: HttpRequest, ticket_id: int) -> HttpResponse:
    from sealmail.inbound.replies import send_reply

    ticket = get_object_or_404(Ticket, pk=ticket_id)
    text = request.POST.get("text", "").strip()
    if not text:
        flash.error(request, "The reply is empty; write a text before sending.")
        return redirect("staff:ticket", ticket_id=ticket.pk)
    try:
        send_reply(ticket, text, request.user)
    except ValueError as exc:
        flash.error(request, str(exc))
    else:
        flash.success(request, f"Reply to {ticket.reference} queued for sending.")
    return redirect("staff:ticket", ticket_id=ticket.pk)


@staff_required
@require_POST
def ticket_status(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = get_object_or_404(Ticket, pk=ticket_id)
    status = request.POST.get("status", "")
    if status not in Ticket.Status.values:
        flash.error(
            request, f"Unknown status {status!r}; choose open, waiting or closed."
        )
    else:
        ticket.status = status
        ticket.save(update_fields=["status", "updated"])
    return redirect("staff:ticket", ticket_id=ticket.pk)
