"""Errors carry a kind; the web answers with the status of that kind from one table."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dispatch.delivery import campaigns
from dispatch.errors import DispatchError, ErrorKind
from dispatch.subscribers import service
from dispatch.web.errors import HTTP_STATUS, http_status, install_error_handlers


def test_every_kind_has_one_http_status():
    assert set(HTTP_STATUS) == set(ErrorKind)
    assert HTTP_STATUS[ErrorKind.NOT_FOUND] == 404 and HTTP_STATUS[ErrorKind.CONFLICT] == 409
    assert len(set(HTTP_STATUS.values())) == len(HTTP_STATUS)


def test_refusals_say_their_kind(session):
    with pytest.raises(campaigns.CampaignError) as missing:
        campaigns.get(session, 424242)
    assert missing.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(service.SubscriberError) as bad:
        service.create_list(session, "Not A Slug!", "x")
    assert bad.value.kind is ErrorKind.INVALID
    service.create_list(session, "news", "News")
    with pytest.raises(service.SubscriberError) as taken:
        service.create_list(session, "news", "News again")
    assert taken.value.kind is ErrorKind.CONFLICT


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_web_maps_the_kind_not_the_message(kind):
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom():
        raise DispatchError("campaign 1 not found (the wording must not matter)", kind=kind)

    answer = TestClient(app).get("/boom")
    assert answer.status_code == HTTP_STATUS[kind] == http_status(DispatchError(kind=kind))
    assert answer.json()["detail"].startswith("campaign 1 not found")
