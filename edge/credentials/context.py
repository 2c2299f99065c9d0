"""What a verification trusts: signer keys, revocation and deny lookups. Built once, passed in per scan."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.credentials.trust import TrustList


def _nothing(_key: object) -> bool:
    return False


@dataclass(frozen=True)
class Trust:
    dsc: TrustList = field(default_factory=TrustList)         # EU certificate signers, by kid
    pass_keys: Mapping[bytes, Ed25519PublicKey] = field(default_factory=dict)  # pass key id -> its key
    revoked: Callable[[bytes], bool] = _nothing               # EU DCC revocation hashes (16 bytes)
    denied: Callable[[str], bool] = _nothing                  # subject ids on a deny list (any format)
