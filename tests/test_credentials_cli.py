"""`checkpoint credential verify|show` in a real process (`python -m edge.app.credentialcli`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.credentials import passes
from edge.credentials.revocation import COUNTRYCODEUCI, SIGNATURE, UCI, hashes

from .conftest import ROOT
from .credfixtures import (
    AT,
    DAY,
    cccd_payload,
    dcc_entry,
    make_dsc,
    make_hc1,
    signature_of,
    write_trust_list,
)
from .waiting import patience


def run(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "edge.app.credentialcli", "credential", *map(str, args)], cwd=ROOT,
                          env=env, input=stdin, capture_output=True, text=True, timeout=patience(60))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    signers = {"ec": make_dsc("ec"), "rsa": make_dsc("rsa"), "ec-v": make_dsc("ec", eku=["vaccination-0"]),
               "unknown": make_dsc("ec")}
    trust = write_trust_list(folder / "trust.json", *(der for name, (_, der) in signers.items() if name != "unknown"))
    return folder, signers, trust


def verify(world, payload, *extra):
    folder, _, trust = world
    result = run("verify", "--trust", trust, "--at", AT.isoformat(), *extra, "--json", payload)
    assert result.stdout.count("\n") == 1, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("case,reason", [
    (dict(signer="ec"), "valid"), (dict(signer="rsa", kind="t"), "valid"), (dict(signer="ec", compress=False), "valid"),
    (dict(signer="ec", alg_where="unprotected"), "valid"), (dict(signer="ec", kid_where="unprotected"), "valid"),
    (dict(signer="ec", tamper=True), "signature"), (dict(signer="unknown"), "untrusted"),
    (dict(signer="ec", exp=AT - DAY), "expired"), (dict(signer="rsa", iat=AT + DAY), "not-yet-valid"),
    (dict(signer="ec-v", kind="r"), "key-usage"),
])
def test_eu_certificates(world, case, reason):
    _, signers, _ = world
    key, der = signers[case.pop("signer")]
    status, out = verify(world, make_hc1(key, der, **case))
    assert out["reason"] == reason, out
    assert (status == 0) == (reason == "valid") and out["verdict"] == ("accept" if reason == "valid" else "reject")
    assert out["format"] == "dcc" and out["id"] == "URN:UVCI:01:VN:ABC123#X"
    name = "Nguyễn VĂN AN" if case.get("tamper") else "Nguyễn Văn An"   # what the forger wrote is shown as read
    assert out["holder"] == {"name": name, "date_of_birth": "1990-04-12"}
    assert out["type"] in ("vaccination", "test", "recovery")


@pytest.mark.parametrize("kind", [UCI, COUNTRYCODEUCI, SIGNATURE])
def test_revoked_by_each_hash_type(world, kind):
    folder, signers, _ = world
    key, der = signers["ec"]
    payload = make_hc1(key, der)
    digest = hashes("URN:UVCI:01:VN:ABC123#X", "VN", -7, signature_of(payload))[kind]
    revoked = folder / f"revoked-{kind}.txt"
    revoked.write_text(f"# revocation list\n{digest.hex()}\n")
    status, out = verify(world, payload, "--revoked", revoked)
    assert status != 0 and out["reason"] == "revoked"


def test_rules_on_request(world):
    _, signers, _ = world
    key, der = signers["ec"]
    payload = make_hc1(key, der, entry=dcc_entry("v", dn=1, sd=2))
    assert verify(world, payload)[1]["reason"] == "valid"
    status, out = verify(world, payload, "--rules")
    assert status != 0 and out["reason"] == "rule" and out["rule"] == "vaccination-incomplete"


def test_passes(world):
    folder, _, _ = world
    admin = Ed25519PrivateKey.generate()
    key = passes.public_key_text(admin)
    good = passes.issue_pass(admin, "V-7", "Trần Thị Bình", valid_until=AT + DAY)
    status, out = verify(world, good, "--pass-key", key)
    assert status == 0 and out["id"] == "V-7" and out["holder"]["name"] == "Trần Thị Bình" and out["type"] == "pass"
    assert verify(world, good)[1]["reason"] == "untrusted"
    expired = passes.issue_pass(admin, "V-7", "B", valid_until=AT)
    assert verify(world, expired, "--pass-key", key)[1]["reason"] == "expired"
    deny = folder / "deny.txt"
    deny.write_text("V-7\n")
    assert verify(world, good, "--pass-key", key, "--deny", deny)[1]["reason"] == "revoked"
    forged = passes.issue_pass(Ed25519PrivateKey.generate(), "V-7", "B")
    assert verify(world, forged, "--pass-key", key)[1]["reason"] == "untrusted"


def test_id_cards(world):
    status, out = verify(world, cccd_payload())
    assert status == 0 and out["format"] == "cccd" and out["id"] == "001090012345" and out["type"] == "id-card"
    status, out = verify(world, cccd_payload(sex="Nữ"))
    assert status != 0 and out["reason"] == "malformed"


def test_plain_code_and_garbage(world):
    status, out = verify(world, "GUEST-0001")
    assert status != 0 and out == {"verdict": "reject", "reason": "malformed", "format": "plain",
                                   "detail": "not a credential of any supported format"}
    assert verify(world, "HC1:%%%")[1]["reason"] == "malformed"


def test_payload_from_stdin_and_text_output(world):
    _, signers, trust = world
    key, der = signers["ec"]
    result = run("verify", "--trust", trust, "--at", AT.isoformat(), "-", stdin=make_hc1(key, der) + "\n")
    assert result.returncode == 0 and "verdict: accept" in result.stdout and "Nguyễn Văn An" in result.stdout


def test_show(world):
    _, signers, _ = world
    key, der = signers["ec"]
    result = run("show", "--json", make_hc1(key, der, kind="t"))
    out = json.loads(result.stdout)
    assert result.returncode == 0 and out["type"] == "test" and out["claims"]["tt"] == "LP6464-4"
    out = json.loads(run("show", "--json", cccd_payload()).stdout)
    assert out["format"] == "cccd" and "address" not in out["claims"]
    result = run("show", "--json", "HC1:AB")
    assert result.returncode != 0 and json.loads(result.stdout)["reason"] == "malformed"


def test_unusable_inputs(world, tmp_path):
    bad = tmp_path / "trust.json"
    bad.write_text("{")
    result = run("verify", "--trust", bad, "--json", "HC1:")
    assert result.returncode == 1 and result.stdout == "" and "not JSON" in result.stderr
    result = run("verify", "--trust", tmp_path / "missing.json", "--json", "HC1:")
    assert result.returncode == 1 and "missing.json" in result.stderr
    assert run("verify", "--at", "tomorrow", "--json", "HC1:").returncode == 2
    assert run("verify", "--pass-key", "nope", "--json", "HC1:").returncode == 2
    assert run("frobnicate").returncode == 2
