"""Who runs the checks: the user, and the groups the configured devices need."""
from __future__ import annotations

import grp
import os
import pwd

from edge.app.checks.base import Check, Checker, current_user, ok
from edge.settings.schema import OpenCVSource


class AccessChecks(Checker):
    def needed_groups(self) -> list[str]:
        source = self.settings.source
        groups = {"picamera2": ["video"], "hid": ["input"], "serial": ["dialout"]}.get(source.type, [])
        if isinstance(source, OpenCVSource) and (isinstance(source.device, int)
                                                 or str(source.device).startswith("/dev/")):
            groups = ["video"]
        if any(o.driver == "gpio" for o in self.settings.outputs.values()):
            groups.append("gpio")
        return groups

    def check_user(self) -> list[Check]:
        user = current_user()
        if os.geteuid() == 0:
            checks = [Check("user", "WARN", "running as root: root reaches every device, the service does not",
                            "run as the service user: sudo checkpoint doctor --as-user checkpoint")]
            return checks + self._account_groups(self.service_user)
        checks = [ok("user", f"running as {user}")]
        mine = set(os.getgroups()) | {os.getegid()}
        for group in self.needed_groups():
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                checks.append(Check(f"group {group}", "WARN", f"no group {group} on this system",
                                    "scripts/install creates it (groupadd --system " + group + ")"))
                continue
            if gid in mine:
                checks.append(ok(f"group {group}", f"{user} is in group {group}"))
            else:
                checks.append(Check(f"group {group}", "WARN", f"{user} is not in group {group}",
                                    f"add {user} to group {group}: sudo usermod -aG {group} {user}"))
        return checks

    def _account_groups(self, user: str) -> list[Check]:
        """As root: whether the service's account is in the groups, as /etc/group says."""
        try:
            primary = pwd.getpwnam(user).pw_gid
        except KeyError:
            return [Check("service user", "WARN", f"no user {user} on this system",
                          "sudo make install creates it (scripts/install)")]
        checks = []
        for group in self.needed_groups():
            try:
                entry = grp.getgrnam(group)
            except KeyError:
                checks.append(Check(f"group {group}", "WARN", f"no group {group} on this system",
                                    "scripts/install creates it (groupadd --system " + group + ")"))
                continue
            if user in entry.gr_mem or entry.gr_gid == primary:
                checks.append(ok(f"group {group}", f"{user} is in group {group}"))
            else:
                checks.append(Check(f"group {group}", "WARN", f"{user} is not in group {group}",
                                    f"add {user} to group {group}: sudo usermod -aG {group} {user}"))
        return checks
