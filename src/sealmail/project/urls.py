from django.contrib import admin
from django.urls import include, path

from sealmail.api.root import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("accounts/", include("sealmail.contacts.accounts")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("staff/", include("sealmail.inbound.urls")),
    path("", include("sealmail.keys.urls")),
    path("", include("sealmail.contacts.urls")),
]
