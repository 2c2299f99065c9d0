"""One way to make a paho-mqtt 2.x client: MQTT 5, TLS or password, a persistent session, backoff."""
from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.common.secrets import secret_path
from sync.wire.errors import SyncConfigError

__all__ = ["SyncConfigError", "connect_properties", "make_client", "read_secret"]


def read_secret(value: str) -> str:
    path = secret_path(value)
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SyncConfigError(f"cannot read secret {value}: {exc}") from None


def make_client(*, client_id: str, username: str | None = None, password_file: str | None = None,
                tls: bool = False, ca_file: str | None = None, cert_file: str | None = None,
                key_file: str | None = None, manual_ack: bool = False) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=manual_ack)
    if username is not None:
        client.username_pw_set(username, read_secret(password_file) if password_file else None)
    if tls:
        try:
            client.tls_set(ca_certs=str(secret_path(ca_file)) if ca_file else None,
                           certfile=str(secret_path(cert_file)) if cert_file else None,
                           keyfile=str(secret_path(key_file)) if key_file else None,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise SyncConfigError(f"TLS files: {exc}") from None
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_properties(session_expiry_s: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it untyped
    props.SessionExpiryInterval = session_expiry_s  # the broker keeps our subscriptions and queue that long
    return props
