from django.contrib import admin

from sealmail.inbound.models import InboundMessage


@admin.register(InboundMessage)
class InboundMessageAdmin(admin.ModelAdmin):
    list_display = ("id", "received_at", "protocol", "mail_from", "size")
    readonly_fields = (
        "received_at",
        "protocol",
        "peer",
        "mail_from",
        "rcpt_to",
        "raw",
        "size",
    )
