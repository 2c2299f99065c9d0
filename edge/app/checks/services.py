"""What the device keeps and talks to: the database directory, the broker, the clock, the lists."""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edge.app.checks.base import Check, Checker, current_user, ok
from edge.app.disk import disk
from edge.common.textsafe import for_log
from edge.lists import ListError
from edge.rules.clocktrust import BUILD_DATE, BUILD_FLOOR_MS


class ServiceChecks(Checker):
    def check_store(self) -> list[Check]:
        folder = Path(self.settings.store.dir)
        user = current_user()
        fix = (f"sudo install -d -o {user} -g {user} -m 0750 {folder} (the unit's StateDirectory= makes it "
               "for the service)")
        if not folder.is_dir():
            return [Check("database directory", "FAIL", f"{folder} does not exist", fix)]
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
                pass
        except OSError as exc:
            return [Check("database directory", "FAIL", f"{folder} is not writable: {exc.strerror}",
                          f"sudo chown -R {user}: {folder}")]
        checks = [ok("database directory", f"{folder} is writable")]
        space = disk(folder)
        if "error" not in space and (space["free_mb"] < self.settings.store.disk_warn_mb
                                     or space["free_percent"] < self.settings.store.disk_warn_percent):
            checks.append(Check("disk", "WARN", f"{space['free_mb']} MiB ({space['free_percent']} %) free",
                                "free space on the SD card (old logs: sudo journalctl --vacuum-size=100M)"))
        return checks

    def check_broker(self) -> list[Check]:
        sync = self.settings.sync
        if not sync.enabled:
            return [ok("broker", "sync is off")]
        from sync.wire.mqtt import SyncConfigError, make_client

        where = f"{sync.host}:{sync.port}"
        # Its own client id: connecting with the device's id would throw the running daemon off the broker.
        try:
            client = make_client(client_id=f"{self.settings.device.id}-doctor",
                                 username=sync.username or self.settings.device.id, password_file=sync.password_file,
                                 tls=sync.tls, ca_file=sync.ca_file, cert_file=sync.cert_file, key_file=sync.key_file)
        except SyncConfigError as exc:
            return [Check("broker", "FAIL", for_log(exc), "scripts/mqtt-credentials makes the device's files; "
                          "check the paths in [sync]")]
        answered = threading.Event()
        result: dict[str, Any] = {}

        def on_connect(client: object, userdata: object, flags: object, reason_code: Any,
                       properties: object) -> None:
            result["reason"] = reason_code
            answered.set()

        client.on_connect = on_connect
        try:
            client.connect(sync.host, sync.port, keepalive=10)
        except (OSError, ValueError) as exc:
            return [Check("broker", "FAIL", f"{where}: {for_log(getattr(exc, 'strerror', None) or exc)}",
                          "is the hub's broker running and reachable from here (network, firewall, [sync] host/port)?")]
        client.loop_start()
        try:
            if not answered.wait(self.timeout):
                return [Check("broker", "FAIL", f"{where} did not answer within {self.timeout:g} s",
                              "check the network, and tls = true only on the broker's TLS port")]
        finally:
            client.disconnect()
            client.loop_stop()
        reason = result["reason"]
        if reason.is_failure:
            return [Check("broker", "FAIL", f"{where} refused the connection: {reason}",
                          "the device's certificate or password (scripts/mqtt-credentials) and the broker's ACL")]
        return [ok("broker", f"{where} accepted the device{' over TLS' if sync.tls else ''}")]

    def check_clock(self) -> list[Check]:
        now = self.now_ms()
        if now < BUILD_FLOOR_MS:
            return [Check("clock", "FAIL", f"the clock says {time.strftime('%Y-%m-%d', time.gmtime(now / 1000))}, "
                          f"before this software was made ({BUILD_DATE})",
                          "let NTP set it (timedatectl set-ntp true) or set it by hand: "
                          "sudo date -s 'YYYY-MM-DD HH:MM'")]
        synced = self.synchronised()
        level = "FAIL" if self.settings.clock.require_sync else "WARN"
        fix = ("sudo timedatectl set-ntp true, and let the checkpoint reach an NTP server (a Pi has no "
               "battery clock)")
        if synced is None:
            return [Check("clock", level, "cannot tell whether a time source disciplines the clock", fix)]
        if not synced:
            return [Check("clock", level, "not synchronised by any time source", fix)]
        return [ok("clock", "synchronised")]

    def check_lists(self) -> list[Check]:
        from edge.lists import ListStore
        from edge.rules.policy import stale_lists

        decision = self.settings.decision
        path = self.settings.store.lists_path
        fix = "checkpoint list import NAME FILE.csv, or push lists from the hub (checkpoint-hub list push)"
        if not path.exists():
            level = "WARN" if decision.mode == "allowlist" else "OK"
            return [Check("lists", level, f"no lists yet ({path})"
                          + (": in allowlist mode every code is refused" if level == "WARN" else ""), fix)]
        try:
            store = ListStore(path, readonly=True)
            try:
                infos = [i for i in store.infos() if decision.consults(i.name)]
            finally:
                store.close()
        except ListError as exc:
            return [Check("lists", "FAIL", f"{path} is unreadable: {for_log(exc)}",
                          "restore it from the hub (checkpoint-hub list push) or remove it and import again")]
        if not infos:
            level = "WARN" if decision.mode == "allowlist" else "OK"
            return [Check("lists", level, "no list consulted by [decision]", fix)]
        stale = stale_lists(decision, infos, self.now_ms())
        if stale:
            return [Check("lists", "WARN", f"stale: {', '.join(for_log(n) for n in stale)} "
                          f"(policy {decision.stale_lists})", fix)]
        return [ok("lists", ", ".join(f"{for_log(i.name)} v{i.version} ({i.count} entries)" for i in infos))]
