"""Every portal page under its Content-Security-Policy, in a real browser.

Chromium reports each resource or script that the policy blocks on the
console. The tests walk the portal's pages and forms. They fail on any such
report, on a page without the header and on a page whose stylesheet did not
apply.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model

from sealmail.api.root import API_DOCS_POLICY
from sealmail.contacts.models import AuditEvent, Contact, Customer
from sealmail.project.csp import PORTAL_POLICY
from tests.contacts.maildir import (
    CONFIRM_LINK,
    decrypt_text,
    messages_to,
    trust_provider,
)
from tests.peers.gnupg import GnuPG

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser csp password 1"
RESET_LINK = re.compile(r"https?://\S+/accounts/reset/[^/\s]+/[^/\s]+/")
# The page background of site.css; only a page whose stylesheet loaded has it.
PORTAL_BACKGROUND = "rgb(246, 247, 249)"


class PageWatch:
    """Record CSP reports, script errors and the header of every page loaded."""

    def __init__(self, page) -> None:
        self.violations: list[str] = []
        self.errors: list[str] = []
        self.documents: list[tuple[str, str | None]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("response", self._response)

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.violations.append(message.text)

    def _response(self, response) -> None:
        if response.request.resource_type == "document":
            header = response.headers.get("content-security-policy")
            self.documents.append((response.url, header))


@pytest.fixture
def watch(page) -> PageWatch:
    return PageWatch(page)


def assert_styled(page) -> None:
    background = page.evaluate(
        "() => getComputedStyle(document.body).backgroundColor"
    )
    assert background == PORTAL_BACKGROUND, page.url


def assert_clean(watch: PageWatch) -> None:
    assert watch.violations == []
    assert watch.errors == []
    assert watch.documents, "no page was loaded"
    for url, header in watch.documents:
        expected = API_DOCS_POLICY if url.endswith("/api/docs") else PORTAL_POLICY
        assert header == expected, url


def test_policy_blocks_inline_script(page, live_server, watch) -> None:
    page.goto(live_server.url + "/")
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.inlineScriptRan = true";
            document.body.appendChild(script);
        }"""
    )
    assert page.evaluate("() => window.inlineScriptRan === true") is False
    assert any("inline script" in text for text in watch.violations)


def test_portal_pages_work_under_policy(
    page, live_server, settings, outbox_runs_inline, tmp_path: Path, watch
) -> None:
    settings.SEALMAIL_BASE_URL = live_server.url
    gpg = GnuPG(tmp_path / "gnupg")
    trust_provider(gpg)
    fingerprint = gpg.generate("Erin <erin@customer.test>")
    customer = Customer.objects.create(account_number="C-5005", name="Erin's Shop")
    user = get_user_model().objects.create_user(
        "erin", "erin@customer.test", PASSWORD
    )
    customer.users.add(user)
    contact = Contact.objects.create(customer=customer, address="erin@customer.test")

    for path in ["/", "/keys/", "/accounts/password_reset/"]:
        page.goto(live_server.url + path)
        assert_styled(page)
    page.fill("#id_email", "erin@customer.test")
    page.click("button:has-text('Send the link')")
    page.wait_for_selector("h1:has-text('Check your mail')")
    assert_styled(page)
    reset_text = messages_to("erin@customer.test")[-1].get_body(("plain",))
    page.goto(RESET_LINK.search(reset_text.get_content()).group(0))
    page.wait_for_selector("h1:has-text('Choose a new password')")
    assert_styled(page)
    page.fill("#id_new_password1", PASSWORD + " new")
    page.fill("#id_new_password2", PASSWORD + " new")
    page.click("button:has-text('Set password')")
    page.wait_for_selector("h1:has-text('Password set')")
    assert_styled(page)

    page.click("text=Log in")
    page.fill("#id_username", "erin")
    page.fill("#id_password", PASSWORD + " new")
    page.click("button:has-text('Log in')")
    page.wait_for_selector("text=Your contacts")
    assert_styled(page)
    page.click("text=Update contact")
    page.wait_for_selector("h1:has-text('Update contact')")
    assert_styled(page)

    page.check("#id_wkd_refresh")
    page.check("input[name=mode][value=inline]")
    page.click("button:has-text('Save and send confirmation')")
    page.wait_for_selector("text=Saved.")
    contact.refresh_from_db()
    assert contact.wkd_refresh is True
    assert contact.mode == Contact.Mode.INLINE
    assert page.is_checked("#id_wkd_refresh")
    assert AuditEvent.objects.filter(
        contact=contact, kind=AuditEvent.Kind.WKD_REFRESH_ON
    ).exists()

    page.fill("#id_key_text", gpg.export(fingerprint).decode())
    page.click("button:has-text('Check key only')")
    page.wait_for_selector("#checked")
    assert_styled(page)
    page.click("button:has-text('Save and send confirmation')")
    page.wait_for_selector("text=We sent a confirmation link")
    text = decrypt_text(gpg, messages_to("erin@customer.test")[-1])
    link = CONFIRM_LINK.search(text).group(0)
    page.goto(link)
    assert_styled(page)
    page.click("button:has-text('Confirm')")
    page.wait_for_selector("text=Change confirmed")
    assert_styled(page)
    page.goto(link)
    page.wait_for_selector("text=already confirmed")
    assert_styled(page)

    page.goto(live_server.url + "/")
    page.click("button:has-text('Log out')")
    page.wait_for_load_state("load")
    assert_clean(watch)


def test_admin_and_api_docs_work_under_policy(
    page, live_server, django_user_model, watch
) -> None:
    foreign: list[str] = []
    server_host = urlsplit(live_server.url).netloc

    def block_foreign(route) -> None:
        if urlsplit(route.request.url).netloc != server_host:
            foreign.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", block_foreign)
    django_user_model.objects.create_superuser(
        "root", "root@provider.test", PASSWORD
    )
    page.goto(live_server.url + "/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("text=Site administration")
    for path in [
        "/admin/contacts/contact/",
        "/admin/contacts/customer/add/",
        "/admin/contacts/auditevent/",
    ]:
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")

    # The Swagger UI of the API docs comes from the static files, not a CDN.
    page.goto(live_server.url + "/api/docs")
    page.click("span.opblock-summary-path:has-text('/api/v1/health')")
    page.wait_for_selector("text=Try it out")
    assert foreign == []
    assert_clean(watch)
