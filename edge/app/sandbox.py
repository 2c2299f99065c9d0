"""Running the doctor as the service runs: inside the unit's sandbox (systemd-run), or as its user (runuser)."""
from __future__ import annotations

INSIDE = "CHECKPOINT_DOCTOR_INSIDE"  # set on the re-run as the service user, so it does not re-run again

# The unit's settings that make the service's world: who it is and what it may reach.
SANDBOX_KEYS = {
    "User", "Group", "SupplementaryGroups", "DevicePolicy", "DeviceAllow", "NoNewPrivileges", "ProtectSystem",
    "ReadWritePaths", "ReadOnlyPaths", "PrivateTmp", "ProtectHome", "ProtectKernelTunables", "ProtectKernelModules",
    "ProtectKernelLogs", "ProtectControlGroups", "ProtectHostname", "ProtectClock", "ProtectProc", "PrivateIPC",
    "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "RestrictAddressFamilies",
    "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber", "CapabilityBoundingSet", "UMask",
    "Environment", "LoadCredential", "StateDirectory", "StateDirectoryMode", "ConfigurationDirectory",
    "RemoveIPC", "PrivateDevices", "MemoryDenyWriteExecute",
}


def unit_properties(text: str) -> list[str]:
    """KEY=VALUE lines of a unit's [Service] section that set its sandbox, in order."""
    props, section = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        key, sep, value = line.partition("=")
        if section == "[Service]" and sep and key.strip() in SANDBOX_KEYS:
            props.append(f"{key.strip()}={value.strip()}")
    return props


def sandbox_command(unit_text: str, argv: list[str]) -> list[str]:
    """systemd-run with the unit's user, groups and sandbox, running argv and waiting for its status."""
    props = [f"--property={p}" for p in unit_properties(unit_text)]
    return ["systemd-run", "--quiet", "--pipe", "--wait", "--collect", "--service-type=exec",
            f"--setenv={INSIDE}=1", *props, *argv]


def as_user_command(user: str, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", "env", f"{INSIDE}=1", *argv]
