"""Independent check of what the Lotse server sends to a push service.

The Rust test `server/tests/push.rs` (python_decrypts_and_verifies_what_was_sent)
captures real pushes at a test push service and writes them, with the subscriber's
private key and auth secret, to a JSON file named by LOTSE_PUSH_CAPTURE. This file checks
them with code that shares nothing with the server:

- http_ece (Mozilla's reference implementation) decrypts the RFC 8291 aes128gcm body;
- cryptography verifies the RFC 8292 VAPID JWT (ES256 with the server's public key,
  audience = the push service's origin including its port, expiry within 24 hours,
  subject set);
- the Web Push headers (TTL, Urgency, Topic, Content-Encoding) are well-formed.
"""

import base64
import json
import os
import re
import time

import http_ece
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

PAYLOAD_FIELDS = {"v", "kind", "request_id", "topic", "languages", "window_start", "window_end"}


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def capture():
    path = os.environ.get("LOTSE_PUSH_CAPTURE")
    if not path:
        pytest.skip("run through server/tests/push.rs, which sets LOTSE_PUSH_CAPTURE")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    assert data["requests"], "no captured pushes"
    return data


def subscriber_key(capture):
    d = int.from_bytes(b64url(capture["subscriber"]["private_key"]), "big")
    key = ec.derive_private_key(d, ec.SECP256R1())
    public = key.public_key().public_bytes(
        encoding=serialization.Encoding.X962,
        format=serialization.PublicFormat.UncompressedPoint,
    )
    assert public == b64url(capture["subscriber"]["public_key"])
    return key


def vapid_params(header):
    assert header.startswith("vapid "), header
    params = {}
    for part in header[len("vapid "):].split(","):
        name, _, value = part.strip().partition("=")
        params[name] = value
    return params


def test_payload_decrypts_with_http_ece(capture):
    key = subscriber_key(capture)
    auth = b64url(capture["subscriber"]["auth"])
    kinds = []
    for req in capture["requests"]:
        body = b64url(req["body"])
        assert len(body) < 4096, "push services accept at most 4096 bytes"
        plain = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
        payload = json.loads(plain)
        assert payload == req["expected"]
        assert set(payload) == PAYLOAD_FIELDS, "no fields beyond the agreed ones"
        assert payload["v"] == 1
        assert re.fullmatch(r"[0-9a-f-]{36}", payload["request_id"])
        assert all(re.fullmatch(r"[a-z]{2,3}", code) for code in payload["languages"])
        assert payload["window_start"] < payload["window_end"]
        kinds.append(payload["kind"])
    assert kinds == capture["expected_kinds"]


def test_vapid_jwt_verifies_with_cryptography(capture):
    server_key = b64url(capture["vapid_public_key"])
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), server_key)
    now = time.time()
    for req in capture["requests"]:
        params = vapid_params(req["headers"]["authorization"])
        assert b64url(params["k"]) == server_key
        head_b64, claims_b64, sig_b64 = params["t"].split(".")
        head = json.loads(b64url(head_b64))
        assert head["alg"] == "ES256"
        sig = b64url(sig_b64)
        assert len(sig) == 64, "JWS ES256 signatures are r || s"
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            pytest.fail("the VAPID JWT is not signed by the server's key")
        claims = json.loads(b64url(claims_b64))
        assert claims["aud"] == capture["push_origin"], "audience: the origin, with its port"
        assert now - 60 < claims["exp"] <= now + 24 * 3600 + 60
        assert claims["sub"] == capture["subject"]
        assert claims["sub"].startswith(("mailto:", "https:"))


def test_web_push_headers(capture):
    for req in capture["requests"]:
        h = req["headers"]
        assert h["content-encoding"] == "aes128gcm"
        ttl = int(h["ttl"])
        assert 0 < ttl <= 24 * 3600
        assert h["urgency"] in {"very-low", "low", "normal", "high"}
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,32}", h["topic"])
        kind = req["expected"]["kind"]
        assert h["urgency"] == ("high" if kind == "offer" else "normal")
        if kind != "offer":
            assert ttl <= 3600
    topics = [r["headers"]["topic"] for r in capture["requests"]]
    assert len(set(topics)) == len(topics), "each kind of notice has its own topic"
