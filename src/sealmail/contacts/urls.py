from django.urls import path

from sealmail.contacts import views

app_name = "contacts"

urlpatterns = [
    path("", views.home, name="home"),
]
