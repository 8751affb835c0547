from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from sealmail.outbox.delivery import get_transport


class Command(BaseCommand):
    help = "Print the portal URL, the inbound address and how to log in."

    def handle(self, *args, **options) -> None:
        host, port = settings.SEALMAIL_SMTPD_ADDR
        has_staff = get_user_model().objects.filter(is_staff=True).exists()
        lines = [
            "",
            f"sealmail portal:   {settings.SEALMAIL_BASE_URL}/",
            f"staff admin:       {settings.SEALMAIL_BASE_URL}/admin/",
            f"inbound SMTP:      {host}:{port} for {', '.join(settings.SEALMAIL_ROLE_ADDRESSES)}",
            # describe() leaves out the relay's user name and password.
            f"outgoing mail:     {get_transport().describe()}",
            f"data directory:    {settings.DATA_DIR}",
        ]
        if not has_staff:
            lines.append(
                "No staff login yet: create one with `.venv/bin/sealmail createsuperuser`, "
                "then log in at the staff admin URL."
            )
        lines.append("Stop with Ctrl-C.")
        lines.append("")
        self.stdout.write("\n".join(lines))
