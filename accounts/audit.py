"""Who the audit log (DESIGN §14, django-auditlog) records as the author of a change.

Which models are recorded is one list in settings (AUDITLOG_INCLUDE_TRACKING_MODELS); the log
is read in the admin (accounts/admin.py).
"""

from auditlog.middleware import AuditlogMiddleware
from axes.helpers import get_client_ip_address


class AuditActorMiddleware(AuditlogMiddleware):
    """auditlog's middleware, for signed-in users only, taking the client's address as sign-in throttling does.

    Requests without a signed-in user (the ingest and read APIs, which use keys; the login page)
    pass straight through: auditlog's middleware connects and disconnects a signal receiver
    around every request it wraps, which an ingest request would pay for nothing. Changes made
    without a request (management commands, Celery tasks) are recorded with no actor.

    auditlog takes the address from X-Forwarded-For whenever a client sends one, so anyone could
    write the address of their choice into the log. An entry names instead the address that
    sign-in throttling counts (axes' helper, configured in settings). X-Forwarded-Port is left
    out for the same reason (and behind a proxy it is the proxy's port).
    """

    def __call__(self, request):
        if not request.user.is_authenticated:
            return self.get_response(request)
        return super().__call__(request)

    @staticmethod
    def _get_remote_addr(request):
        return get_client_ip_address(request)

    @staticmethod
    def _get_remote_port(request):
        return None
