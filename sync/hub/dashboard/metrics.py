"""/metrics in the Prometheus text format, read from the hub database at each scrape.

A custom collector (not counters kept in memory): every dashboard process answers the same, and a
restart loses nothing, since the database is the record. The collector process's own rates (inserts/s,
batch latency) are not in the database, so they are not here."""
from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from sync.hub.dashboard import fleet, reads
from sync.hub.hubdb import HubDB


class HubCollector:
    def __init__(self, open_db, clock, limits: fleet.Thresholds):
        self.open_db, self.clock, self.limits = open_db, clock, limits

    def collect(self):
        db: HubDB = self.open_db()
        view = fleet.build(db, self.clock(), self.limits)
        g = {name: GaugeMetricFamily(f"checkpoint_device_{name}", text, labels=["device"]) for name, text in (
            ("online", "1 when the device's last status says online, 0 when offline (its last will)"),
            ("last_seen_age_seconds", "seconds since the hub last heard from the device"),
            ("outbox_depth", "entries the device holds not yet acknowledged by the broker"),
            ("oldest_unsynced_age_seconds", "age of the device's oldest unsynced entry"),
            ("clock_offset_seconds", "hub's receive time minus the device's send time"),
            ("behind", "1 when the device's applied versions differ from what is pushed to it"),
            ("alerts", "alerts raised for the device (offline, outbox, clock offset, refused push)"))}
        for row in view["rows"]:
            d = [row["device"]]
            g["online"].add_metric(d, 1 if row["state"] == "online" else 0)
            for key, name in (("last_seen_age_s", "last_seen_age_seconds"), ("outbox_depth", "outbox_depth"),
                              ("oldest_unsynced_age_s", "oldest_unsynced_age_seconds"),
                              ("clock_offset_s", "clock_offset_seconds")):
                if row[key] is not None:
                    g[name].add_metric(d, row[key])
            g["behind"].add_metric(d, 1 if row["drift"] else 0)
            g["alerts"].add_metric(d, len(row["alerts"]))
        yield from g.values()
        decisions = CounterMetricFamily("checkpoint_device_decisions", "entries stored at the hub",
                                        labels=["device", "decision", "reason"])
        for device, decision, reason, count in reads.decisions(db):
            decisions.add_metric([device, decision, reason], count)
        yield decisions
        refused = CounterMetricFamily("checkpoint_device_refused_bundles", "bundles the device refused",
                                      labels=["device"])
        for device, count in reads.refused_counts(db).items():
            refused.add_metric([device], count)
        yield refused
        hub = {name: CounterMetricFamily(f"checkpoint_hub_{name}", text, labels=["device"]) for name, text in (
            ("entries", "entries stored"), ("duplicates", "copies of stored entries received again"),
            ("conflicts", "entry ids received again with other content (the first copy kept)"))}
        for dev in db.devices():
            for name in hub:
                hub[name].add_metric([dev["device_id"]], dev[name])
        yield from hub.values()
        rejected = CounterMetricFamily("checkpoint_hub_rejected_messages", "messages the collector refused")
        rejected.add_metric([], reads.rejected_messages(db))
        yield rejected
        counts = GaugeMetricFamily("checkpoint_fleet_devices", "devices by what they are", labels=["what"])
        for what, n in view["counts"].items():
            counts.add_metric([what], n)
        yield counts


def render(open_db, clock, limits: fleet.Thresholds) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(open_db, clock, limits))
    return generate_latest(registry)
