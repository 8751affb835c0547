from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "sealmail.keys"
    label = "keys"
    verbose_name = "Provider keys"
