"""Portal views: contact list, "Update contact", confirmation links, provider keys.

Every view that shows or changes a contact looks it up through the logged-in
user's customers, so a user of one customer gets a 404 for any other
customer's contact. Confirmation and cancel links need no login: the token is
the credential, and only a POST acts on it.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from sealmail.contacts import changes
from sealmail.contacts.changes import (
    Actor,
    ChangeClosed,
    ChangeError,
    ChangeNotFound,
    ChangeRejected,
)
from sealmail.contacts.forms import ContactForm
from sealmail.contacts.mail import fingerprint_groups
from sealmail.contacts.models import AuditEvent, Contact, PendingChange
from sealmail.core.errors import KeyRejected, KeyStoreError
from sealmail.core.pgp.inspect import KeyReport
from sealmail.keys.store import get_keystore
from sealmail.notifications.keys import (
    UNUSABLE_REASONS,
    RefreshResult,
    RefreshStatus,
    refresh_key,
)
from sealmail.project.proxies import client_address

logger = logging.getLogger(__name__)


def actor_for(request: HttpRequest) -> Actor:
    """Return the audit actor of ``request``: the user, or the holder of a link."""
    user = request.user
    if user.is_authenticated:
        return Actor(user.get_username(), client_address(request), user.pk)
    return Actor("link holder", client_address(request))


def contacts_of(user: AbstractBaseUser):
    """Return the contacts that ``user`` may see: those of the user's customers."""
    return Contact.objects.filter(customer__users=user).select_related(
        "customer", "active_key"
    )


def provider_keys() -> list[dict[str, str]]:
    """Return the provider's public keys for display, current key first."""
    try:
        certificates = get_keystore().certificates()
    except KeyStoreError as exc:
        logger.error("provider keys could not be read: %s", exc)
        return []
    return [
        {
            "fingerprint": fingerprint_groups(cert.fingerprint),
            "user_ids": ", ".join(str(uid) for uid in cert.user_ids),
        }
        for cert in certificates
    ]


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return render(request, "sealmail/home.html", {"provider_keys": provider_keys()})
    contacts = list(contacts_of(request.user))
    pending = {
        change.contact_id: change
        for change in PendingChange.objects.filter(
            contact__in=contacts, state=PendingChange.State.PENDING
        )
    }
    for contact in contacts:
        contact.pending_change = pending.get(contact.pk)
    return render(request, "contacts/contact_list.html", {"contacts": contacts})


@sensitive_variables("form")
@sensitive_post_parameters("key_text")
@login_required
@require_http_methods(["GET", "POST"])
def contact_update(request: HttpRequest, pk: int) -> HttpResponse:
    contact = get_object_or_404(contacts_of(request.user), pk=pk)
    pending = (
        PendingChange.objects.filter(contact=contact, state=PendingChange.State.PENDING)
        .select_related("new_key")
        .first()
    )
    initial = {
        "address": contact.address,
        "mode": contact.mode,
        "wkd_refresh": contact.wkd_refresh,
    }
    if request.method == "POST":
        form = ContactForm(
            request.POST, request.FILES, contact=contact, initial=initial
        )
    else:
        form = ContactForm(contact=contact, initial=initial)
    checked = None
    valid = request.method == "POST" and form.is_valid()
    if request.method == "POST" and form.key_rejected is not None:
        changes.audit(
            AuditEvent.Kind.KEY_REJECTED,
            contact,
            actor_for(request),
            reason=form.key_rejected.reason,
        )
        if (
            form.key_rejected.reason in UNUSABLE_REASONS
            and request.POST.get("action") != "check"
        ):
            response = _store_unusable_copy(request, contact, form.key_data)
            if response is not None:
                return response
    if valid:
        data = form.cleaned_data
        report = data["key_report"]
        if request.POST.get("action") == "check":
            checked = report
            if report is None:
                form.add_error("key_text", "Paste a key or choose a file to check.")
        else:
            return _save_contact(request, contact, form)
    return render(
        request,
        "contacts/contact_update.html",
        {
            "contact": contact,
            "form": form,
            "pending": pending,
            "checked": checked,
            "provider_keys": provider_keys(),
            "events": AuditEvent.objects.filter(contact=contact)[:10],
        },
    )


def _is_refreshed_copy(contact: Contact, data: dict) -> bool:
    """Return whether the form only brings a newer copy of the confirmed key.

    The same fingerprint at the same address proves nothing new, so it needs
    no confirmation round; any other change does.
    """
    report = data["key_report"]
    return (
        report is not None
        and not data.get("remove_key")
        and contact.active_key is not None
        and contact.encryption_on
        and report.fingerprint == contact.active_key.fingerprint
        and data["address"].lower() == contact.address.lower()
    )


def _store_unusable_copy(
    request: HttpRequest, contact: Contact, data: bytes | str
) -> HttpResponse | None:
    """Store a revoked or expired copy of the contact's confirmed key.

    Intake rejects such a key as a new key, but a revocation of the key in
    use must reach the database, or mail would keep going out encrypted to
    it. Returns None when the copy is not of the confirmed key.
    """
    try:
        result = refresh_key(contact, data, source="portal")
    except KeyRejected:
        return None
    if result.status == RefreshStatus.NEEDS_CONFIRMATION:
        return None
    return _show_refresh(request, contact, result)


def _refresh_active_key(
    request: HttpRequest, contact: Contact, report: KeyReport
) -> HttpResponse:
    try:
        result = refresh_key(contact, report.certificate, source="portal")
    except KeyRejected as exc:
        messages.error(request, exc.message)
        return redirect("contacts:update", pk=contact.pk)
    return _show_refresh(request, contact, result)


def _show_refresh(request: HttpRequest, contact: Contact, result: RefreshResult) -> HttpResponse:
    if result.status == RefreshStatus.UNUSABLE:
        messages.error(request, result.message)
    else:
        messages.success(request, result.message)
    return redirect("contacts:update", pk=contact.pk)


def _save_contact(
    request: HttpRequest, contact: Contact, form: ContactForm
) -> HttpResponse:
    data = form.cleaned_data
    actor = actor_for(request)
    changes.change_mode(contact, data["mode"], actor)
    changes.set_wkd_refresh(contact, data["wkd_refresh"], actor)
    wants_confirmation = (
        data["key_report"] is not None
        or data.get("remove_key")
        or data["address"].lower() != contact.address.lower()
    )
    if not wants_confirmation:
        messages.success(request, "Saved.")
        return redirect("contacts:update", pk=contact.pk)
    if _is_refreshed_copy(contact, data):
        return _refresh_active_key(request, contact, data["key_report"])
    try:
        change = changes.request_change(
            contact,
            address=data["address"],
            mode=data["mode"],
            report=data["key_report"],
            remove_key=bool(data.get("remove_key")),
            actor=actor,
        )
    except ChangeError as exc:
        form.add_error(None, str(exc))
        return render(
            request,
            "contacts/contact_update.html",
            {
                "contact": contact,
                "form": form,
                "pending": None,
                "checked": None,
                "provider_keys": provider_keys(),
                "events": AuditEvent.objects.filter(contact=contact)[:10],
            },
            status=400,
        )
    encryption_note = ""
    if change.sent_encrypted_to:
        encryption_note = " encrypted to " + fingerprint_groups(
            change.sent_encrypted_to
        )
    messages.success(
        request,
        f"We sent a confirmation link to {change.sent_to}{encryption_note}. "
        "Nothing changes until you follow it.",
    )
    return redirect("contacts:update", pk=contact.pk)


@login_required
@require_POST
def contact_cancel_pending(request: HttpRequest, pk: int) -> HttpResponse:
    contact = get_object_or_404(contacts_of(request.user), pk=pk)
    if changes.cancel_pending_of(contact, actor_for(request)):
        messages.success(request, "The pending change was cancelled.")
    return redirect("contacts:update", pk=contact.pk)


def _link_page(
    request: HttpRequest, change_id: int, token: str, action: str
) -> HttpResponse:
    try:
        change = changes.find_change(change_id, token)
    except ChangeNotFound as exc:
        return render(
            request, "contacts/link_invalid.html", {"message": str(exc)}, status=404
        )
    if request.method == "POST":
        operation = (
            changes.confirm_change if action == "confirm" else changes.cancel_change
        )
        try:
            change = operation(change_id, token, actor_for(request))
        except ChangeClosed as exc:
            return render(
                request, "contacts/link_invalid.html", {"message": str(exc)}, status=410
            )
        except ChangeRejected as exc:
            return render(
                request, "contacts/link_invalid.html", {"message": str(exc)}, status=409
            )
        except ChangeError as exc:
            return render(
                request, "contacts/link_invalid.html", {"message": str(exc)}, status=404
            )
        return render(
            request, "contacts/link_done.html", {"change": change, "action": action}
        )
    if change.state != PendingChange.State.PENDING or change.expires <= timezone.now():
        state = (
            change.state if change.state != PendingChange.State.PENDING else "expired"
        )
        message = changes.closed_message(state)
        return render(
            request, "contacts/link_invalid.html", {"message": message}, status=410
        )
    return render(
        request,
        "contacts/link_confirm.html",
        {
            "change": change,
            "action": action,
            "new_key_groups": fingerprint_groups(change.new_key.fingerprint)
            if change.new_key
            else "",
            "address_changed": change.new_address.lower()
            != change.previous_address.lower(),
            "token": token,
        },
    )


def _origin_only_referrer(response: HttpResponse) -> HttpResponse:
    # The page URL contains the token, so requests from the page carry only the
    # origin. "no-referrer" would also blank the Origin header of the form's
    # POST, which CSRF protection then rejects.
    response["Referrer-Policy"] = "strict-origin"
    return response


@sensitive_variables("token")
@never_cache
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, change_id: int, token: str) -> HttpResponse:
    """Show the confirm button on GET. Only a POST applies the change."""
    return _origin_only_referrer(_link_page(request, change_id, token, "confirm"))


@sensitive_variables("token")
@never_cache
@require_http_methods(["GET", "POST"])
def cancel(request: HttpRequest, change_id: int, token: str) -> HttpResponse:
    """Show the cancel button on GET. Only a POST discards the change."""
    return _origin_only_referrer(_link_page(request, change_id, token, "cancel"))


@require_GET
def provider_keys_download(request: HttpRequest) -> HttpResponse:
    """Serve the provider's armored public keys, current key first."""
    try:
        certificates = get_keystore().certificates()
    except KeyStoreError as exc:
        logger.error("provider keys could not be read: %s", exc)
        raise Http404("The provider keys are not available.") from exc
    if not certificates:
        raise Http404("The provider has no key yet.")
    body = "".join(
        str(cert) if str(cert).endswith("\n") else str(cert) + "\n"
        for cert in certificates
    )
    response = HttpResponse(body, content_type="application/pgp-keys")
    response["Content-Disposition"] = 'attachment; filename="provider-keys.asc"'
    return response
