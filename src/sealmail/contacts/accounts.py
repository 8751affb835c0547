"""Login with lockout, and password reset mail sent through the outbox.

The reset mail goes to the contact whose address matches the user's email
address, so the outbox encrypts it when that contact has an active key.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm
from django.http import HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path, reverse_lazy

from sealmail.contacts import mail, ratelimit
from sealmail.contacts.forms import RateLimitedLoginForm
from sealmail.contacts.models import Contact
from sealmail.project.proxies import client_address

logger = logging.getLogger(__name__)

RESET_WINDOW = timedelta(hours=1)
RESET_LIMIT_CLIENT = 10
# Reset mails per email address within RESET_WINDOW, counted across all
# clients, so that rotating client addresses cannot flood one mailbox.
RESET_LIMIT_ADDRESS = 5


class OutboxPasswordResetForm(PasswordResetForm):
    """Django's reset form, with the mail queued in the outbox instead of sent by SMTP."""

    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        user = context["user"]
        contact = (
            Contact.objects.filter(customer__users=user, address__iexact=to_email)
            .order_by("-encryption", "pk")
            .first()
        )
        if contact is None:
            # NOTE: a user whose email address is no contact address gets no
            # reset mail, because the outbox sends only to contacts.
            logger.warning(
                "password reset for user %s: no contact with that address", user.pk
            )
            return
        subject = "".join(render_to_string(subject_template_name, context).splitlines())
        text = render_to_string(email_template_name, context)
        mail.send_account_mail(contact, subject=subject, text=text)
        logger.info(
            "password reset mail queued for user %s, contact %s", user.pk, contact.pk
        )


class PasswordResetView(auth_views.PasswordResetView):
    form_class = OutboxPasswordResetForm
    template_name = "portal/password_reset_form.html"
    email_template_name = "registration/reset_mail.txt"
    subject_template_name = "registration/reset_mail_subject.txt"
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form: OutboxPasswordResetForm):
        client_bucket = f"reset:client:{client_address(self.request)}"
        if ratelimit.exceeded(client_bucket, RESET_LIMIT_CLIENT, RESET_WINDOW):
            form.add_error(None, "Too many reset requests. Wait an hour and try again.")
            return self.form_invalid(form)
        ratelimit.hit(client_bucket, RESET_WINDOW)
        address = ratelimit.user_key(form.cleaned_data["email"])
        address_bucket = f"reset:address:{address}"
        ratelimit.hit(address_bucket, RESET_WINDOW)
        earlier = ratelimit.count(address_bucket, RESET_WINDOW) - 1
        if earlier >= RESET_LIMIT_ADDRESS:
            # The response is the same as after a sent mail, so the limit
            # reveals nothing. The mails sent before carry reset links that
            # stay valid until the password changes or the user logs in.
            if earlier == RESET_LIMIT_ADDRESS:
                logger.warning(
                    "password reset mail not sent: more than %s requests for "
                    "one address within %s",
                    RESET_LIMIT_ADDRESS,
                    RESET_WINDOW,
                )
            return HttpResponseRedirect(self.get_success_url())
        self.extra_email_context = {"base_url": settings.SEALMAIL_BASE_URL}
        return super().form_valid(form)


urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=RateLimitedLoginForm),
        name="login",
    ),
    path("password_reset/", PasswordResetView.as_view(), name="password_reset"),
    # The admin app ships templates under the same registration/ names and
    # comes first in INSTALLED_APPS, so the portal's pages have their own names.
    path(
        "password_reset/done/",
        auth_views.PasswordResetDoneView.as_view(
            template_name="portal/password_reset_done.html"
        ),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="portal/password_reset_confirm.html"
        ),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="portal/password_reset_complete.html"
        ),
        name="password_reset_complete",
    ),
]
