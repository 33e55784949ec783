"""The site's addresses, grouped as a person meets them: the pools and what is read from them, the jobs that act on
them, accounts, the API, and the machine-read ones."""

from django.contrib import admin
from django.urls import path, re_path

from dashboard import (
    account_views,
    alert_views,
    api,
    export_views,
    job_views,
    observe_views,
    retry_views,
    search_views,
    tokenset_views,
    views,
)
from dashboard.throttle import ThrottledAdminLoginForm

# The admin's login says why django-axes refused it, like the site's (dashboard/throttle.py).
admin.site.login_form = ThrottledAdminLoginForm

# --- the pools: overview, a pool, an observation, its tokens, failures, stale locks, hosts, exports ---
urlpatterns = [
    path("", views.pools, name="pools"),
    path("pools/<slug:slug>/", views.pool, name="pool"),
    path("pools/<slug:slug>/obs/", observe_views.observation, name="observation"),
    path("pools/<slug:slug>/tokens/", views.tokens, name="tokens"),
    path("pools/<slug:slug>/token/", views.token, name="token"),
    path("pools/<slug:slug>/attachment/", views.attachment, name="attachment"),
    path("pools/<slug:slug>/failures/", views.failures, name="failures"),
    path("pools/<slug:slug>/stale/", views.stale, name="stale"),
    path("pools/<slug:slug>/hosts/", observe_views.hosts, name="hosts"),
    path("pools/<slug:slug>/export/", export_views.export, name="export"),
    path("search/", search_views.search, name="search"),
]

# --- alerts on a pool: rules and one's own subscription ---
urlpatterns += [
    path("pools/<slug:slug>/alerts/", alert_views.pool_alerts, name="alerts"),
    path("pools/<slug:slug>/alerts/rules/", alert_views.rule_create, name="alert_rule_create"),
    path("pools/<slug:slug>/alerts/rules/<int:pk>/delete/", alert_views.rule_delete, name="alert_rule_delete"),
    path("pools/<slug:slug>/alerts/subscription/", alert_views.subscription, name="alert_subscription"),
    # --- retry rules of a pool ---
    path("pools/<slug:slug>/retries/", retry_views.retry_rules, name="retry_rules"),
    path("pools/<slug:slug>/retries/rules/", retry_views.rule_save, name="retry_rule_create"),
    path("pools/<slug:slug>/retries/rules/<int:pk>/", retry_views.rule_save, name="retry_rule_change"),
    path("pools/<slug:slug>/retries/rules/<int:pk>/switch/", retry_views.rule_switch, name="retry_rule_switch"),
    path("pools/<slug:slug>/retries/rules/<int:pk>/delete/", retry_views.rule_delete, name="retry_rule_delete"),
    path("pools/<slug:slug>/retries/pause/", retry_views.pause, name="retry_pause"),
]

# --- jobs: preview and start an action, a new token set, watch, cancel, the audit list ---
urlpatterns += [
    path("pools/<slug:slug>/jobs/new/", job_views.job_new, name="job_new"),
    path("pools/<slug:slug>/jobs/", job_views.job_create, name="job_create"),
    path("pools/<slug:slug>/tokensets/new/", tokenset_views.tokenset_new, name="tokenset_new"),
    path("pools/<slug:slug>/tokensets/", tokenset_views.tokenset_create, name="tokenset_create"),
    path("jobs/", job_views.jobs, name="jobs"),
    path("jobs/<int:pk>/", job_views.job, name="job"),
    path("jobs/<int:pk>/cancel/", job_views.job_cancel, name="job_cancel"),
    path("jobs/<int:pk>/tokens/", job_views.job_tokens, name="job_tokens"),
]

# --- accounts: sign in (password or single sign-on), out, one's API tokens; the admin ---
urlpatterns += [
    path("accounts/login/", account_views.sign_in, name="login"),
    path("accounts/sso/", account_views.sso_start, name="sso_start"),
    path("accounts/sso/callback/", account_views.sso_callback, name="sso_callback"),
    path("accounts/logout/", account_views.log_out, name="logout"),
    path("account/", account_views.account, name="account"),
    path("account/tokens/", account_views.token_create, name="api_token_create"),
    path("account/tokens/<int:pk>/revoke/", account_views.token_revoke, name="api_token_revoke"),
    path("admin/login/", account_views.admin_login),
    path("admin/", admin.site.urls),
]

# --- the JSON API, and what machines read: metrics and health ---
urlpatterns += [
    path("api/v1/", api.urls()),
    re_path(r"^api/v1/(?P<rest>.*)$", api.unknown_path),  # a JSON 404 for any other path under the API
    path("metrics", observe_views.metrics_view, name="metrics"),
    path("healthz", observe_views.healthz, name="healthz"),
]

handler404 = "dashboard.views.not_found"
