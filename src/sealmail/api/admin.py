from django.contrib import admin

from sealmail.api.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "active", "created", "last_used")
    readonly_fields = ("token_hash", "created", "last_used")
    search_fields = ("name",)
