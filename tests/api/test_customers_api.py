"""POST /customers, GET /customers/{id}, GET /customers: shape, paging, filters, bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.api.helpers import assert_error, make_customer

SHAPE = {"business_id", "created_at", "customer_id", "email", "name", "phone_number", "metadata"}


def names(client, **params) -> list[str]:
    response = client.get("/customers", params=params)
    assert response.status_code == 200, response.text
    return [c["name"] for c in response.json()["items"]]


def test_create_answers_200_with_the_customer(client) -> None:
    response = client.post("/customers", json={"email": "ada@example.com", "name": "Ada"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == SHAPE
    assert body["customer_id"].startswith("cus_")
    assert {k: v for k, v in body.items() if k != "customer_id"} == {
        "business_id": "default",
        "created_at": "2026-11-25T12:00:00Z",
        "email": "ada@example.com",
        "name": "Ada",
        "phone_number": None,
        "metadata": {},
    }


def test_create_keeps_phone_number_and_metadata(client) -> None:
    response = client.post(
        "/customers",
        json={
            "email": "ada@example.com",
            "name": "Ada",
            "phone_number": "+441234567890",
            "metadata": {"plan": "pro", "seats": 3, "rate": 0.1, "trial": False},
        },
    )
    body = response.json()
    assert body["phone_number"] == "+441234567890"
    assert body["metadata"] == {"plan": "pro", "seats": 3, "rate": 0.1, "trial": False}
    assert '"rate":0.1' in response.text


def test_each_create_makes_a_new_customer(client) -> None:
    first = make_customer(client)
    second = make_customer(client)
    assert first != second


def test_the_name_is_trimmed(client) -> None:
    body = client.post("/customers", json={"email": "ada@example.com", "name": "  Ada "})
    assert body.json()["name"] == "Ada"


def test_retrieve_returns_the_created_customer(client) -> None:
    created = client.post(
        "/customers", json={"email": "ada@example.com", "name": "Ada", "metadata": {"k": "v"}}
    ).json()
    response = client.get(f"/customers/{created['customer_id']}")
    assert response.status_code == 200
    assert response.json() == created


def test_retrieve_of_an_unknown_customer_is_404_not_found(client) -> None:
    assert_error(client.get("/customers/cus_nobody"), 404, "not_found")


def test_list_is_newest_first_with_0_based_pages(client, clock) -> None:
    for name in ("First", "Second", "Third"):
        make_customer(client, f"{name.lower()}@example.com", name)
        clock.advance(timedelta(seconds=1))
    assert names(client, page_size=2) == ["Third", "Second"]
    assert names(client, page_size=2, page_number=1) == ["First"]
    assert names(client, page_size=2, page_number=2) == []


def test_list_items_have_the_customer_shape(client) -> None:
    customer_id = make_customer(client)
    [item] = client.get("/customers").json()["items"]
    assert item == client.get(f"/customers/{customer_id}").json()


def test_list_filters_by_email_ignoring_case(client) -> None:
    make_customer(client, "ada@example.com", "Ada")
    make_customer(client, "bob@example.com", "Bob")
    assert names(client, email="bob@example.com") == ["Bob"]
    assert names(client, email="BOB@Example.com") == ["Bob"]
    assert names(client, email="carol@example.com") == []


def test_list_filters_by_part_of_the_name(client) -> None:
    make_customer(client, "ada@example.com", "Ada Lovelace")
    make_customer(client, "bob@example.com", "Bob")
    assert names(client, name="love") == ["Ada Lovelace"]


def test_list_filters_by_creation_time(client, clock) -> None:
    make_customer(client, "old@example.com", "Old")
    clock.advance(timedelta(hours=1))
    make_customer(client, "new@example.com", "New")
    assert names(client, created_at_gte="2026-11-25T12:30:00Z") == ["New"]
    assert names(client, created_at_lte="2026-11-25T12:00:00Z") == ["Old"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "not-an-email", "name": "Ada"}, 422, "invalid_customer"),
        ({"email": "ada@localhost", "name": "Ada"}, 422, "invalid_customer"),
        ({"email": "a da@example.com", "name": "Ada"}, 422, "invalid_customer"),
        ({"email": "@example.com", "name": "Ada"}, 422, "invalid_customer"),
        ({"email": "ada@example.com", "name": "   "}, 422, "invalid_customer"),
        ({"email": "ada@example.com", "name": "x" * 256}, 422, "invalid_customer"),
        ({"email": "ada@example.com"}, 422, "invalid_request"),
        ({"name": "Ada"}, 422, "invalid_request"),
        ({"email": 5, "name": "Ada"}, 422, "invalid_request"),
        (
            {"email": "ada@example.com", "name": "Ada", "metadata": {"a": {"b": 1}}},
            422,
            "invalid_metadata",
        ),
        ({"email": "ada@example.com", "name": "A\x00da"}, 422, "invalid_customer"),
        ({"email": "a\x00da@example.com", "name": "Ada"}, 422, "invalid_customer"),
        (
            {"email": "ada@example.com", "name": "Ada", "phone_number": "\x00"},
            422,
            "invalid_customer",
        ),
        (
            {"email": "ada@example.com", "name": "Ada", "phone_number": "1" * 256},
            422,
            "invalid_customer",
        ),
        (
            {"email": "ada@example.com", "name": "Ada", "metadata": {"a": "x\x00"}},
            422,
            "invalid_metadata",
        ),
    ],
    ids=[
        "no-at",
        "no-dot-in-domain",
        "space",
        "no-local-part",
        "blank-name",
        "long-name",
        "name-missing",
        "email-missing",
        "email-int",
        "nested-metadata",
        "nul-in-name",
        "nul-in-email",
        "nul-in-phone",
        "long-phone",
        "nul-in-metadata",
    ],
)
def test_bad_customer_input_is_refused_with_a_code(client, body, status, code) -> None:
    assert_error(client.post("/customers", json=body), status, code)
    assert client.get("/customers").json()["items"] == []


def test_the_email_is_trimmed_before_it_is_checked(client) -> None:
    response = client.post("/customers", json={"email": "  ada@example.com ", "name": "Ada"})
    assert response.status_code == 200
    assert response.json()["email"] == "ada@example.com"


def test_a_body_that_is_not_json_is_400_invalid_json(client) -> None:
    assert_error(client.post("/customers", content=b"email=a@b.co"), 400, "invalid_json")


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": 0},
        {"page_size": 101},
        {"created_at_gte": "2026-11-25T12:00:00"},
        {"email": "a\x00@example.com"},
        {"name": "\x00"},
    ],
)
def test_bad_list_parameters_are_4xx_with_a_code(client, params) -> None:
    response = client.get("/customers", params=params)
    assert 400 <= response.status_code < 500
    assert response.json()["code"] in {"invalid_parameter", "invalid_timestamp"}
