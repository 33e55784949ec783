from django import forms
from django.contrib import admin

from tokens.models import ExitCodeMeaning, PoolConfig


class PoolConfigForm(forms.ModelForm):
    # Never send a stored password back to the browser.
    password = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False,
                               help_text="Leave empty to keep the stored password.")
    # A server typed without a scheme is taken as https (production CouchDB servers are; Django 6's default too).
    url = forms.URLField(assume_scheme="https", help_text=PoolConfig._meta.get_field("url").help_text)

    class Meta:
        model = PoolConfig
        fields = ["slug", "name", "url", "database", "username", "password", "group_field", "create_views"]

    def clean_password(self):
        return self.cleaned_data["password"] or (self.instance.password if self.instance.pk else "")


@admin.register(PoolConfig)
class PoolConfigAdmin(admin.ModelAdmin):
    form = PoolConfigForm
    list_display = ("slug", "name", "url", "database", "group_field", "create_views")


@admin.register(ExitCodeMeaning)
class ExitCodeMeaningAdmin(admin.ModelAdmin):
    list_display = ("pool", "code", "meaning")
    list_filter = ("pool",)
