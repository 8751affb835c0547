from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "sealmail.api"
    label = "api"
    verbose_name = "API"
