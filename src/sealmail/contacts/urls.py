from django.urls import path

from sealmail.contacts import views

app_name = "contacts"

urlpatterns = [
    path("", views.home, name="home"),
    path("contacts/<int:pk>/", views.contact_update, name="update"),
    path(
        "contacts/<int:pk>/cancel-pending/",
        views.contact_cancel_pending,
        name="cancel_pending",
    ),
    path("confirm/<int:change_id>/<str:token>/", views.confirm, name="confirm"),
    path("cancel/<int:change_id>/<str:token>/", views.cancel, name="cancel"),
    path("provider-keys.asc", views.provider_keys_download, name="provider_keys"),
]
