"""Credentials through the appliance: `checkpoint trust import`, `credential verify` with the stored list,
and the daemon deciding on real QR images of EU certificates, passes and ID cards, recording the subject
and the reason, never the payload."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.credentials import base45, passes
from edge.credentials.decide import CredentialStep
from edge.credentials.settings import CredentialsSettings
from edge.lists import ListStore
from edge.settings.schema import DecisionSettings

from .conftest import run_checkpoint
from .credfixtures import (
    DAY,
    cccd_payload,
    dcc_entry,
    make_dsc,
    make_hc1,
    signature_of,
    trust_entry,
)

NOW = dt.datetime.now(dt.UTC)  # the daemon judges at the real time: certificates are made around it


def hc1(key, der, ci: str, **kw) -> str:
    entry = kw.pop("entry", None) or dcc_entry("v", ci=ci, dt=(NOW - 60 * DAY).date().isoformat())
    return make_hc1(key, der, entry=entry, iat=kw.pop("iat", NOW - 30 * DAY), exp=kw.pop("exp", NOW + 300 * DAY),
                    **kw)


@pytest.fixture(scope="module")
def signers():
    """A trusted EC signer, a trusted RSA-PSS signer, and one nobody trusts (made around now)."""
    span = dict(not_before=NOW - 365 * DAY, not_after=NOW + 365 * DAY)
    return {"ec": make_dsc("ec", **span), "rsa": make_dsc("rsa", **span), "stranger": make_dsc("ec", **span)}


def write_gateway(path, *ders):
    path.write_text(json.dumps([trust_entry(der) for der in ders]))
    return path


def uci_hash(uci: str) -> str:
    return hashlib.sha256(uci.encode()).digest()[:16].hex()


CREDENTIALS = """
[credentials]
formats = ["dcc", "pass", "cccd"]
accept_unlisted = true
revocation_lists = ["revoked"]
[credentials.passes]
trusted_keys = ["{pass_key}"]
"""


def import_csv(config, tmp_path, name, rows):
    path = tmp_path / f"{name}.csv"
    path.write_text(rows, encoding="utf-8")
    result = run_checkpoint("list", "import", name, path, "--config", config)
    assert result.returncode == 0, result.stderr


def entries(config) -> list[dict]:
    result = run_checkpoint("entries", "--config", config, "--format", "json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_trust_import_versions_and_verify_with_the_stored_list(tmp_path, make_config, signers):
    config = make_config('[source]\ntype = "lines"\npath = "-"\n', extra=CREDENTIALS.format(
        pass_key=passes.public_key_text(passes.generate_key(tmp_path / "pass.key"))))
    gateway = write_gateway(tmp_path / "gateway.json", signers["ec"][1], signers["rsa"][1])
    result = run_checkpoint("trust", "import", gateway, "--config", config)
    assert result.returncode == 0, result.stderr
    assert "version 1: 2 signers" in result.stdout
    stored = tmp_path / "state" / "trust.json"
    status = json.loads(run_checkpoint("trust", "status", "--config", config, "--json").stdout)
    assert status["version"] == 1 and status["signers"] == 2 and status["source"] == "gateway.json"

    # The stored file is a trust list `credential verify` reads as it reads the Gateway's.
    payload = hc1(*signers["rsa"], "URN:UVCI:01:VN:CLI-1")
    out = run_checkpoint("credential", "verify", "--trust", stored, "--json", payload)
    assert out.returncode == 0 and json.loads(out.stdout)["reason"] == "valid"
    out = run_checkpoint("credential", "verify", "--trust", stored, "--json", hc1(*signers["stranger"], "X"))
    assert out.returncode == 3 and json.loads(out.stdout)["reason"] == "untrusted"

    # A second import is version 2; an older version, a list with no usable signer, a non-list are refused
    # and leave the stored list as it was.
    assert run_checkpoint("trust", "import", gateway, "--config", config).returncode == 0
    assert run_checkpoint("trust", "import", gateway, "--config", config, "--version", "2").returncode == 1
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "junk.json").write_bytes(b"\xff[" * 1000)
    for bad in ("empty.json", "junk.json", "nothing.json"):
        result = run_checkpoint("trust", "import", tmp_path / bad, "--config", config)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert json.loads(stored.read_text())["version"] == 2


def make_frames(tmp_path, payloads: list[str]):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, payload in enumerate(payloads):
        # segno picks the densest mode each payload allows (an ID card's is UTF-8 bytes).
        segno.make_qr(payload, error="m").save(str(frames / f"{i:02d}.png"), scale=4, border=4)
    return frames


def forged(payload: str) -> str:
    """The pass with its signature replaced: what a forger without the key can make."""
    data = base45.decode(payload[4:])
    return "CP1:" + base45.encode(data[:-64] + bytes(64))


def test_daemon_decides_on_real_qr_images_and_records_the_subject(tmp_path, make_config, signers):
    key = passes.generate_key(tmp_path / "pass.key")
    ec_key, ec_der = signers["ec"]
    payloads = {
        "dcc-valid": hc1(ec_key, ec_der, "URN:UVCI:01:VN:E2E-VALID"),
        "dcc-rsa": hc1(*signers["rsa"], "URN:UVCI:01:VN:E2E-RSA"),
        "dcc-expired": hc1(ec_key, ec_der, "URN:UVCI:01:VN:E2E-OLD", iat=NOW - 400 * DAY, exp=NOW - DAY),
        "dcc-revoked": hc1(ec_key, ec_der, "URN:UVCI:01:VN:E2E-REVOKED"),
        "dcc-revoked-country": hc1(ec_key, ec_der, "URN:UVCI:01:VN:E2E-REVOKED-CC"),
        "dcc-revoked-signature": hc1(*signers["rsa"], "URN:UVCI:01:VN:E2E-REVOKED-SIG"),
        "dcc-untrusted": hc1(*signers["stranger"], "URN:UVCI:01:VN:E2E-STRANGER"),
        "dcc-incomplete": hc1(ec_key, ec_der, "URN:UVCI:01:VN:E2E-HALF", entry=dcc_entry(
            "v", ci="URN:UVCI:01:VN:E2E-HALF", dn=1, sd=2, dt=(NOW - 60 * DAY).date().isoformat())),
        "pass-valid": passes.issue_pass(key, "STAFF-1", "Nguyễn Văn An", valid_until=NOW + 30 * DAY),
        "pass-forged": forged(passes.issue_pass(key, "STAFF-2", "Trần Thị Bình")),
        "pass-revoked": passes.issue_pass(key, "STAFF-3", "Lê Văn Cường"),
        "pass-expired": passes.issue_pass(key, "STAFF-4", "Phạm Thu Hương", valid_until=NOW - DAY),
        "cccd-valid": cccd_payload(),
        "cccd-malformed": cccd_payload(sex="Nữ"),  # the number's 4th digit says male
        "plain": "OK-1",
    }
    frames = make_frames(tmp_path, list(payloads.values()))
    config = make_config(f'[source]\ntype = "replay"\npath = "{frames}"\nfps = 0\n', debounce_ms=0,
                         extra=CREDENTIALS.format(pass_key=passes.public_key_text(key)))
    assert run_checkpoint("trust", "import", write_gateway(tmp_path / "gw.json", ec_der, signers["rsa"][1]),
                          "--config", config).returncode == 0
    import_csv(config, tmp_path, "people", "code,action\nOK-1,allow\nSTAFF-3,deny\n")
    # One revocation list holds every hash type: over the UCI, over country + UCI, over the signature.
    hashes = [uci_hash("URN:UVCI:01:VN:E2E-REVOKED"), uci_hash("VN" + "URN:UVCI:01:VN:E2E-REVOKED-CC"),
              hashlib.sha256(signature_of(payloads["dcc-revoked-signature"])).digest()[:16].hex()]
    import_csv(config, tmp_path, "revoked", "code,action\n" + "".join(f"{h},deny\n" for h in hashes))
    result = run_checkpoint("run", "--config", config)
    assert result.returncode == 0, result.stderr
    got = {name: (e["code"], e["decision"], e["reason"]) for name, e in zip(payloads, entries(config))}
    assert got == {
        "dcc-valid": ("dcc:URN:UVCI:01:VN:E2E-VALID", "allow", "credential-valid"),
        "dcc-rsa": ("dcc:URN:UVCI:01:VN:E2E-RSA", "allow", "credential-valid"),
        "dcc-expired": ("dcc:URN:UVCI:01:VN:E2E-OLD", "deny", "credential-expired"),
        "dcc-revoked": ("dcc:URN:UVCI:01:VN:E2E-REVOKED", "deny", "credential-revoked"),
        "dcc-revoked-country": ("dcc:URN:UVCI:01:VN:E2E-REVOKED-CC", "deny", "credential-revoked"),
        "dcc-revoked-signature": ("dcc:URN:UVCI:01:VN:E2E-REVOKED-SIG", "deny", "credential-revoked"),
        "dcc-untrusted": ("dcc:URN:UVCI:01:VN:E2E-STRANGER", "deny", "credential-untrusted"),
        "dcc-incomplete": ("dcc:URN:UVCI:01:VN:E2E-HALF", "deny", "credential-rule"),
        "pass-valid": ("pass:STAFF-1", "allow", "credential-valid"),
        "pass-forged": ("pass:STAFF-2", "deny", "credential-signature"),
        "pass-revoked": ("pass:STAFF-3", "deny", "credential-revoked"),
        "pass-expired": ("pass:STAFF-4", "deny", "credential-expired"),
        "cccd-valid": ("cccd:001090012345", "allow", "credential-valid"),
        "cccd-malformed": ("cccd:", "deny", "credential-malformed"),
        "plain": ("OK-1", "allow", "listed"),
    }
    # Neither the database nor the log holds a payload (an EU certificate's is health data) or an address.
    raw = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("entries.db*"))
    for payload in payloads.values():
        if payload != "OK-1":
            assert payload.encode() not in raw and payload not in result.stderr
    assert "Tràng Tiền".encode() not in raw


def test_check_names_the_rule_and_a_repeat_is_keyed_by_the_subject(tmp_path, make_config, signers):
    ec_key, ec_der = signers["ec"]
    valid = hc1(ec_key, ec_der, "URN:UVCI:01:VN:REPEAT")
    # The same certificate as another QR payload (not compressed): still the same subject, so a repeat.
    again = hc1(ec_key, ec_der, "URN:UVCI:01:VN:REPEAT", compress=False)
    test = make_hc1(ec_key, ec_der, kind="t", entry=dcc_entry(
        "t", ci="URN:UVCI:01:VN:OLD-TEST", sc=(NOW - 100 * dt.timedelta(hours=1)).isoformat()),
        iat=NOW - DAY, exp=NOW + DAY)
    scans = tmp_path / "scans.txt"
    scans.write_text(f"{valid}\n{again}\n")
    config = make_config(f'[source]\ntype = "lines"\npath = "{scans}"\n', repeat=60, debounce_ms=0,
                         extra=CREDENTIALS.format(pass_key=passes.public_key_text(
                             passes.generate_key(tmp_path / "pass.key"))))
    assert run_checkpoint("trust", "import", write_gateway(tmp_path / "gw.json", ec_der),
                          "--config", config).returncode == 0
    out = run_checkpoint("check", test, "--config", config, "--json")
    assert out.returncode == 0, out.stderr
    check = json.loads(out.stdout)
    assert (check["decision"], check["reason"], check["rule"]) == ("deny", "credential-rule", "test-too-old")
    assert check["label"] == "Nguyễn Văn An"
    assert run_checkpoint("run", "--config", config).returncode == 0
    assert [(e["code"], e["reason"]) for e in entries(config)] == [
        ("dcc:URN:UVCI:01:VN:REPEAT", "credential-valid"), ("dcc:URN:UVCI:01:VN:REPEAT", "repeated")]


def step_for(tmp_path, lists, **settings) -> CredentialStep:
    return CredentialStep(CredentialsSettings(**{"formats": ["dcc", "pass", "cccd"], **settings}), lists=lists,
                          decision=DecisionSettings(mode="allowlist"), trust_path=tmp_path / "trust.json",
                          timezone="Asia/Ho_Chi_Minh", gate="north")


def test_step_allowlist_requires_a_listed_subject_and_trust_reloads_when_replaced(tmp_path, signers):
    """The step itself, over a real ListStore: allowlist mode without accept_unlisted wants the subject on a
    list; a trust list written later is read at the next refresh; an unusable one trusts no signer."""
    from edge.credentials import trustfile

    lists = ListStore(tmp_path / "lists.db")
    try:
        (tmp_path / "people.csv").write_text("code,action,label\nSTAFF-1,allow,Staff one\n")
        with open(tmp_path / "people.csv", "rb") as fh:
            lists.import_csv("people", fh, zone="UTC", max_code_bytes=2048)
        key = passes.generate_key(tmp_path / "pass.key")
        step = step_for(tmp_path, lists, passes={"trusted_keys": [passes.public_key_text(key)]})
        now_ms = int(NOW.timestamp() * 1000)
        staff = step.decide(passes.issue_pass(key, "STAFF-1", "An"), now_ms)
        visitor = step.decide(passes.issue_pass(key, "V-9", "Bình"), now_ms)
        assert (staff.outcome.value, staff.reason, staff.match.list_name) == ("allow", "credential-valid", "people")
        assert (visitor.outcome.value, visitor.reason, visitor.record) == ("deny", "not-listed", "pass:V-9")
        assert step.decide("just a code", now_ms) is None
        gated = step.decide(passes.issue_pass(key, "STAFF-1", "An", gates=["south"]), now_ms)
        assert (gated.reason, gated.rule) == ("credential-rule", "gate")

        payload = hc1(*signers["ec"], "URN:UVCI:01:VN:LATE")
        assert step.decide(payload, now_ms).reason == "credential-untrusted"
        assert step.trust_status(now_ms)["error"] == "no trust list"
        trustfile.store(json.dumps([trust_entry(signers["ec"][1])]).encode(), tmp_path / "trust.json",
                        now_ms=now_ms - 10 * 3_600_000)
        assert step.refresh() and not step.refresh()
        assert step.decide(payload, now_ms).reason == "not-listed"  # verified; allowlist wants it listed
        status = step.trust_status(now_ms)
        assert (status["version"], status["signers"], status["age_h"], status["stale"]) == (1, 1, 10.0, False)

        stale = step_for(tmp_path, lists, accept_unlisted=True, stale_trust="review",
                         dcc={"trust_max_age_h": 5})
        outcome = stale.decide(payload, now_ms)
        assert (outcome.outcome.value, outcome.reason) == ("review", "trust-stale")
        assert stale.problems(now_ms) == ["trust list stale: 10.0 h old, at most 5.0 h"]

        (tmp_path / "trust.json").write_text("{not json")
        assert step.refresh()
        assert step.decide(payload, now_ms).reason == "credential-untrusted" and step.trust_error
    finally:
        lists.close()


def test_running_daemon_reads_an_imported_trust_list_and_reports_it(tmp_path, make_config, signers):
    """No restart: a trust list imported while the daemon runs is used for the next scan, and the status
    says which version is in force and how old it is."""
    import os
    import signal

    from .conftest import checkpoint_process
    from .waiting import patience, wait_until

    fifo = tmp_path / "scanner.fifo"
    os.mkfifo(fifo)
    config = make_config(f'[source]\ntype = "lines"\npath = "{fifo}"\n', debounce_ms=0,
                         extra=CREDENTIALS.format(pass_key=passes.public_key_text(
                             passes.generate_key(tmp_path / "pass.key"))))
    status_path = tmp_path / "state" / "status.json"

    def status():
        try:
            return json.loads(status_path.read_text())
        except (OSError, ValueError):
            return None

    def scan(text: str, count: int):
        fd = os.open(fifo, os.O_WRONLY)
        try:
            os.write(fd, text.encode() + b"\n")
        finally:
            os.close(fd)
        wait_until(lambda: len(entries(config)) == count, what=f"entry {count}")

    payload = hc1(*signers["ec"], "URN:UVCI:01:VN:LIVE")
    proc = checkpoint_process("run", "--config", config)
    try:
        wait_until(lambda: (s := status()) and s.get("trust") and s["trust"]["error"] == "no trust list",
                   what="status without a trust list")
        assert any("trust list" in p for p in status()["problems"])
        scan(payload, 1)
        assert run_checkpoint("trust", "import", write_gateway(tmp_path / "gw.json", signers["ec"][1]),
                              "--config", config).returncode == 0
        wait_until(lambda: status()["trust"]["version"] == 1, what="the daemon read the trust list")
        assert status()["trust"]["signers"] == 1 and status()["trust"]["age_h"] is not None
        scan(payload, 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=patience(10))
    assert [e["reason"] for e in entries(config)] == ["credential-untrusted", "credential-valid"]


@pytest.fixture(scope="module")
def fuzz_step(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    lists = ListStore(folder / "lists.db")
    key = passes.generate_key(folder / "pass.key")
    step = step_for(folder, lists, accept_unlisted=True, revocation_lists=["revoked"],
                    passes={"trusted_keys": [passes.public_key_text(key)]})
    yield step
    lists.close()


@settings(max_examples=60)
@given(prefix=st.sampled_from(["HC1:", "CP1:", "001090012345|", "", "hc1:"]),
       body=st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.from_regex(r"[0-9A-Z $%*+./:-]{0,400}"),
       now_ms=st.integers(min_value=-2**62, max_value=2**62))
def test_any_payload_gives_a_typed_outcome_never_an_exception(fuzz_step, prefix, body, now_ms):
    outcome = fuzz_step.decide(prefix + body, now_ms)
    if outcome is not None:
        assert outcome.reason.startswith(("credential-", "not-listed", "expired", "not-yet-valid"))
        assert outcome.record.split(":", 1)[0] in ("dcc", "pass", "cccd")
        assert (prefix + body) not in outcome.record or len(prefix + body) < 20
