"""Staff views of the line and order registries, events, flap windows and key events."""

from django.contrib import admin

from sealmail.notifications.models import (
    FlapWindow,
    KeyEvent,
    KeyExpiryWarning,
    Line,
    LineEvent,
    Order,
    OrderEvent,
)


@admin.register(Line)
class LineAdmin(admin.ModelAdmin):
    list_display = ("line_id", "customer", "label", "updated")
    search_fields = ("line_id", "label", "customer__account_number")
    raw_id_fields = ("customer",)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("order_id", "customer", "label", "updated")
    search_fields = ("order_id", "label", "customer__account_number")
    raw_id_fields = ("customer",)


@admin.register(LineEvent)
class LineEventAdmin(admin.ModelAdmin):
    list_display = ("line", "state", "occurred", "received", "handling", "reason")
    list_filter = ("state", "handling")
    search_fields = ("line__line_id", "source_id")
    raw_id_fields = ("line", "window")
    date_hierarchy = "received"


@admin.register(FlapWindow)
class FlapWindowAdmin(admin.ModelAdmin):
    list_display = (
        "line",
        "opened",
        "closes",
        "continuation",
        "closed",
        "summary_sent",
    )
    list_filter = ("continuation", "summary_sent")
    search_fields = ("line__line_id",)
    raw_id_fields = ("line",)


@admin.register(OrderEvent)
class OrderEventAdmin(admin.ModelAdmin):
    list_display = ("order", "stage", "occurred", "received")
    search_fields = ("order__order_id", "stage", "source_id")
    raw_id_fields = ("order",)


@admin.register(KeyEvent)
class KeyEventAdmin(admin.ModelAdmin):
    list_display = ("contact", "kind", "source", "detail", "created")
    list_filter = ("kind", "source")
    raw_id_fields = ("contact", "key")


@admin.register(KeyExpiryWarning)
class KeyExpiryWarningAdmin(admin.ModelAdmin):
    list_display = ("contact", "key", "usable_until", "days_before", "sent")
    raw_id_fields = ("contact", "key")
