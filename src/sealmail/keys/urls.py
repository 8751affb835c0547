"""Public URLs of the provider keys: the key page, downloads and Web Key Directory."""

from django.urls import path, re_path

from sealmail.keys import views

app_name = "keys"

_DOMAIN = r"(?P<domain>[A-Za-z0-9.-]{1,253})"

urlpatterns = [
    path("keys/", views.provider_keys, name="provider_keys"),
    re_path(
        r"^keys/(?P<fingerprint>[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})\.(?P<extension>asc|pgp)$",
        views.provider_key_download,
        name="provider_key_download",
    ),
    # Direct layout: https://DOMAIN/.well-known/openpgpkey/hu/HASH
    path(".well-known/openpgpkey/hu/<str:digest>", views.wkd_key, name="wkd_direct"),
    path(".well-known/openpgpkey/policy", views.wkd_policy, name="wkd_direct_policy"),
    # Advanced layout: https://openpgpkey.DOMAIN/.well-known/openpgpkey/DOMAIN/hu/HASH
    re_path(
        rf"^\.well-known/openpgpkey/{_DOMAIN}/hu/(?P<digest>[^/]+)$",
        views.wkd_key,
        name="wkd_advanced",
    ),
    re_path(
        rf"^\.well-known/openpgpkey/{_DOMAIN}/policy$",
        views.wkd_policy,
        name="wkd_advanced_policy",
    ),
]
