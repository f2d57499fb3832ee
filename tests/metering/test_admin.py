"""The metering admin: usage data is read-only, model prices are edited by superusers only."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import Tag
from metering.admin import CappedCountPaginator
from metering.models import LLMModel, ModelPrice, UsageRecord, UsageRecordTag

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def llm(db):
    return LLMModel.objects.create(name="test-model-1", provider="test-provider")


@pytest.fixture
def price(llm):
    return ModelPrice.objects.create(model=llm, effective_from="2025-01-01", input=3, output=15)


@pytest.fixture
def record(org, member, llm, price):
    record = UsageRecord.objects.create(
        org=org,
        timestamp=T0,
        user=member,
        model=llm,
        price=price,
        request_id="req-1",
        input_tokens=1000,
        output_tokens=200,
        cost=Decimal("0.006"),
    )
    UsageRecordTag.objects.create(record=record, tag=Tag.objects.create(org=org, name="nightly"))
    return record


def test_usage_records_cannot_be_added_through_the_admin(su_client):
    assert su_client.get(url(UsageRecord, "add")).status_code == 403
    assert su_client.post(url(UsageRecord, "add"), {"request_id": "forged"}).status_code == 403
    assert not UsageRecord.objects.exists()


def test_usage_records_are_shown_but_cannot_be_changed(su_client, record):
    response = su_client.get(url(UsageRecord, "change", record.pk))
    assert response.status_code == 200
    assert "nightly" in response.content.decode()  # its tags
    assert 'name="_save"' not in response.content.decode()

    response = su_client.post(url(UsageRecord, "change", record.pk), {"request_id": "req-1", "input_tokens": 1})

    assert response.status_code == 403
    record.refresh_from_db()
    assert record.input_tokens == 1000


def test_only_a_superuser_may_delete_usage_records(su_client, admin_client_, record):
    assert admin_client_.get(url(UsageRecord, "delete", record.pk)).status_code == 403
    assert su_client.get(url(UsageRecord, "delete", record.pk)).status_code == 200


def test_usage_is_found_by_exact_request_id_or_the_start_of_an_email(su_client, record):
    def found(q):
        return list(su_client.get(url(UsageRecord, "changelist"), {"q": q}).context["cl"].result_list)

    assert found("req-1") == [record]
    assert found("member@") == [record]
    assert found("req") == []


def test_the_usage_list_drills_down_by_date(su_client, record):
    assert len(su_client.get(url(UsageRecord, "changelist"), {"timestamp__year": 2026}).context["cl"].result_list) == 1
    assert len(su_client.get(url(UsageRecord, "changelist"), {"timestamp__year": 2025}).context["cl"].result_list) == 0


def test_the_usage_list_never_counts_more_than_the_cap(su_client, record, monkeypatch):
    for i in range(2):
        UsageRecord.objects.create(
            org=record.org, timestamp=T0, user=record.user, model=record.model, request_id=f"r{i}"
        )
    monkeypatch.setattr(CappedCountPaginator, "CAP", 2)

    cl = su_client.get(url(UsageRecord, "changelist")).context["cl"]

    assert cl.result_count == 2
    assert cl.full_result_count is None  # no COUNT(*) of the whole table either


def test_an_org_admin_sees_their_orgs_usage_only(admin_client_, record, other_org, outsider, llm):
    UsageRecord.objects.create(org=other_org, timestamp=T0, user=outsider, model=llm, request_id="globex-1")

    cl = admin_client_.get(url(UsageRecord, "changelist")).context["cl"]

    assert list(cl.result_list) == [record]


def test_model_prices_are_edited_in_the_list(su_client, price):
    data = {
        "form-TOTAL_FORMS": 1,
        "form-INITIAL_FORMS": 1,
        "form-0-id": price.pk,
        "form-0-input": "2.5",
        "form-0-cached_input": "0.25",
        "form-0-cache_write": "3.125",
        "form-0-output": "10",
        "_save": "Save",
    }

    response = su_client.post(url(ModelPrice, "changelist"), data)

    assert response.status_code == 302
    price.refresh_from_db()
    assert (price.input, price.cached_input, price.cache_write, price.output) == (
        Decimal("2.5"),
        Decimal("0.25"),
        Decimal("3.125"),
        Decimal("10"),
    )


def test_a_price_records_were_costed_at_cannot_change_under_them(su_client, price, record):
    UsageRecord.objects.filter(pk=record.pk).update(price=price, cost=Decimal("0.5"))
    data = {
        "form-TOTAL_FORMS": 1,
        "form-INITIAL_FORMS": 1,
        "form-0-id": price.pk,
        "form-0-input": "99",
        "form-0-cached_input": price.cached_input,
        "form-0-cache_write": price.cache_write,
        "form-0-output": price.output,
        "_save": "Save",
    }

    response = su_client.post(url(ModelPrice, "changelist"), data)

    assert response.status_code == 200
    assert "can no longer change" in response.content.decode()
    price.refresh_from_db()
    assert price.input != 99


def test_an_llm_models_page_lists_its_prices(su_client, llm, price):
    response = su_client.get(url(LLMModel, "change", llm.pk))

    assert response.context["inline_admin_formsets"][0].formset.queryset.get() == price


def test_an_org_admin_views_prices_but_cannot_change_them(admin_client_, llm, price):
    response = admin_client_.get(url(ModelPrice, "changelist"))
    assert response.status_code == 200
    assert 'name="form-0-input"' not in response.content.decode()

    assert admin_client_.get(url(ModelPrice, "change", price.pk)).status_code == 200
    assert admin_client_.post(url(ModelPrice, "change", price.pk), {"input": "0"}).status_code == 403
    assert admin_client_.get(url(ModelPrice, "add")).status_code == 403
    assert admin_client_.post(url(LLMModel, "change", llm.pk), {"name": "renamed"}).status_code == 403
    price.refresh_from_db()
    assert price.input == 3
