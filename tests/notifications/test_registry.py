"""The line and order registry: API sync, single entries and the CSV import."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from sealmail.notifications.models import Line, LineEvent, Order
from sealmail.notifications.registry import RegistryError, parse_csv, sync
from tests.notifications.conftest import make_customer

pytestmark = [pytest.mark.django_db, pytest.mark.db_backends]


@pytest.fixture
def customers(db):
    return make_customer("K-1"), make_customer("K-2")


def test_api_sync_creates_and_updates(api, customers):
    response = api.put(
        "/api/v1/registry/lines",
        {
            "entries": [
                {"line_id": "L-1", "account_number": "K-1", "label": "Office"},
                {"line_id": "L-2", "account_number": "K-2"},
            ]
        },
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"created": 2, "updated": 0, "unchanged": 0, "deleted": 0}
    response = api.put(
        "/api/v1/registry/lines",
        {
            "entries": [
                {"line_id": "L-1", "account_number": "K-2", "label": "Office"},
                {"line_id": "L-2", "account_number": "K-2"},
            ]
        },
    )
    assert response.json() == {"created": 0, "updated": 1, "unchanged": 1, "deleted": 0}
    assert Line.objects.get(line_id="L-1").customer.account_number == "K-2"


def test_api_sync_replace_deletes_missing(api, customers):
    sync("lines", [_entry("L-1", "K-1"), _entry("L-2", "K-1")])
    response = api.put(
        "/api/v1/registry/lines",
        {"entries": [{"line_id": "L-2", "account_number": "K-1"}], "replace": True},
    )
    assert response.json()["deleted"] == 1
    assert list(Line.objects.values_list("line_id", flat=True)) == ["L-2"]


def test_api_sync_unknown_account_rejects_all(api, customers):
    response = api.put(
        "/api/v1/registry/orders",
        {
            "entries": [
                {"order_id": "O-1", "account_number": "K-1"},
                {"order_id": "O-2", "account_number": "K-404"},
            ]
        },
    )
    assert response.status_code == 400
    assert "'K-404'" in response.json()["detail"]
    assert not Order.objects.exists()


def test_api_needs_token(client, customers):
    response = client.put(
        "/api/v1/registry/lines", {"entries": []}, content_type="application/json"
    )
    assert response.status_code == 401


def test_api_get_and_delete_line(api, customers):
    sync("lines", [_entry("L-9", "K-1", "Backup")])
    response = api.get("/api/v1/registry/lines/L-9")
    assert response.json() == {"id": "L-9", "account_number": "K-1", "label": "Backup"}
    assert api.delete("/api/v1/registry/lines/L-9").status_code == 204
    assert api.get("/api/v1/registry/lines/L-9").status_code == 404
    missing = api.delete("/api/v1/registry/lines/L-9")
    assert missing.status_code == 404
    assert "'L-9'" in missing.json()["detail"]


def test_duplicate_and_empty_ids_named(customers):
    with pytest.raises(RegistryError) as excinfo:
        sync("lines", [_entry("L-1", "K-1"), _entry("L-1", "K-2"), _entry("", "K-1")])
    message = str(excinfo.value)
    assert "'L-1' is listed twice" in message
    assert "entry 3: the line id is empty" in message


def test_dry_run_writes_nothing(customers):
    result = sync("lines", [_entry("L-1", "K-1")], dry_run=True)
    assert result.created == 1
    assert not Line.objects.exists()


def test_replace_deletes_events_too(customers):
    sync("lines", [_entry("L-1", "K-1"), _entry("L-2", "K-1")])
    from django.utils import timezone

    LineEvent.objects.create(
        line=Line.objects.get(line_id="L-1"),
        state="down",
        occurred=timezone.now(),
        received=timezone.now(),
        handling=LineEvent.Handling.REPEAT,
    )
    result = sync("lines", [_entry("L-2", "K-1")], replace=True)
    assert result.deleted == 1
    assert not LineEvent.objects.exists()


def test_csv_import_command(tmp_path, customers, capsys):
    path = tmp_path / "lines.csv"
    path.write_text(
        'line_id,account_number,label\nL-1,K-1,Office\n\nL-2,K-2,"Berlin, 2nd floor"\n',
        encoding="utf-8",
    )
    call_command("importregistry", "lines", str(path))
    assert "2 created" in capsys.readouterr().out
    assert Line.objects.get(line_id="L-2").label == "Berlin, 2nd floor"


def test_csv_import_unknown_account(tmp_path, customers):
    path = tmp_path / "orders.csv"
    path.write_text("order_id,account_number\nO-1,K-1\nO-2,K-77\n", encoding="utf-8")
    with pytest.raises(CommandError) as excinfo:
        call_command("importregistry", "orders", str(path))
    assert "'K-77'" in str(excinfo.value)
    assert "nothing was imported" in str(excinfo.value)
    assert not Order.objects.exists()


def test_csv_import_missing_file(customers):
    with pytest.raises(CommandError, match="reading '/nonexistent.csv' failed"):
        call_command("importregistry", "lines", "/nonexistent.csv")


def test_csv_header_checked():
    with pytest.raises(RegistryError, match="is missing account_number"):
        parse_csv("line_id,customer\nL-1,K-1\n", "lines")


def test_csv_extra_field_named():
    with pytest.raises(RegistryError, match="CSV line 2 has more fields"):
        parse_csv("id,account_number\nL-1,K-1,extra\n", "lines")


def test_csv_accepts_plain_id_column():
    entries = parse_csv("id,account_number,label\nL-1,K-1,x\n", "lines")
    assert [(e.item_id, e.account_number, e.label) for e in entries] == [
        ("L-1", "K-1", "x")
    ]


def _entry(item_id, number, label=""):
    from sealmail.notifications.registry import Entry

    return Entry(item_id, number, label)


def test_control_characters_rejected(customers):
    with pytest.raises(RegistryError) as excinfo:
        sync("lines", [_entry("L\x00-1", "K-1"), _entry("L-2", "K-1", "two\nlines")])
    message = str(excinfo.value)
    assert "entry 1: line id" in message
    assert "entry 2: the label contains a line break" in message
