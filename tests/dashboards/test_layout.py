"""The dashboards' page frame: navigation, org switcher, role, filter bar, local scripts."""

import re

import pytest
from django import forms
from django.contrib.staticfiles import finders
from django.middleware.csrf import get_token
from django.template import RequestContext, Template
from django.template.loader import render_to_string
from django.test import RequestFactory

from accounts.access import scopes_for_user
from accounts.models import Membership, Role

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.dashboards.layout_urls")]


class SampleFilters(forms.Form):
    range = forms.ChoiceField(choices=[("7d", "Last 7 days"), ("30d", "Last 30 days")], initial="30d")
    team = forms.MultipleChoiceField(choices=[("Platform", "Platform"), ("Web", "Web")], required=False)


def render_layout(user, page_name="overview", org_slug="acme", template=None, **context):
    request = RequestFactory().get(f"/{org_slug}/{page_name}/")
    request.user = user
    get_token(request)
    scopes = scopes_for_user(user)
    scope = next(s for s in scopes if s.org.slug == org_slug)
    context = {"scope": scope, "scopes": scopes, "page_name": page_name, **context}
    if template is not None:
        return Template(template).render(RequestContext(request, context))
    return render_to_string("dashboards/layout.html", context, request=request)


def nav(html):
    return html[html.index('<nav class="nav"') : html.index("</nav>")]


def test_it_links_the_five_pages_of_the_org_and_marks_the_current_one(admin):
    html = render_layout(admin, page_name="usage")

    links = re.findall(r'<a class="nav__link" href="([^"]+)" data-page="(\w+)"( aria-current="page")?', nav(html))
    assert links == [
        ("/acme/overview/", "overview", ""),
        ("/acme/usage/", "usage", ' aria-current="page"'),
        ("/acme/analytics/", "analytics", ""),
        ("/acme/agents/", "agents", ""),
        ("/acme/resources/", "resources", ""),
    ]
    assert "<title>Usage · Acme · Tally</title>" in html
    assert '<h1 class="page-title">Usage</h1>' in html


@pytest.mark.parametrize("role", ["admin", "manager", "member"])
def test_it_shows_the_viewers_role_as_a_badge(request, role):
    html = render_layout(request.getfixturevalue(role))

    assert f'<span class="badge badge--role badge--{role}" data-role="{role}">{role.capitalize()}</span>' in html


def test_the_org_switcher_keeps_the_page_in_every_org(admin, other_org):
    Membership.objects.create(user=admin, org=other_org, role=Role.MEMBER)

    html = render_layout(admin, page_name="analytics")

    switcher = html[html.index('<details class="menu org-switch"') : html.index("</details>")]
    assert re.findall(r'href="([^"]+)" data-org="(\w+)"( aria-current="true")?', switcher) == [
        ("/acme/analytics/", "acme", ' aria-current="true"'),
        ("/globex/analytics/", "globex", ""),
    ]
    assert 'badge--member" title="Your role">Member</span>' in switcher


def test_the_org_switcher_lists_the_orgs_a_superuser_reaches(superuser, org, other_org):
    html = render_layout(superuser, org_slug="globex")

    assert 'href="/acme/overview/" data-org="acme"' in html
    assert 'href="/globex/overview/" data-org="globex" aria-current="true"' in html


def test_one_org_needs_no_switcher(member):
    html = render_layout(member)

    assert "org-switch" not in html
    assert '<span class="org-chip__name">Acme</span>' in html


def test_it_loads_htmx_chart_js_and_the_page_scripts_from_static(member):
    html = render_layout(member)

    scripts = re.findall(r'<script[^>]* src="([^"]+)"', html)
    assert scripts == [
        "/static/django_htmx/htmx-2.min.js",
        "/static/vendor/chart.js/chart.umd.min.js",
        "/static/vendor/chartjs-adapter-date-fns/chartjs-adapter-date-fns.bundle.min.js",
        "/static/js/charts.js",
        "/static/js/tally.js",
        "/static/js/live.js",
    ]
    for url in scripts[1:]:
        assert finders.find(url.removeprefix("/static/")), url
    assert 'hx-headers=\'{"X-CSRFToken": "' in html


def test_it_renders_the_filter_form_as_a_get_form_kept_in_the_url(member):
    html = render_layout(member, filter_form=SampleFilters({"range": "7d", "team": ["Web"]}))

    form = html[html.index('<form class="filter-bar') : html.index("</form>", html.index('<form class="filter-bar'))]
    assert 'method="get" action="/acme/overview/"' in form
    assert '<option value="7d" selected>Last 7 days</option>' in form
    assert '<option value="Web" selected>Web</option>' in form


def test_without_a_filter_form_there_is_no_filter_bar(member):
    assert "filter-bar" not in render_layout(member)


def test_a_page_fills_the_blocks(manager):
    html = render_layout(
        manager,
        page_name="agents",
        template="""{% extends "dashboards/layout.html" %}
        {% block page_actions %}<button class="btn">Refresh</button>{% endblock %}
        {% block root_attrs %} data-live-state="off"{% endblock %}
        {% block dashboard %}<section class="card" data-testid="agents">By agent</section>{% endblock %}""",
    )

    assert (
        'data-page="agents" data-org="acme" data-role="manager" hx-indicator="#loading-bar" data-live-state="off">'
        in html
    )
    body = html[html.index('id="dashboard-body"') :]
    assert '<section class="card" data-testid="agents">By agent</section>' in body
    assert '<div class="page-actions"><button class="btn">Refresh</button></div>' in html
    assert "your usage and your teams’" in html
