from django.apps import AppConfig


class InboundConfig(AppConfig):
    name = "sealmail.inbound"
    label = "inbound"
    verbose_name = "Inbound mail and tickets"
