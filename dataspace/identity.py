"""Who is calling, and who agreed: EdDSA tokens and signed agreements.

Every DSP and management call carries ``Authorization: Bearer <JWT>`` signed with the
caller's participant key (the Ed25519 key of its keyring, streams/keyring.py), checked
against the public key the operator registered on cm.control.participants. Why a JWT and
not a session: the control plane is stateless, and a short-lived token with an audience
(RFC 7519 ``aud``: which connector it is for) and an expiry cannot be replayed elsewhere
or for long. PyJWT does the JOSE part (RFC 8037 EdDSA); we only choose the claims.

Claims: ``iss`` = ``sub`` = the caller's participant id, ``aud`` = the connector called
(``urn:citymesh:connector:<participant>`` for DSP, ``urn:citymesh:api`` for the management
API), ``iat``, ``exp`` (at most TOKEN_TTL_MAX_S later), ``jti``; header ``kid`` = key id.

Agreements are signed by both parties: Ed25519 over
``"citymesh-agreement/v1\\n" || JCS(agreement)``, JCS being RFC 8785 JSON canonicalization
(the ``rfc8785`` package), so any verifier that canonicalizes the same ODRL agreement gets
the same bytes. The domain prefix keeps an agreement signature from being replayed as any
other signed citymesh document (ledger checkpoints use their own).

A participant of another city's data space would be recognised the same way once its
operator is trusted: its participant record (public key, memberships) would carry the
issuing operator, and the access policy would admit memberships by issuer. Only one
operator is tested now.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Callable

import jwt
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streams.keyring import Keyring

from .errors import Unauthorized

TOKEN_TTL_MAX_S = 300
LEEWAY_S = 5
API_AUDIENCE = "urn:citymesh:api"
_AGREEMENT_DOMAIN = b"citymesh-agreement/v1\n"


def connector_audience(participant_id: str) -> str:
    return f"urn:citymesh:connector:{participant_id}"


def issue_token(ring: Keyring, audience: str, ttl_s: int = 120, now: float | None = None) -> str:
    now = time.time() if now is None else now
    claims = {"iss": ring.participant_id, "sub": ring.participant_id, "aud": audience, "iat": int(now),
              "exp": int(now) + ttl_s, "jti": secrets.token_hex(8)}
    return jwt.encode(claims, ring.signer(), algorithm="EdDSA", headers={"kid": ring.key_id})


def verify_token(authorization: str | None, audience: str, public_key_of: Callable[[str], str | None]) -> str:
    """The participant id of a valid `Authorization: Bearer` header; Unauthorized says why not."""
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized("missing 'Authorization: Bearer <token>' (an EdDSA JWT signed with your participant key)",
                           "Authorization")
    token = authorization[len("Bearer "):].strip()
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"not a JWT: {exc}", "Authorization") from None
    issuer = unverified.get("iss")
    key_hex = public_key_of(issuer) if isinstance(issuer, str) else None
    if key_hex is None:
        raise Unauthorized(f"issuer {issuer!r:.80} is not a participant with a registered public key",
                           "Authorization.iss")
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex))
        claims = jwt.decode(token, key, algorithms=["EdDSA"], audience=audience, leeway=LEEWAY_S,
                            options={"require": ["iss", "sub", "aud", "iat", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired", "Authorization.exp") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized(f"token is not for {audience}", "Authorization.aud") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized(f"token signature does not verify with {issuer}'s registered key",
                           "Authorization") from None
    except (jwt.PyJWTError, ValueError) as exc:
        raise Unauthorized(f"invalid token: {exc}", "Authorization") from None
    if claims["sub"] != issuer:
        raise Unauthorized("sub must equal iss (a participant speaks for itself)", "Authorization.sub")
    if claims["exp"] - claims["iat"] > TOKEN_TTL_MAX_S:
        raise Unauthorized(f"token lives {claims['exp'] - claims['iat']} s; at most {TOKEN_TTL_MAX_S} s are accepted",
                           "Authorization.exp")
    return issuer


def agreement_bytes(agreement: dict) -> bytes:
    return _AGREEMENT_DOMAIN + rfc8785.dumps(agreement)


def agreement_digest(agreement: dict) -> str:
    return hashlib.sha256(agreement_bytes(agreement)).hexdigest()


def sign_agreement(ring: Keyring, agreement: dict) -> dict:
    """{participant, keyId, alg, value}: value = base64url Ed25519 signature."""
    sig = ring.sign(agreement_bytes(agreement))
    return {"participant": ring.participant_id, "keyId": ring.key_id, "alg": "Ed25519",
            "value": base64.urlsafe_b64encode(sig).decode().rstrip("=")}


def verify_agreement(public_key_hex: str, agreement: dict, signature: dict) -> bool:
    try:
        value = signature["value"]
        sig = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (KeyError, TypeError, ValueError):
        return False
    return Keyring.verify(public_key_hex, sig, agreement_bytes(agreement))
