"""A real Mosquitto broker per test, on a free port, with the test's own config (TLS, passwords, ACL);
and a TCP proxy that can cut the network between a device and the broker."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def wait_port(port: int, timeout: float = 10.0) -> None:
    from .waiting import wait_until

    try:
        wait_until(lambda: listening(port), timeout, f"something listening on {port}")
    except AssertionError:
        raise RuntimeError(f"nothing listening on {port}") from None


class Broker:
    """mosquitto -c <our config>; persistence in its own folder so a restart keeps sessions."""

    def __init__(self, folder: Path, *, acl: str | None = None, passwords: dict[str, str] | None = None,
                 tls: Path | None = None, anonymous: bool = True, extra: str = "",
                 password_file: Path | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        lines = ["per_listener_settings false", "persistence true", f"persistence_location {self.folder}/",
                 "autosave_interval 1", "user root", "max_queued_messages 1000000", "max_inflight_messages 20",
                 f"log_dest file {self.folder}/mosquitto.log", "log_type all",
                 f"listener {self.port} 127.0.0.1", f"allow_anonymous {'true' if anonymous else 'false'}"]
        if tls:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {tls}/ca.crt", f"certfile {tls}/server.crt",
                      f"keyfile {tls}/server.key", "require_certificate true", "use_identity_as_username true"]
        if passwords:
            passwd = self.folder / "passwd"
            passwd.write_text("")
            for user, password in passwords.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
            lines.append(f"password_file {passwd}")
        elif password_file is not None:  # one made elsewhere (e.g. by scripts/mqtt-credentials)
            lines.append(f"password_file {password_file}")
        if acl is not None:
            (self.folder / "acl").write_text(acl)
            lines.append(f"acl_file {self.folder / 'acl'}")
        (self.folder / "mosquitto.conf").write_text("\n".join(lines) + "\n" + extra)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(self.port)
        except RuntimeError:
            self.proc.kill()
            raise RuntimeError("mosquitto did not start: " + self.proc.stderr.read().decode(errors="replace")) from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # saves its persistence file on the way out
            self.proc.wait(10)
        self.proc = None

    def reload(self, acl: str | None = None) -> None:
        """SIGHUP, as `systemctl reload mosquitto`: the password and ACL files are read again (the ACL
        replaced by `acl` first, if given). Returns once the broker has reloaded: Mosquitto handles
        packets on the same thread, so whatever is sent afterwards meets the new rules."""
        from .waiting import wait_until

        if acl is not None:
            (self.folder / "acl").write_text(acl)
        before = self.log().count("Reloading config")
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.log().count("Reloading config") > before, 10, "mosquitto reloaded")

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Proxy:
    """A TCP relay 127.0.0.1:port -> target; cut() drops every connection and refuses new ones."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._open = threading.Event()
        self._open.set()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.bytes_up = 0  # client -> target, MQTT framing and all
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                continue
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            # The 2 s were for connecting only: a relay must not end a connection whose broker is quiet for a while.
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, up), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if up:
                    self.bytes_up += len(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
                except OSError:
                    pass
            self._conns.clear()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._server.close()
