"""Portal forms: the contact update form with key intake, and the login form."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from sealmail.contacts import ratelimit
from sealmail.contacts.models import Contact
from sealmail.core.errors import KeyRejected
from sealmail.core.pgp.inspect import MAX_INPUT_BYTES, KeyReport, inspect_key
from sealmail.project.proxies import client_address

logger = logging.getLogger(__name__)

# A public key with a few subkeys and self-signatures is typically a few
# kilobytes. inspect_key rejects input larger than this, so the form does too.
KEY_MAX_BYTES = MAX_INPUT_BYTES
LOGIN_WINDOW = timedelta(minutes=15)


class ContactForm(forms.Form):
    """Address, mode, WKD refresh and key of one contact.

    The key text is inspected in ``clean``.
    """

    address = forms.EmailField(max_length=254, label="Email address")
    mode = forms.ChoiceField(
        choices=Contact.Mode.choices,
        label="Message format",
        widget=forms.RadioSelect,
        help_text="PGP/MIME suits most mail programs. Choose inline PGP only if yours "
        "cannot read PGP/MIME.",
    )
    wkd_refresh = forms.BooleanField(
        required=False,
        label="Refresh my key from my domain's Web Key Directory",
        help_text="Once a day we look up your address in the Web Key Directory of "
        "your mail domain. A newer copy of your confirmed key found there (a new "
        "expiry date, a new subkey or a revocation) is applied without a "
        "confirmation round, and we mail you a notice. A different key is never "
        "used: we mail you about it instead.",
    )
    key_text = forms.CharField(
        required=False,
        label="Paste your public key",
        max_length=KEY_MAX_BYTES,
        strip=True,
        widget=forms.Textarea(
            attrs={
                "rows": 8,
                "spellcheck": "false",
                "autocomplete": "off",
                "placeholder": "-----BEGIN PGP PUBLIC KEY BLOCK-----",
            }
        ),
    )
    key_file = forms.FileField(required=False, label="or upload the key file")
    remove_key = forms.BooleanField(
        required=False, label="Remove the key and turn encryption off"
    )

    def __init__(self, *args: Any, contact: Contact, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.contact = contact
        self.key_report: KeyReport | None = None
        self.key_rejected: KeyRejected | None = None
        self.key_data: bytes | str = b""
        if contact.active_key is None:
            del self.fields["remove_key"]

    def clean_key_file(self) -> bytes | None:
        upload = self.cleaned_data.get("key_file")
        if not upload:
            return None
        if upload.size > KEY_MAX_BYTES:
            raise forms.ValidationError(
                f"The file has {upload.size} bytes; a public key is at most "
                f"{KEY_MAX_BYTES // 1024} KiB. Export only the public key."
            )
        return upload.read()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        text = cleaned.get("key_text") or ""
        data = cleaned.get("key_file")
        if text and data:
            raise forms.ValidationError("Paste the key or upload a file, not both.")
        raw = data or text
        if raw and cleaned.get("remove_key"):
            raise forms.ValidationError(
                "Either remove the key or give a new one, not both."
            )
        if raw:
            self.key_data = raw
            try:
                self.key_report = inspect_key(raw)
            except KeyRejected as exc:
                self.key_rejected = exc
                logger.info(
                    "key for contact %s rejected: %s", self.contact.pk, exc.reason
                )
                field = "key_text" if text else "key_file"
                self.add_error(field, exc.message)
                if exc.reason == "secret_key":
                    self._forget_key_text()
        cleaned["key_report"] = self.key_report
        return cleaned

    def _forget_key_text(self) -> None:
        # Never send pasted secret key material back to the browser.
        if hasattr(self.data, "_mutable"):
            self.data = self.data.copy()
        else:
            self.data = dict(self.data)
        self.data["key_text"] = ""


class RateLimitedLoginForm(AuthenticationForm):
    """Django's login form, locked for a user name after repeated failures.

    Failures are counted in the database per user name and client address
    and, with a four times higher limit, per client address and per user name
    alone, so rotating addresses does not allow unlimited guesses. Failures
    count against :func:`ratelimit.user_key` of the name that Django
    authenticates, so every spelling of one name shares a count.
    """

    def clean(self) -> dict[str, Any]:
        name = self.cleaned_data.get("username")
        if name is None:
            # The user name field is invalid or missing, so Django does not
            # authenticate and there is no guess to count.
            return super().clean()
        username = ratelimit.user_key(name)
        client = client_address(self.request) if self.request else None
        user_bucket = f"login:user:{username}:{client}"
        client_bucket = f"login:client:{client}"
        any_client_bucket = f"login:user:{username}"
        limit = settings.SEALMAIL_LOGIN_MAX_FAILURES
        if (
            ratelimit.exceeded(user_bucket, limit, LOGIN_WINDOW)
            or ratelimit.exceeded(client_bucket, 4 * limit, LOGIN_WINDOW)
            or ratelimit.exceeded(any_client_bucket, 4 * limit, LOGIN_WINDOW)
        ):
            logger.warning("login locked after repeated failures from %s", client)
            raise forms.ValidationError(
                "Too many failed logins. Wait 15 minutes and try again, or reset "
                "your password.",
                code="locked",
            )
        try:
            return super().clean()
        except forms.ValidationError:
            ratelimit.hit(user_bucket, LOGIN_WINDOW)
            ratelimit.hit(client_bucket, LOGIN_WINDOW)
            ratelimit.hit(any_client_bucket, LOGIN_WINDOW)
            raise
        finally:
            if self.user_cache is not None:
                ratelimit.clear(user_bucket)


class RateLimitedAdminLoginForm(RateLimitedLoginForm, AdminAuthenticationForm):
    """The staff admin's login form, with the same lockout as the portal's."""
