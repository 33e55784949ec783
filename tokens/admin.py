from django import forms
from django.contrib import admin

from tokens.models import ExitCodeMeaning, PoolConfig


class PoolConfigForm(forms.ModelForm):
    # Never sent back to the browser, never stored in clear (encrypted with SECRETS_KEY, tokens/secretbox.py).
    password = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False,
                               help_text="Stored encrypted. Leave empty to keep the stored one.")
    clear_password = forms.BooleanField(required=False, label="Remove the stored password")
    # A server typed without a scheme is taken as https (production CouchDB servers are; Django 6's default too).
    url = forms.URLField(assume_scheme="https", help_text=PoolConfig._meta.get_field("url").help_text)

    class Meta:
        model = PoolConfig
        fields = ["slug", "name", "url", "database", "username", "password", "clear_password", "password_env",
                  "group_field", "create_views"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password") and cleaned.get("password_env"):
            raise forms.ValidationError("Give a password, or the environment variable to read it from: not both.")
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data.get("password"):
            self.instance.password = self.cleaned_data["password"]
        elif self.cleaned_data.get("clear_password") or self.cleaned_data.get("password_env"):
            self.instance.password_sealed = ""
        return super().save(commit)


@admin.register(PoolConfig)
class PoolConfigAdmin(admin.ModelAdmin):
    form = PoolConfigForm
    list_display = ("slug", "name", "url", "database", "group_field", "create_views", "password_kept")

    @admin.display(description="password")
    def password_kept(self, config):
        if config.password_env:
            return f"from {config.password_env}"
        return "stored encrypted" if config.password_sealed else "none"


@admin.register(ExitCodeMeaning)
class ExitCodeMeaningAdmin(admin.ModelAdmin):
    list_display = ("pool", "code", "meaning")
    list_filter = ("pool",)
