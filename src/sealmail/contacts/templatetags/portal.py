from django import template

from sealmail.contacts.mail import fingerprint_groups

register = template.Library()


@register.filter(name="fingerprint_groups")
def fingerprint_groups_filter(value: str) -> str:
    """Show a fingerprint in upper-case groups of four."""
    return fingerprint_groups(value or "")
