from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.pools, name="pools"),
    path("pools/<slug:slug>/", views.pool, name="pool"),
    path("pools/<slug:slug>/tokens/", views.tokens, name="tokens"),
    path("pools/<slug:slug>/token/", views.token, name="token"),
    path("pools/<slug:slug>/attachment/", views.attachment, name="attachment"),
    path("pools/<slug:slug>/failures/", views.failures, name="failures"),
    path("pools/<slug:slug>/stale/", views.stale, name="stale"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

handler404 = "dashboard.views.not_found"
