from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "sealmail.outbox"
    label = "outbox"
    verbose_name = "Outbox"
