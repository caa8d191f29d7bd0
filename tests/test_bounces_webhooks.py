"""Webhooks: Amazon SES through SNS (signature, topic, subscription confirmation) and the generic
signed JSON webhook. A bad signature is a 401 and stores nothing; good ones record bounces."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from bounce_helpers import sent_campaign
from dispatch.bounces.webhooks import SnsVerifier, sign_generic
from dispatch.models.bounce import BounceMessage
from dispatch.models.subscriber import Subscription, Suppression
from dispatch.tokens import verp_address
from dispatch.web.app import create_app

TOPIC = "arn:aws-cn:sns:cn-north-1:123456789012:ses-bounces"
CERT_URL = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-test.pem"
SECRET = "generic-webhook-secret-for-tests"
ADDRESSES = ["alice@example.net", "bob@example.net", "carol@example.net"]


@pytest.fixture
def webapp(settings, engine):
    return create_app(settings)


@pytest.fixture
def http(webapp):
    with TestClient(webapp, base_url="https://testserver") as c:
        yield c


@pytest.fixture(scope="module")
def signing_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def sns(webapp, signing_key):
    """The app's SNS verifier, with AWS's certificate host answered by this test (no network)."""
    fetched: list[str] = []

    def http_get(url: str) -> bytes:
        fetched.append(url)
        return signing_key[1] if url == CERT_URL else b"<ConfirmSubscriptionResponse/>"

    webapp.state.sns_verifier = SnsVerifier(frozenset({TOPIC}), http_get=http_get)
    return fetched


@pytest.fixture
def wsettings(webapp):
    webapp.state.settings = webapp.state.settings.replace(
        bounce_address="bounces@bounce.example.org", bounce_webhook_secret=SECRET
    )
    return webapp.state.settings


def sns_message(key, kind: str, body: dict, *, version: str = "2", topic: str = TOPIC) -> dict:
    message = {
        "Type": kind,
        "MessageId": f"msg-{time.time_ns()}",
        "TopicArn": topic,
        "Timestamp": "2026-11-30T02:00:00.000Z",
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
    }
    if kind == "Notification":
        message["Message"] = json.dumps(body)
        keys = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    else:
        message.update(
            Message="You have chosen to subscribe...",
            Token="tok",
            SubscribeURL="https://sns.cn-north-1.amazonaws.com.cn/?Action=ConfirmSubscription&Token=tok",
        )
        keys = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    text = "".join(f"{k}\n{message[k]}\n" for k in keys if k in message)
    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()  # noqa: S303
    message["Signature"] = base64.b64encode(
        key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    ).decode()
    return message


def ses_bounce(source: str, recipient: str, bounce_type: str = "Permanent") -> dict:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "reportingMTA": "dsn; a27-23.smtp-out.cn-north-1.amazonses.com",
        },
        "mail": {"messageId": "0000-ses", "source": source, "commonHeaders": {}},
    }


def _rows(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(BounceMessage))


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_bounce_with_a_good_signature_suppresses(
    http,
    session,
    wsettings,
    sns,
    signing_key,
    version,
):
    sent = sent_campaign(session, ADDRESSES)
    source = verp_address(wsettings, "c", sent.campaign_id, sent.deliveries["bob@example.net"])
    message = sns_message(
        signing_key[0], "Notification", ses_bounce(source, "bob@example.net"), version=version
    )
    answer = http.post("/webhooks/ses", content=json.dumps(message))
    assert answer.status_code == 200, answer.text
    assert answer.json()["recorded"][0]["action"] == "suppressed"
    again = http.post("/webhooks/ses", content=json.dumps(message))  # SNS retries
    assert again.json() == {"recorded": [], "duplicates": 1}
    assert _rows(session) == 1
    assert {s.email for s in session.scalars(select(Suppression))} == {"bob@example.net"}


def test_ses_complaint_unsubscribes_everywhere(http, session, wsettings, sns, signing_key):
    sent = sent_campaign(session, ADDRESSES)
    source = verp_address(wsettings, "c", sent.campaign_id, sent.deliveries["carol@example.net"])
    body = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "carol@example.net"}],
            "complaintFeedbackType": "abuse",
        },
        "mail": {"messageId": "0001-ses", "source": source},
    }
    answer = http.post(
        "/webhooks/ses", content=json.dumps(sns_message(signing_key[0], "Notification", body))
    )
    assert answer.status_code == 200 and answer.json()["recorded"][0]["action"] == "unsubscribed"
    session.expire_all()
    carol = sent.subscribers["carol@example.net"]
    assert set(
        session.scalars(select(Subscription.status).where(Subscription.subscriber_id == carol))
    ) == {"unsubscribed"}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.update(Message=m["Message"].replace("bob@", "alice@")),  # altered body
        lambda m: m.update(Signature=base64.b64encode(b"x" * 256).decode()),  # forged signature
        lambda m: m.update(Signature="not base64!"),
        lambda m: m.update(SigningCertURL="https://evil.example.com/cert.pem"),  # foreign cert
        lambda m: m.update(SigningCertURL=CERT_URL.replace("https", "http")),
        lambda m: m.update(SignatureVersion="9"),
    ],
)
def test_ses_bad_signature_is_401_and_stores_nothing(
    http,
    session,
    wsettings,
    sns,
    signing_key,
    tamper,
):
    sent = sent_campaign(session, ADDRESSES)
    source = verp_address(wsettings, "c", sent.campaign_id, sent.deliveries["bob@example.net"])
    message = sns_message(signing_key[0], "Notification", ses_bounce(source, "bob@example.net"))
    tamper(message)
    answer = http.post("/webhooks/ses", content=json.dumps(message))
    assert answer.status_code == 401
    assert _rows(session) == 0
    assert session.scalar(select(func.count()).select_from(Suppression)) == 0


def test_ses_foreign_topic_is_refused(http, session, wsettings, sns, signing_key):
    message = sns_message(
        signing_key[0],
        "Notification",
        ses_bounce("x@example.org", "bob@example.net"),
        topic="arn:aws:sns:us-east-1:999999999999:someone-else",
    )
    assert http.post("/webhooks/ses", content=json.dumps(message)).status_code == 401
    assert _rows(session) == 0


def test_ses_subscription_is_confirmed(http, wsettings, sns, signing_key):
    message = sns_message(signing_key[0], "SubscriptionConfirmation", {})
    answer = http.post("/webhooks/ses", content=json.dumps(message))
    assert answer.status_code == 200 and answer.json() == {"confirmed": True}
    assert message["SubscribeURL"] in sns


def _generic(http, body: dict, *, secret: str = SECRET, timestamp: int | None = None):
    raw = json.dumps(body).encode()
    return http.post("/webhooks/generic", content=raw, headers=sign_generic(secret, raw, timestamp))


def test_generic_webhook_good_signature_records(http, session, wsettings):
    sent = sent_campaign(session, ADDRESSES)
    body = {
        "events": [
            {
                "id": "evt-1",
                "type": "bounce",
                "kind": "hard",
                "recipient": "alice@example.net",
                "status": "5.1.1",
                "diagnostic": "550 5.1.1 user unknown",
                "envelope_from": verp_address(
                    wsettings, "c", sent.campaign_id, sent.deliveries["alice@example.net"]
                ),
            }
        ]
    }
    answer = _generic(http, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["recorded"] == [
        {"kind": "hard", "recipient": "alice@example.net", "action": "suppressed"}
    ]
    assert _generic(http, body).json()["duplicates"] == 1


@pytest.mark.parametrize(
    "how",
    ["wrong secret", "stale timestamp", "future timestamp", "no headers", "altered body"],
)
def test_generic_webhook_bad_signature_is_401(http, session, wsettings, how):
    sent_campaign(session, ADDRESSES)
    body = {"id": "evt-2", "kind": "hard", "recipient": "alice@example.net"}
    raw = json.dumps(body).encode()
    headers = sign_generic(SECRET, raw)
    if how == "wrong secret":
        headers = sign_generic("another-secret", raw)
    elif how == "stale timestamp":
        headers = sign_generic(SECRET, raw, int(time.time()) - 3600)
    elif how == "future timestamp":
        headers = sign_generic(SECRET, raw, int(time.time()) + 3600)
    elif how == "no headers":
        headers = {}
    elif how == "altered body":
        raw = raw.replace(b"alice", b"bob")
    answer = http.post("/webhooks/generic", content=raw, headers=headers)
    assert answer.status_code == 401
    assert _rows(session) == 0


def test_generic_webhook_bad_json_names_the_problem(http, wsettings):
    answer = _generic(http, {"events": [{"id": "e", "kind": "hard", "recipient": "nobody"}]})
    assert answer.status_code == 422 and "events[0].recipient" in answer.json()["detail"]


def test_generic_webhook_off_without_a_secret(http, webapp):
    raw = b"{}"
    answer = http.post("/webhooks/generic", content=raw, headers=sign_generic("x", raw))
    assert answer.status_code == 404
