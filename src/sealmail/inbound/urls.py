from django.urls import path

from sealmail.inbound import views

app_name = "staff"

urlpatterns = [
    path("", views.ticket_list, name="tickets"),
    path("unfiled/", views.unfiled, name="unfiled"),
    path("tickets/<int:ticket_id>/", views.ticket_detail, name="ticket"),
    path("tickets/<int:ticket_id>/reply/", views.ticket_reply, name="reply"),
    path("tickets/<int:ticket_id>/status/", views.ticket_status, name="status"),
    path("parts/<int:part_id>/download/", views.part_download, name="download"),
    path("messages/<int:message_id>/raw/", views.message_raw, name="raw"),
]
