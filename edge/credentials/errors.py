"""The credentials' family of errors (see edge.common.errors)."""
from __future__ import annotations

import enum

from edge.common.errors import CheckpointError


class Category(str, enum.Enum):
    """Why a credential was accepted or refused; the policy's reason is `credential-<category>`."""

    VALID = "valid"
    MALFORMED = "malformed"          # not decodable, or not what the format says it must hold
    SIGNATURE = "signature"          # the signature does not verify (forged or altered), or an unusable algorithm
    UNTRUSTED = "untrusted"          # no trusted signer has this key id, or the signer is out of its own validity
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    KEY_USAGE = "key-usage"          # the signer may not sign this type of certificate
    REVOKED = "revoked"              # on a revocation list, or the subject is deny-listed
    RULE = "rule"                    # verified, but a business rule (e.g. vaccination complete) refuses it


class CredentialError(CheckpointError):
    """The credentials' family. Raised inside a format's parser, it becomes a CredentialFailure of its
    category at the format's boundary; the other members (Base45Error, TrustListError, PassKeyError,
    PassCsvError, PassError: text, a trust list, a pass key or CSV that cannot be used) reach the caller."""

    def __init__(self, detail: str, category: Category = Category.MALFORMED):
        super().__init__(detail)
        self.category = category
