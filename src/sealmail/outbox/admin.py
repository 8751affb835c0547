"""Staff view of the outbox: delivery status, relay replies, retry and release."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from sealmail.outbox.models import OutboxMessage, SendRequest
from sealmail.outbox.service import release_held, schedule_delivery


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "created",
        "category",
        "to_address",
        "status",
        "format",
        "attempts",
        "tls_protocol",
        "hold_reason",
    )
    list_filter = ("status", "category", "format", "hold_reason")
    search_fields = ("to_address", "message_id", "customer__account_number")
    date_hierarchy = "created"
    list_select_related = ("customer",)
    actions = ("retry_failed", "release_held_mail")
    exclude = ("composed", "lease_token")
    readonly_fields = [
        field.name
        for field in OutboxMessage._meta.get_fields()
        if getattr(field, "concrete", False)
        and field.name not in {"composed", "lease_token"}
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboxMessage]:
        return super().get_queryset(request).defer("composed", "text", "html")

    @admin.action(description="Queue the selected failed messages again")
    def retry_failed(
        self, request: HttpRequest, queryset: QuerySet[OutboxMessage]
    ) -> None:
        ids = list(
            queryset.filter(status=OutboxMessage.Status.FAILED).values_list(
                "id", flat=True
            )
        )
        OutboxMessage.objects.filter(id__in=ids).update(
            status=OutboxMessage.Status.QUEUED,
            attempts=0,
            next_attempt=timezone.now(),
            lease_until=None,
            error="",
        )
        schedule_delivery(ids)
        self.message_user(request, f"Queued {len(ids)} failed message(s) again.")

    @admin.action(
        description="Release held messages of the selected messages' contacts"
    )
    def release_held_mail(
        self, request: HttpRequest, queryset: QuerySet[OutboxMessage]
    ) -> None:
        released = 0
        held = queryset.filter(status=OutboxMessage.Status.HELD).select_related(
            "contact"
        )
        for contact in {m.contact for m in held if m.contact is not None}:
            if contact.encryption != contact.Encryption.ACTIVE:
                self.message_user(
                    request,
                    f"Contact {contact.pk} has no confirmed usable key; its mail stays held.",
                    level=messages.WARNING,
                )
                continue
            released += release_held(contact)
        self.message_user(request, f"Released {released} held message(s).")


@admin.register(SendRequest)
class SendRequestAdmin(admin.ModelAdmin):
    list_display = ("id", "created", "source", "idempotency_key")
    search_fields = ("source", "idempotency_key")
    readonly_fields = ("source", "idempotency_key", "request_hash", "created")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
