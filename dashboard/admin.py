from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User

from dashboard.models import ApiToken, PoolRole


class PoolRoleInline(admin.TabularInline):
    model = PoolRole
    extra = 1
    fields = ("pool", "role", "from_sso")
    readonly_fields = ("from_sso",)  # set at each single sign-on login from the provider's claims, replaced then


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserWithRolesAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, PoolRoleInline]


@admin.register(Group)
class GroupWithRolesAdmin(GroupAdmin):
    inlines = [*GroupAdmin.inlines, PoolRoleInline]


@admin.register(PoolRole)
class PoolRoleAdmin(admin.ModelAdmin):
    list_display = ("pool", "role", "user", "group", "from_sso")
    list_filter = ("pool", "role", "from_sso")
    search_fields = ("pool", "user__username", "group__name")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """For revoking someone's token; the secret itself is never stored, only its hash."""

    list_display = ("name", "user", "scope", "hint", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("scope",)
    fields = ("name", "user", "hint", "scope", "pools", "created_at", "expires_at", "last_used_at", "revoked_at")
    readonly_fields = ("hint", "user", "created_at", "last_used_at")

    def has_add_permission(self, request):
        return False  # made on /account/, where the secret is shown once
