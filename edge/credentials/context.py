"""What a verification trusts: signer keys, revocation and deny lookups. Built once, passed in per scan."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from edge.credentials.trust import TrustList


def _nothing(_key) -> bool:
    return False


@dataclass(frozen=True)
class Trust:
    dsc: TrustList = field(default_factory=TrustList)         # EU certificate signers, by kid
    pass_keys: Mapping[bytes, object] = field(default_factory=dict)  # pass key id -> Ed25519 public key
    revoked: Callable[[bytes], bool] = _nothing               # EU DCC revocation hashes (16 bytes)
    denied: Callable[[str], bool] = _nothing                  # subject ids on a deny list (any format)
