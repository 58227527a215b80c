"""Per-participant key material, one JSON file per participant (mode 0600).

Each keyring holds two keys with different jobs:
- an HMAC-SHA256 secret shared between the participant and the operator: it tags every
  record so the operator can verify at data-plane speed who wrote it (bench/RESULTS.md
  has the numbers: Ed25519 per record costs far more than the data plane can spend);
- an Ed25519 key pair: the public half is registered in the topology (cm.control.participants)
  and signs what must be verifiable by third parties (ledger checkpoints, contract documents).

It also holds the participant's password for the cluster (SASL/SCRAM-SHA-512 on Apache Kafka):
`citymesh apply` creates the matching SCRAM credential through the admin API (topology/access.py).
The mesh's own services (runners, ledger sink, ...) are no participants; their passwords live in
`<keys>/services/<principal>.secret`, made the same way (`service_password`).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.errors import CitymeshError

from .topics import check_id


class KeyringError(ValueError, CitymeshError):
    """A keyring file is missing or malformed."""


@dataclass(frozen=True)
class Keyring:
    participant_id: str
    key_id: str
    hmac_key: bytes
    ed25519_private: bytes  # raw 32-byte seed
    created_ms: int
    sasl_password: str | None = None  # SCRAM password on the cluster (None: a keyring from before)

    @property
    def public_key_hex(self) -> str:
        return self.signer().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()

    def signer(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.ed25519_private)

    def sign(self, data: bytes) -> bytes:
        return self.signer().sign(data)

    @staticmethod
    def verify(public_key_hex: str, signature: bytes, data: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(signature, data)
            return True
        except Exception:
            return False

    @classmethod
    def generate(cls, participant_id: str) -> "Keyring":
        check_id("participant", participant_id)
        return cls(participant_id, secrets.token_hex(4), secrets.token_bytes(32), secrets.token_bytes(32),
                   int(time.time() * 1000), new_password())

    def to_json(self) -> str:
        return json.dumps({
            "participant_id": self.participant_id,
            "key_id": self.key_id,
            "hmac_key": base64.b64encode(self.hmac_key).decode(),
            "ed25519_private": self.ed25519_private.hex(),
            "ed25519_public": self.public_key_hex,
            "created_ms": self.created_ms,
            "sasl_password": self.sasl_password,
        }, indent=2)

    @classmethod
    def from_file(cls, path: Path) -> "Keyring":
        try:
            d = json.loads(Path(path).read_text())
            return cls(d["participant_id"], d["key_id"], base64.b64decode(d["hmac_key"]),
                       bytes.fromhex(d["ed25519_private"]), int(d["created_ms"]), d.get("sasl_password"))
        except FileNotFoundError:
            raise KeyringError(f"{path}: no keyring; create it with `citymesh keys`") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"{path}: malformed keyring ({exc.__class__.__name__}: {exc})") from None


def keyring_path(keys_dir: Path, participant_id: str) -> Path:
    return Path(keys_dir) / f"{check_id('participant', participant_id)}.json"


def new_password() -> str:
    """A SCRAM password: hex, so it needs no quoting in any config format (JAAS, kcat -X, format --add-scram)."""
    return secrets.token_hex(24)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def create(keys_dir: Path, participant_id: str, rotate: bool = False) -> tuple[Keyring, bool]:
    """Create a participant's keyring unless it exists; returns (keyring, created).

    A keyring written before passwords existed gets one (its keys stay as they are)."""
    path = keyring_path(keys_dir, participant_id)
    if path.exists() and not rotate:
        ring = Keyring.from_file(path)
        if ring.sasl_password is None:
            ring = dataclasses.replace(ring, sasl_password=new_password())
            _write_private(path, ring.to_json())
        return ring, False
    ring = Keyring.generate(participant_id)
    _write_private(path, ring.to_json())
    return ring, True


def load(keys_dir: Path, participant_id: str) -> Keyring:
    return Keyring.from_file(keyring_path(keys_dir, participant_id))


def load_all(keys_dir: Path) -> dict[str, Keyring]:
    """Every keyring in a directory, by participant id (the operator's view)."""
    out = {}
    for path in sorted(Path(keys_dir).glob("*.json")):
        ring = Keyring.from_file(path)
        out[ring.participant_id] = ring
    return out


def service_password(keys_dir: Path, principal: str, rotate: bool = False) -> str:
    """The cluster password of one of the mesh's own services (a runner, the ledger sink ...),
    created on first use; `principal` is its SCRAM user name (topology/access.py)."""
    path = Path(keys_dir) / "services" / f"{principal}.secret"
    if rotate or not path.exists():
        _write_private(path, new_password())
    return path.read_text().strip()


def mesh_secret(keys_dir: Path) -> bytes:
    """The operator's master secret for per-contract pseudonym keys (created on first use)."""
    path = Path(keys_dir) / "_mesh.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)  # atomic create-if-absent: two runners never pick different secrets
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_bytes()


def delivery_keys_path(keys_dir: Path, consumer_id: str) -> Path:
    """Where a consumer's delivery keys are kept: contract id -> key of its deliveries' tags
    (streams/delivery.py). `citymesh apply` writes it; the operator hands it to the consumer."""
    return Path(keys_dir) / "deliveries" / f"{check_id('participant', consumer_id)}.json"


def delivery_keys(keys_dir: Path, consumer_id: str) -> dict[str, bytes]:
    """A consumer's delivery keys by contract ({} when it has none here)."""
    path = delivery_keys_path(keys_dir, consumer_id)
    try:
        return {cid: bytes.fromhex(k) for cid, k in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as exc:
        raise KeyringError(f"{path}: malformed delivery keys ({exc})") from None


def save_delivery_keys(keys_dir: Path, consumer_id: str, keys: dict[str, bytes]) -> None:
    """Replace a consumer's delivery keys (mode 0600, written atomically)."""
    path = delivery_keys_path(keys_dir, consumer_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps({cid: k.hex() for cid, k in sorted(keys.items())}, indent=2))
    os.replace(tmp, path)


HANDOVER_LABEL = b"citymesh/delivery-key/v1"


def seal_delivery_key(public_key_hex: str, contract_id: str, key: bytes) -> str:
    """A contract's delivery key encrypted to its consumer's registered Ed25519 key, for a data
    address (dataspace/provider.py): a libsodium sealed box (X25519 after the standard Ed25519 to
    Curve25519 conversion, XSalsa20-Poly1305), base64. Why encrypted: the data address travels
    over HTTP and is kept in cm.control.transfers, which the mesh's services read; only the
    consumer's private key opens it. The plaintext names the contract, so a sealed key cannot be
    passed off as another contract's."""
    from nacl.public import SealedBox
    from nacl.signing import VerifyKey
    recipient = VerifyKey(bytes.fromhex(public_key_hex)).to_curve25519_public_key()
    plain = b"\x00".join((HANDOVER_LABEL, contract_id.encode(), key))
    return base64.b64encode(SealedBox(recipient).encrypt(plain)).decode()


def open_delivery_key(ring: Keyring, contract_id: str, sealed: str) -> bytes:
    """The delivery key `seal_delivery_key` encrypted to this keyring's participant, for `contract_id`."""
    from nacl.exceptions import CryptoError
    from nacl.public import SealedBox
    from nacl.signing import SigningKey
    try:
        plain = SealedBox(SigningKey(ring.ed25519_private).to_curve25519_private_key()).decrypt(
            base64.b64decode(sealed, validate=True))
        label, contract, key = plain.split(b"\x00", 2)
    except (CryptoError, ValueError) as exc:
        raise KeyringError(f"the delivery key of {contract_id} does not open with {ring.participant_id}'s key "
                           f"({exc.__class__.__name__})") from None
    if label != HANDOVER_LABEL or contract != contract_id.encode():
        raise KeyringError(f"the sealed delivery key is for {contract.decode(errors='replace')!r}, not {contract_id}")
    return key
