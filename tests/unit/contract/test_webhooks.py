"""Webhook signatures: what the sender signs, the receiver verifies; tampering, replays and wrong secrets fail."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stepwise_contract.webhooks import ID_HEADER, SIGNATURE_HEADER, TOLERANCE_SECONDS, signed_headers, verify

SECRET = "s3cret"
T = 1_795_000_000


def test_a_signed_request_verifies() -> None:
    body = b'{"purpose": "safety_alert"}'
    headers = signed_headers(SECRET, T, body, "n-1")
    assert headers[ID_HEADER] == "n-1" and headers[SIGNATURE_HEADER].startswith("v1=")
    assert verify(SECRET, headers, body, now=T + 10)


def test_tampered_body_wrong_secret_replay_and_missing_headers_fail() -> None:
    body = b'{"level": "immediate"}'
    headers = signed_headers(SECRET, T, body, "n-1")
    assert not verify(SECRET, headers, b'{"level": "same_day"}', now=T)
    assert not verify("other", headers, body, now=T)
    assert not verify(SECRET, headers, body, now=T + TOLERANCE_SECONDS + 1)
    assert verify(SECRET, headers, body, now=T + TOLERANCE_SECONDS)
    assert not verify(SECRET, {}, body, now=T)
    assert not verify(SECRET, headers | {"Stepwise-Timestamp": "yesterday"}, body, now=T)


def test_header_names_are_case_insensitive() -> None:
    body = b"{}"
    headers = {name.lower(): value for name, value in signed_headers(SECRET, T, body, "n-1").items()}
    assert verify(SECRET, headers, body, now=T)


@given(st.binary(), st.binary(min_size=1))
def test_any_change_to_the_body_breaks_the_signature(body: bytes, extra: bytes) -> None:
    headers = signed_headers(SECRET, T, body, "n")
    assert verify(SECRET, headers, body, now=T)
    assert not verify(SECRET, headers, body + extra, now=T)
