"""Convert model field values for ``executemany`` with less per-value work.

``Field.get_db_prep_save`` runs several Python calls for every value, which
was the largest cost of writing a batch's rows. A :class:`ValueConverter`
passes a value through where Django returns it unchanged: a ``str`` or
``None`` for a text column, an ``int`` or ``None`` for a foreign key. It
converts an aware ``datetime`` for a timestamp column with the backend's
adapter alone, which is what Django's chain of calls ends in, and any other
value once per distinct object.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Field

# Internal field types, and the Python types whose database value is the
# value itself. Integer fields are not listed, because Django 5 wraps their
# values for PostgreSQL.
_PASS_THROUGH: dict[str, tuple[type, ...]] = {
    "CharField": (str,),
    "TextField": (str,),
    "ForeignKey": (int,),
}


class ValueConverter:
    """Convert the values of one field for the default database connection."""

    def __init__(self, field: Field) -> None:
        self.field = field
        self.attname: str = field.attname
        internal_type = field.get_internal_type()
        self._plain = _PASS_THROUGH.get(internal_type, ())
        self._timestamp = internal_type == "DateTimeField"
        # id(value) -> (value, converted); keeping the value keeps its id unique.
        self._converted: dict[int, tuple[Any, Any]] = {}

    def __call__(self, value: Any) -> Any:
        if self._plain and (value is None or type(value) in self._plain):
            return value
        if self._timestamp and type(value) is datetime and value.tzinfo is not None:
            # DateTimeField.get_db_prep_save() leaves an aware datetime as it
            # is until the backend adapts it.
            return connection.ops.adapt_datetimefield_value(value)
        known = self._converted.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        converted = self.field.get_db_prep_save(value, connection)
        self._converted[id(value)] = (value, converted)
        return converted
