from django.contrib import messages
from django.contrib.auth import views as auth_views

from accounts.forms import LoginForm


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    # Someone already signed in who opens /login/ goes on to `next` (or home)
    # instead of seeing a form they do not need.
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    """POST only (Django 5 refuses GET with 405): a link or a prefetch must not sign anyone out."""

    def post(self, request, *args, **kwargs):
        was_signed_in = request.user.is_authenticated
        response = super().post(request, *args, **kwargs)
        if was_signed_in:
            # Added after logout() so the message lands in the fresh session.
            messages.success(request, "You have been signed out.")
        return response
