from django.contrib import admin

from sealmail.inbound.models import InboundMessage, MessagePart, Ticket, TicketReply


@admin.register(InboundMessage)
class InboundMessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "received_at",
        "protocol",
        "state",
        "encryption",
        "ticket",
        "size",
    )
    list_filter = ("state", "protocol", "encryption", "signed_by_customer")
    readonly_fields = (
        "received_at",
        "protocol",
        "peer",
        "mail_from",
        "rcpt_to",
        "raw",
        "size",
    )


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = ("id", "queue", "status", "subject", "customer", "updated")
    list_filter = ("queue", "status")
    search_fields = ("subject",)


@admin.register(MessagePart)
class MessagePartAdmin(admin.ModelAdmin):
    list_display = ("id", "message", "path", "content_type", "encryption", "filename")
    list_filter = ("encryption", "kind")
    readonly_fields = ("content",)


@admin.register(TicketReply)
class TicketReplyAdmin(admin.ModelAdmin):
    list_display = ("id", "ticket", "kind", "author", "outbox_id", "created")
