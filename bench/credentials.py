"""Credential verification benchmark: ours beside a straightforward verifier, per format, in one run.

    python -m bench.credentials [--seconds 2] [--count 200] [--json] [--latency]

Verifications per second on one core (the process is pinned to one CPU where the OS allows) for EU
certificates signed with ES256 and with PS256, the appliance's passes and ID card payloads. Beside each,
what a user would write with pycose + cbor2 + base45 (EU certificates; for passes base45 + cbor2 +
cryptography's Ed25519; for ID cards a split and strptime): decode, find the key by kid, verify, check
exp. Both sides verify the same distinct payloads, all valid. The target is >= 2,000 EU certificates/s.
--latency adds the scan-to-signal time of an EU certificate beside a plain code through the real
pipeline (policy with its credential step, SQLite commit, signal), interleaved in one run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the certificate factory

from drivers.sources.base import Source, TextScan  # noqa: E402
from edge.common.clock import mono_ns  # noqa: E402
from edge.credentials import Trust, evaluate, load_trust_list, passes  # noqa: E402
from tests.credfixtures import (  # noqa: E402
    AT,
    AT_MS,
    DAY,
    cccd_payload,
    dcc_entry,
    make_dsc,
    make_hc1,
    trust_entry,
)


def straightforward_dcc(trust_entries: list[dict]):
    import base64

    import base45
    import cbor2
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import load_der_x509_certificate
    from pycose.headers import KID
    from pycose.keys import CoseKey
    from pycose.messages import Sign1Message

    keys = {}
    for entry in trust_entries:
        cert = load_der_x509_certificate(base64.b64decode(entry["rawData"]))
        pem = cert.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        keys[base64.b64decode(entry["kid"])] = CoseKey.from_pem_public_key(pem.decode())

    def verify(payload: str, at_s: float) -> bool:
        data = zlib.decompress(base45.b45decode(payload[4:]))
        # pycose 1.1's CoseMessage.decode expects a list and a dict inside the tag; cbor2 6 gives a tuple
        # and a frozendict there, so the user's workaround: unwrap the tag and hand pycose what it expects.
        protected, unprotected, body, signature = cbor2.loads(data).value
        message = Sign1Message.from_cose_obj([protected, dict(unprotected), body, signature], True)
        kid = message.phdr.get(KID) or message.uhdr.get(KID)
        message.key = keys[kid]
        if not message.verify_signature():
            return False
        claims = cbor2.loads(message.payload)
        return claims[6] <= at_s < claims[4]

    return verify


def straightforward_pass(public_key):
    import base45
    import cbor2

    def verify(payload: str, at_s: float) -> bool:
        data = base45.b45decode(payload[4:])
        body, signature = data[:-64], data[-64:]
        public_key.verify(signature, passes.DOMAIN + body)
        item = cbor2.loads(body)
        return item[5] is None or at_s < item[5]

    return verify


def straightforward_cccd(payload: str, at_s: float) -> bool:
    fields = payload.split("|")
    dt.datetime.strptime(fields[3], "%d%m%Y")
    dt.datetime.strptime(fields[6], "%d%m%Y")
    return len(fields[0]) == 12 and fields[0].isdigit()


def rate(fn, payloads: list[str], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while True:
        for payload in payloads:
            assert fn(payload)
        done += len(payloads)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


class Scans(Source):
    """Text scans from memory, each stamped as it is handed over (as bench.latency's MemoryLines), so
    scan-to-signal is the pipeline's own time, not time spent waiting in a queue."""

    name = "bench-credentials"

    def __init__(self, payloads: list[str]):
        super().__init__()
        self.payloads, self._next = payloads, 0
        self.stats.state = "ok"

    def get(self, timeout: float):
        if self._next >= len(self.payloads):
            self.finished = True
            return None
        self._next += 1
        self.stats.delivered += 1
        return TextScan(self.payloads[self._next - 1].encode(), mono_ns())


def scan_latency(count: int, ec_key, ec_der, entries: list[dict]) -> dict | None:
    """Scan-to-signal through the real pipeline (policy, SQLite commit with synchronous=FULL, signal) of EU
    certificates beside plain codes, interleaved, at the real time; None when the policy has no credential
    step (edge/rules/policy.py without issue 16's hooks)."""
    import tempfile

    from drivers.outputs.fake import FakeOutput
    from edge.app.pipeline import Pipeline
    from edge.app.signals import Signaller
    from edge.credentials import trustfile
    from edge.decode.debounce import Debouncer
    from edge.decode.reader import make_decoder
    from edge.entries.store import EntryStore
    from edge.lists import ListStore
    from edge.rules.policy import Policy
    from edge.settings.schema import parse_settings

    now = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder)
        settings = parse_settings({
            "source": {"type": "lines", "path": "-"}, "store": {"dir": str(state)},
            "decision": {"mode": "allowlist"},
            "credentials": {"formats": ["dcc"], "accept_unlisted": True},
            "outputs": {"green": {"driver": "fake"}, "red": {"driver": "fake"}},
            "signals": {"allow": {"green": {"on_ms": 1}}, "deny": {"red": {"on_ms": 1}}},
        })
        trustfile.store(json.dumps(entries).encode(), trustfile.default_path(state), now_ms=int(now.timestamp() * 1000))
        store, lists = EntryStore(settings.store.entries_path), ListStore(settings.store.lists_path)
        policy = Policy.for_settings(settings, lists, store.last_allowed)
        if getattr(policy, "credentials", None) is None:
            store.close()
            lists.close()
            return None
        payloads = []
        for i in range(count):
            payloads.append(make_hc1(ec_key, ec_der, iat=now - 30 * DAY, exp=now + 300 * DAY, entry=dcc_entry(
                "v", ci=f"URN:UVCI:01:VN:L{i:07d}", dt=(now - 60 * DAY).date().isoformat())))
            payloads.append(f"TICKET-{i:08d}")
        signaller = Signaller({"green": FakeOutput("green"), "red": FakeOutput("red")}, settings.signals)
        scans = []
        pipeline = Pipeline(source=Scans(payloads), decoder=make_decoder("zxing"), debouncer=Debouncer(0),
                            policy=policy, store=store, signaller=signaller, device_id="bench",
                            config_version="bench", max_payload_bytes=2048, on_scan=scans.append)
        while not pipeline.source.finished:
            pipeline.step(0.1)
        signaller.close()
        store.close()
        lists.close()
    out = {}
    for kind, picked in (("certificate", scans[0::2]), ("plain code", scans[1::2])):
        assert kind != "certificate" or all(s.decision.reason.value == "credential-valid" for s in picked)
        times = sorted((s.signalled_ns - s.arrived_ns) / 1e6 for s in picked)
        out[kind] = {"p50_ms": round(times[len(times) // 2], 3),
                     "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--count", type=int, default=200, help="distinct payloads per format")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--latency", action="store_true", help="also scan-to-signal of a certificate beside a plain "
                    "code, through the real pipeline")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    ec_key, ec_der = make_dsc("ec")
    rsa_key, rsa_der = make_dsc("rsa")
    entries = [trust_entry(ec_der), trust_entry(rsa_der)]
    admin = passes.Ed25519PrivateKey.generate()
    trust = Trust(dsc=load_trust_list(json.dumps(entries).encode()),
                  pass_keys=passes.trusted_keys([passes.public_key_text(admin)]))
    at_s = AT_MS / 1000
    n = args.count
    sets = {
        "EU DCC ES256": [make_hc1(ec_key, ec_der, kind="vtr"[i % 3],
                                  entry=dcc_entry("vtr"[i % 3], ci=f"URN:UVCI:01:VN:{i:08d}"))
                         for i in range(n)],
        "EU DCC PS256": [make_hc1(rsa_key, rsa_der, entry=dcc_entry("v", ci=f"URN:UVCI:01:VN:R{i:07d}"))
                         for i in range(n)],
        "pass (Ed25519)": [passes.issue_pass(admin, f"V-{i:05d}", "Nguyễn Văn An", valid_until=AT + DAY,
                                             gates=["north"]) for i in range(n)],
        "ID card (CCCD)": [cccd_payload(number=f"001090{i:06d}") for i in range(n)],
    }
    baseline = {"EU DCC ES256": straightforward_dcc(entries), "EU DCC PS256": straightforward_dcc(entries),
                "pass (Ed25519)": straightforward_pass(admin.public_key()), "ID card (CCCD)": straightforward_cccd}

    def ours(payload: str) -> bool:
        return evaluate(payload, trust, AT_MS).accepted

    results = []
    latency = scan_latency(args.count, ec_key, ec_der, entries) if args.latency else None
    for name, payloads in sets.items():
        mine = rate(ours, payloads, args.seconds)
        theirs = rate(lambda p, f=baseline[name]: f(p, at_s), payloads, args.seconds)
        results.append({"format": name, "ours_per_s": round(mine), "straightforward_per_s": round(theirs),
                        "ratio": round(mine / theirs, 2), "ours_ms": round(1000 / mine, 3)})
    if args.json:
        print(json.dumps({"verify": results, "scan_to_signal": latency} if args.latency else results))
    else:
        print(f"{'format':<16} {'ours/s':>9} {'ms each':>8} {'straightforward/s':>18} {'ratio':>6}")
        for r in results:
            print(f"{r['format']:<16} {r['ours_per_s']:>9} {r['ours_ms']:>8} {r['straightforward_per_s']:>18} "
                  f"{r['ratio']:>6}")
        if args.latency and latency is None:
            print("scan-to-signal: not measured (edge/rules/policy.py has no credential step: issue 16's hooks)")
        elif latency is not None:
            print(f"\nscan-to-signal through the pipeline ({args.count} of each, interleaved, SQLite commit included):")
            for kind, r in latency.items():
                print(f"{kind:<16} p50 {r['p50_ms']:>7} ms   p99 {r['p99_ms']:>7} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
