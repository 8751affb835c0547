"""Staff admin for customers, contacts, keys, pending changes and the audit log.

Key material, tokens and audit records are read-only here: keys change only
through the confirmation flow, so staff cannot switch encryption silently.
"""

from __future__ import annotations

import pysequoia
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from sealmail.contacts.forms import RateLimitedAdminLoginForm
from sealmail.contacts.mail import fingerprint_groups
from sealmail.contacts.models import (
    AuditEvent,
    Contact,
    ContactKey,
    Customer,
    PendingChange,
)

# Staff accounts read every decrypted ticket, so their login gets the
# portal's lockout too.
admin.site.login_form = RateLimitedAdminLoginForm


class ContactInline(admin.TabularInline):
    model = Contact
    fields = ("address", "role", "mode", "encryption")
    readonly_fields = ("encryption",)
    extra = 0
    show_change_link = True


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("account_number", "name", "created")
    search_fields = (
        "account_number",
        "name",
        "contacts__address",
        "contacts__keys__fingerprint",
    )
    filter_horizontal = ("users",)
    inlines = [ContactInline]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = (
        "address",
        "role",
        "customer",
        "encryption",
        "mode",
        "active_fingerprint",
    )
    list_filter = ("encryption", "role", "mode")
    search_fields = (
        "address",
        "customer__account_number",
        "customer__name",
        "keys__fingerprint",
    )
    readonly_fields = ("encryption", "active_key", "created", "updated")
    autocomplete_fields = ("customer",)

    @admin.display(description="active key")
    def active_fingerprint(self, contact: Contact) -> str:
        return (
            fingerprint_groups(contact.active_key.fingerprint)
            if contact.active_key
            else ""
        )


@admin.register(ContactKey)
class ContactKeyAdmin(admin.ModelAdmin):
    list_display = (
        "grouped_fingerprint",
        "contact",
        "algorithm",
        "usable_until",
        "added",
        "problem",
    )
    list_filter = ("version", "problem")
    search_fields = ("fingerprint", "contact__address", "user_ids")
    readonly_fields = (
        "contact",
        "grouped_fingerprint",
        "fingerprint",
        "version",
        "algorithm",
        "user_ids",
        "key_created",
        "usable_until",
        "added",
        "last_checked",
        "problem",
        "armored",
    )
    exclude = ("certificate",)

    @admin.display(description="fingerprint")
    def grouped_fingerprint(self, key: ContactKey) -> str:
        return fingerprint_groups(key.fingerprint)

    @admin.display(description="public key")
    def armored(self, key: ContactKey) -> str:
        try:
            text = str(pysequoia.Cert.from_bytes(bytes(key.certificate)))
        except Exception as exc:  # noqa: BLE001 (pysequoia raises plain Exception)
            return f"unreadable certificate: {exc}"
        return format_html("<pre>{}</pre>", text)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(PendingChange)
class PendingChangeAdmin(admin.ModelAdmin):
    list_display = ("pk", "contact", "state", "sent_to", "created", "expires")
    list_filter = ("state", "remove_key")
    search_fields = (
        "contact__address",
        "new_address",
        "sent_to",
        "previous_address",
        "new_key__fingerprint",
        "previous_key__fingerprint",
    )
    exclude = ("token_hash",)

    def get_readonly_fields(
        self, request: HttpRequest, obj: object = None
    ) -> list[str]:
        return [
            field.name
            for field in PendingChange._meta.fields
            if field.name != "token_hash"
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("time", "kind", "contact", "actor", "client_address")
    list_filter = ("kind",)
    search_fields = (
        "contact__address",
        "actor",
        "customer__account_number",
        "client_address",
    )
    date_hierarchy = "time"

    def get_readonly_fields(
        self, request: HttpRequest, obj: object = None
    ) -> list[str]:
        return [field.name for field in AuditEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
