"""The audit log in a real browser against a real daphne: a role changed in the admin's form is
listed with who made the change and before → after. Leaves artifacts/<test name>.png."""

import pytest
from auditlog.models import LogEntry
from playwright.sync_api import expect

from accounts.models import Membership, Role
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_a_role_changed_in_the_admin_is_listed_in_the_audit_log(live_url, page, superuser, member, org):
    membership = Membership.objects.get(user=member, org=org)
    page.goto(f"{live_url}/admin/login/?next=/admin/")
    page.get_by_label("Email").fill(superuser.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_url}/admin/accounts/membership/{membership.pk}/change/")

    page.get_by_label("Role").select_option(Role.MANAGER)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    page.goto(f"{live_url}/admin/auditlog/logentry/")

    row = page.locator("#result_list tbody tr", has_text="role: member → manager")
    expect(row).to_have_count(1)
    expect(row.locator(".field-user_url")).to_have_text(superuser.email)
    expect(row.locator(".field-resource_url")).to_contain_text("member@acme.test in Acme (manager)")
    entry = LogEntry.objects.get_for_object(membership).get(action=LogEntry.Action.UPDATE, changes__has_key="role")
    assert (entry.actor, entry.remote_addr) == (superuser, "127.0.0.1")
