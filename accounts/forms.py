from django import forms
from django.contrib.auth.forms import AuthenticationForm


class LoginForm(AuthenticationForm):
    """Django's login form, asking for an email and saying plainly what went wrong.

    The field keeps the name `username` because `authenticate()` and
    LoginView expect it; only its label and widget change.
    """

    username = forms.CharField(
        label="Email",
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "username", "autocapitalize": "none"}),
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        # One message for an unknown email and a wrong password, so the form
        # does not tell a stranger which emails have accounts.
        "invalid_login": "That email and password don’t match an account. Check them and try again.",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.data.get("username"):
            # Back after a failed attempt, the email is kept: the password is what to retype.
            self.fields["username"].widget.attrs.pop("autofocus", None)
            self.fields["password"].widget.attrs["autofocus"] = True

    def clean_username(self) -> str:
        # Emails are stored lower-cased (UserManager.create_user), and the
        # backend's lookup is exact: lower-case here so Ana@Acme.test logs in.
        return self.cleaned_data["username"].strip().lower()
