"""The ``sealmail`` command: Django's management commands with sealmail's settings.

``sealmail serve``, ``web``, ``worker`` and ``smtpd`` run the service; every
other Django command (``migrate``, ``createsuperuser``, ...) works as with
``manage.py``.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sealmail.project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["sealmail", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
