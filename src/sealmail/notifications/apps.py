from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "sealmail.notifications"
    label = "notifications"
    verbose_name = "Notifications"
