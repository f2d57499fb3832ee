from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

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


def locked_out(request: HttpRequest, response: HttpResponse | None = None, credentials: dict | None = None):
    """What django-axes answers a sign-in that its throttle refuses (AXES_LOCKOUT_CALLABLE):
    429, the page saying why and for how long, and Retry-After."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    answer = render(
        request,
        "registration/locked_out.html",
        {"failure_limit": settings.AXES_FAILURE_LIMIT, "minutes": max(1, seconds // 60)},
        status=429,
    )
    answer["Retry-After"] = str(seconds)
    return answer
