from django.apps import AppConfig


class ServerConfig(AppConfig):
    name = "sealmail.server"
    label = "server"
    verbose_name = "Server"
