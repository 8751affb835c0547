from django.apps import AppConfig


class ContactsConfig(AppConfig):
    name = "sealmail.contacts"
    label = "contacts"
    verbose_name = "Contacts and portal"
