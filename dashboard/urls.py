from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard import job_views, tokenset_views, views

urlpatterns = [
    path("", views.pools, name="pools"),
    path("pools/<slug:slug>/", views.pool, name="pool"),
    path("pools/<slug:slug>/tokens/", views.tokens, name="tokens"),
    path("pools/<slug:slug>/token/", views.token, name="token"),
    path("pools/<slug:slug>/attachment/", views.attachment, name="attachment"),
    path("pools/<slug:slug>/failures/", views.failures, name="failures"),
    path("pools/<slug:slug>/stale/", views.stale, name="stale"),
    path("pools/<slug:slug>/jobs/new/", job_views.job_new, name="job_new"),
    path("pools/<slug:slug>/jobs/", job_views.job_create, name="job_create"),
    path("pools/<slug:slug>/tokensets/new/", tokenset_views.tokenset_new, name="tokenset_new"),
    path("pools/<slug:slug>/tokensets/", tokenset_views.tokenset_create, name="tokenset_create"),
    path("jobs/", job_views.jobs, name="jobs"),
    path("jobs/<int:pk>/", job_views.job, name="job"),
    path("jobs/<int:pk>/cancel/", job_views.job_cancel, name="job_cancel"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

handler404 = "dashboard.views.not_found"

# --- exports (issue 6) ---
from dashboard import export_views  # noqa: E402

urlpatterns += [path("pools/<slug:slug>/export/", export_views.export, name="export")]
