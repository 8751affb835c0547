from django import template

from sealmail.contacts.mail import fingerprint_groups
from sealmail.core.text import printable

register = template.Library()


@register.filter(name="fingerprint_groups")
def fingerprint_groups_filter(value: str) -> str:
    """Show a fingerprint in upper-case groups of four."""
    return fingerprint_groups(value or "")


@register.filter(name="printable")
def printable_filter(value: str) -> str:
    """Show untrusted text with control and format characters as escapes."""
    return printable(str(value))
