"""The screens' web server: Starlette on uvicorn, in a daemon thread with its own asyncio loop.

The daemon's thread binds the socket (so a port already taken is the caller's clean UIError, not uvicorn's
exit) and hands it to uvicorn; the pages then run beside the pipeline and reach it only through the
UIContext. The officer's pages (edge/ui/officer.py) are mounted when that module is there.
"""
from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import socket
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from edge.ui import kiosk
from edge.ui.context import UIContext
from edge.ui.errors import UIError as UIError  # re-exported: what start_ui raises, caught by the hub's dashboard

if TYPE_CHECKING:
    import uvicorn  # imported when the screens start: a daemon without them never loads it

log = logging.getLogger("checkpoint.ui")

STATIC = Path(__file__).parent / "static"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
# Connections served at once; beyond, uvicorn answers 503 at once rather than taking more file handles (each live
# page holds one; the pipeline's database and devices need theirs). systemd's LimitNOFILE gives headroom.
LIMIT_CONCURRENCY = 128
BACKLOG = 128


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:8080', '[::1]:8080', '0.0.0.0:0' -> (host, port)."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UIError(f"[ui] listen {listen!r}: expected host:port")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise UIError(f"[ui] listen {listen!r}: no host (0.0.0.0 listens everywhere, by choice)")
    return host, int(port)


def bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a name: resolved by bind
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise UIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def officer_module() -> ModuleType | None:
    """edge/ui/officer.py when it is installed; the kiosk runs without it."""
    try:
        return importlib.import_module(".officer", __package__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.officer":
            raise
        return None


def build_app(context: UIContext) -> Starlette:
    routes: list[BaseRoute] = list(kiosk.routes(context))
    middleware: list[Middleware] = []
    officer = officer_module()
    if officer is not None:
        routes += list(officer.routes(context))
        middleware += list(officer.middleware(context))
    routes.append(Mount("/static", app=StaticFiles(directory=STATIC), name="static"))
    return Starlette(routes=routes, middleware=middleware)


class UIServer:
    def __init__(self, context: UIContext, sock: socket.socket, url: str, config: uvicorn.Config):
        import uvicorn

        class Server(uvicorn.Server):
            async def startup(inner, sockets: list[socket.socket] | None = None) -> None:
                context.events.attach(asyncio.get_running_loop())
                await super().startup(sockets)
                self._started.set()

            async def shutdown(inner, sockets: list[socket.socket] | None = None) -> None:
                context.events.detach()  # every live stream ends, so the shutdown does not wait for them
                await super().shutdown(sockets)

        self.context, self.url, self._sock = context, url, sock
        self._started = threading.Event()
        self._server = Server(config)
        self._thread = threading.Thread(target=self._run, name="ui", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # noqa: BLE001 - the screens failing must never stop the gate
            log.error("screens stopped: %s: %s", type(exc).__name__, exc)
        finally:
            self._started.set()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(START_TIMEOUT_S)
        if not self._thread.is_alive() or not self._server.started:
            self.stop()
            raise UIError(f"the screens' server did not start on {self.url}")

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S)
        self._sock.close()


def start_ui(context: UIContext) -> UIServer:
    """Serve the screens; raises UIError when they cannot be (the appliance goes on scanning)."""
    import uvicorn

    settings = context.settings
    host, port = parse_listen(settings.listen)
    tls = bool(settings.tls_cert_file)
    if tls != bool(settings.tls_key_file):
        raise UIError("[ui] tls_cert_file and tls_key_file go together")
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls else 'http'}://{shown}:{bound_port}"
    config = uvicorn.Config(build_app(context), log_level="warning", access_log=False, lifespan="off",
                            loop="asyncio", http="h11", ws="none", timeout_graceful_shutdown=1,
                            ssl_certfile=settings.tls_cert_file, ssl_keyfile=settings.tls_key_file,
                            server_header=False, limit_concurrency=LIMIT_CONCURRENCY, backlog=BACKLOG,
                            # No proxy in front: X-Forwarded-For from anyone (loopback included) is ignored, so
                            # the audit and the login limit see the real peer's address.
                            proxy_headers=False, forwarded_allow_ips="")
    if tls:
        try:
            config.load()  # reads the certificate now: a bad file is the caller's error, not the thread's
        except (OSError, ValueError) as exc:
            sock.close()
            raise UIError(f"[ui] TLS: {exc}") from exc
    server = UIServer(context, sock, url, config)
    try:
        server.start()
    except Exception:
        sock.close()
        raise
    return server
