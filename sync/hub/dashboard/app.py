"""The dashboard's web app: Starlette pages from Jinja2 templates, reading the hub database read-only.

Administrators log in (argon2 hashes from a TOML file). The session is kept on the server, in this process's
memory (edge.ui.auth.Sessions, as the officer page does): the signed cookie (SameSite=Strict) carries only a
random session id and the CSRF token every form must send back, so a logout ends the session for every copy
of the cookie. Memory, not the hub database: the dashboard only reads the database (read-only connection),
and a restart logging administrators out is what the unsaved --session-key did already. Behind a load
balancer, several dashboards need sticky sessions. The server holds no signing key:
pushing stays in the CLI. /metrics needs no login (a Prometheus scrape): keep the listen address private."""
from __future__ import annotations

import datetime as dt
import hmac
import io
import logging
import secrets
import threading
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edge.common.clock import wall_ms
from edge.common.textsafe import for_log
from edge.entries.export import write_entries
from edge.ui.auth import LoginLimit, Sessions, check_password
from sync.hub.dashboard import fleet, metrics, reads
from sync.hub.dashboard.cache import Fresh
from sync.hub.errors import DashboardError
from sync.hub.hubdb import HubDB

__all__ = ["DashboardError", "build_app", "read_admins"]

log = logging.getLogger("checkpoint.hub.dashboard")
HERE = Path(__file__).parent
SESSION_S = 12 * 3600
PER_PAGE = 100      # fleet rows per page: at 1,000 devices the whole table was ~500 KB every 2 s per viewer
MAX_PER_PAGE = 1000
SORTS = ("device", "state", "last_seen", "outbox", "oldest", "offset", "drift", "problems")


def read_admins(path: Path) -> dict[str, str]:
    """[admins] name = "$argon2id$..." -> {name: hash}."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DashboardError(f"cannot read the admins file {path}: {exc}") from exc
    admins = data.get("admins")
    if not isinstance(admins, dict) or not admins:
        raise DashboardError(f"{path}: no [admins] table (name = \"<argon2 hash from `checkpoint ui hash-password`>\")")
    for name, value in admins.items():
        if not isinstance(value, str) or not value.startswith("$argon2"):
            raise DashboardError(f"{path}: admin {for_log(name)}: not an argon2 hash")
    return dict(admins)


class Reader:
    """One read-only connection, used by one request at a time; opened again after it fails."""

    def __init__(self, url: str):
        self.url = url
        self.db: HubDB | None = None
        self.lock = threading.Lock()

    def __call__(self, work):
        with self.lock:
            if self.db is None:
                self.db = HubDB(self.url, readonly=True)
            try:
                return work(self.db)
            except self.db.errors:
                self.db.close()
                self.db = None
                raise


def _whole(text: str | None, default: int, low: int, high: int) -> int:
    """A page number or size from the query: a whole number, clamped to [low, high]; anything else the default."""
    try:
        value = int(text) if text else default
    except ValueError:
        value = default
    return max(low, min(value, high))


def _parse_time(text: str, zone) -> int | None:
    """'2026-11-29T10:00' (in the hub's zone) or '2026-11-29' -> ms; '' -> None."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return int(when.timestamp() * 1000)


def build_app(db_url: str, admins: dict[str, str], *, zone: str | None = None,
              limits: fleet.Thresholds = fleet.Thresholds(), session_key: bytes | None = None,
              secure_cookie: bool = False, clock=wall_ms, fresh_s: float = 1.0) -> Starlette:
    tz = ZoneInfo(zone) if zone else dt.datetime.now().astimezone().tzinfo
    reader = Reader(db_url)
    limit = LoginLimit()
    sessions = Sessions(SESSION_S)
    cache = Fresh(fresh_s, 10 * fresh_s)  # 0: no cache
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))

    def when(ms) -> str:
        if not isinstance(ms, int) or isinstance(ms, bool):
            return "-"
        try:
            return dt.datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S")
        except (OverflowError, OSError, ValueError):
            return "-"

    def local_iso(ms) -> str | None:
        try:
            return dt.datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="milliseconds")
        except (TypeError, OverflowError, OSError, ValueError):
            return None

    def age(seconds) -> str:
        if seconds is None:
            return "-"
        s = abs(seconds)
        text = f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"
        return ("-" if seconds < 0 else "") + text

    env.filters.update(when=when, age=age)
    env.globals.update(zone=str(tz))

    def admin_of(request: Request) -> str | None:
        """The administrator whose server-side session the cookie names: None once it ended (logout, expiry,
        a changed password hash, a restart)."""
        return sessions.officer(request.session.get("sid"), admins)

    def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        context.update(admin=admin_of(request), csrf=_csrf(request))
        return HTMLResponse(env.get_template(name).render(**context), status_code=status)

    def guarded(handler):
        def wrapped(request: Request):
            if admin_of(request) is None:
                request.session.pop("sid", None)
                return RedirectResponse("/login?" + urlencode({"next": request.url.path}), 303)
            return handler(request)
        return wrapped

    def fleet_view(request: Request) -> dict:
        view = reader(lambda db: fleet.build(db, clock(), limits))
        q = request.query_params
        group, state = q.get("group", ""), q.get("state", "")
        sort = q.get("sort", "device")
        sort = sort if sort in SORTS else "device"
        rows = [r for r in view["rows"] if (not group or group in r["groups"]) and (
            not state or r["state"] == state or (state == "behind" and r["drift"])
            or (state == "problems" and r["problems"]) or (state == "alerts" and r["alerts"]))]
        key = {"device": lambda r: r["device"], "state": lambda r: (r["state"], r["device"]),
               "last_seen": lambda r: -(r["last_seen_ms"] or 0), "outbox": lambda r: -(r["outbox_depth"] or 0),
               "oldest": lambda r: -(r["oldest_unsynced_age_s"] or 0),
               "offset": lambda r: -abs(r["clock_offset_s"] or 0), "drift": lambda r: -len(r["drift"]),
               "problems": lambda r: -len(r["problems"])}[sort]
        rows.sort(key=key)
        per = _whole(q.get("per"), PER_PAGE, 1, MAX_PER_PAGE)
        pages = max(1, -(-len(rows) // per))
        number = _whole(q.get("page"), 1, 1, pages)
        # The counts stay over the whole fleet (view["counts"]); the table shows one page of the filtered rows.
        return {**view, "rows": rows[(number - 1) * per:number * per], "matching": len(rows), "group": group,
                "state": state, "sort": sort, "page": number, "pages": pages, "per": per,
                "query": urlencode({"group": group, "state": state, "sort": sort, "page": number, "per": per}),
                "keep": urlencode({"group": group, "state": state, "sort": sort, "per": per})}

    def fleet_table(request: Request) -> tuple[str, dict]:
        """The table's HTML and the filters, the same for every administrator: shared through the cache."""
        q = request.query_params
        key = (q.get("group", ""), q.get("state", ""), q.get("sort", "device"), q.get("page", ""), q.get("per", ""))

        def make():
            view = fleet_view(request)
            html = env.get_template("fleet_rows.html").render(**view)
            return html, {k: view[k] for k in ("groups", "group", "state", "sort", "query", "per")}
        return cache.get(key, make)

    @guarded
    def fleet_page(request: Request):
        html, view = fleet_table(request)
        return page(request, "fleet.html", table=html, **view)

    @guarded
    def fleet_rows(request: Request):
        return HTMLResponse(fleet_table(request)[0])

    @guarded
    def device_page(request: Request):
        device = request.path_params["device"]

        def work(db: HubDB):
            row = next((r for r in fleet.build(db, clock(), limits)["rows"] if r["device"] == device), None)
            return {"row": row, "history": fleet.history(db.status_history(device, 200), device),
                    "acks": db.acks(device, 50), "gaps": db.gaps(device),
                    "entries": reads.search_entries(db, device=device, limit=50),
                    "offsets": reads.offsets(db, device, 50), "rejected": db.rejected(device, 20)}
        data = reader(work)
        if data["row"] is None:
            return page(request, "message.html", 404, title="No such device", text=f"No device {device} is known.")
        return page(request, "device.html", device=device, **data)

    @guarded
    def entries_page(request: Request):
        q = request.query_params
        filters: dict[str, Any] = dict(device=q.get("device") or None, decision=q.get("decision") or None,
                       reason=q.get("reason") or None, text=q.get("text") or None,
                       since_ms=_parse_time(q.get("since", ""), tz), until_ms=_parse_time(q.get("until", ""), tz))
        fmt = q.get("format", "html")
        rows = reader(lambda db: reads.search_entries(
            db, **filters, limit=reads.MAX_ROWS if fmt in ("csv", "json") else 500))
        if fmt in ("csv", "json"):
            out = io.StringIO()
            # `time` is UTC (write_entries' own); `local_time` beside it in the hub's zone, with its offset.
            write_entries(({**row, "local_time": local_iso(row["wall_ms"])} for row in rows), fmt, out)
            return Response(out.getvalue(), media_type="text/csv" if fmt == "csv" else "application/x-ndjson",
                            headers={"Content-Disposition": f'attachment; filename="entries.{fmt}"'})
        return page(request, "entries.html", rows=rows, q=q, export=urlencode(
            {k: v for k, v in q.items() if k != "format"}))

    @guarded
    def pushes_page(request: Request):
        def work(db: HubDB):
            view = fleet.build(db, clock(), limits)
            acks = reads.latest_acks(db)
            pushes = []
            for push in reads.pushed(db):
                answers = [a for a in acks if a["target"] == push["target"] and _kind(a["kind"]) == push["kind"]
                           and (a["name"] or "") == push["name"] and a["version"] == push["version"]]
                named = [r["device"] for r in view["rows"] if push["target"] in fleet.targets_of(r["device"],
                                                                                               r["groups"])]
                answered = {a["device_id"] for a in answers}
                pushes.append({**push, "answers": answers, "silent": [d for d in named if d not in answered]})
            return pushes
        return page(request, "pushes.html", pushes=reader(work))

    def metrics_page(request: Request):
        body = reader(lambda db: metrics.render(lambda: db, clock, limits))
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    def login_form(request: Request):
        return page(request, "login.html", next=_safe_next(request.query_params.get("next", "/")), error=None)

    async def login(request: Request):
        form = await request.form()
        name, password = str(form.get("name", ""))[:200], str(form.get("password", ""))
        target = _safe_next(str(form.get("next", "/")))
        if not _csrf_ok(request, form):
            return page(request, "login.html", 403, next=target, error="The form expired: try again.")
        address = request.client.host if request.client else "-"
        wait = limit.attempt(address, name)
        if wait:
            return page(request, "login.html", 429, next=target,
                        error=f"Too many attempts: try again in {wait:.0f} s.")
        if not check_password(admins, name, password):
            log.warning("dashboard login refused for %s from %s", for_log(name), address)
            return page(request, "login.html", 401, next=target, error="Wrong name or password.")
        limit.succeeded(address, name)
        sessions.end(request.session.get("sid"))
        request.session.clear()
        request.session.update(sid=sessions.start(name, admins[name]), csrf=secrets.token_urlsafe(24))
        log.info("dashboard login: %s from %s", for_log(name), address)
        return RedirectResponse(target, 303)

    async def logout(request: Request):
        form = await request.form()
        if not _csrf_ok(request, form):
            return PlainTextResponse("CSRF check failed", 403)
        sessions.end(request.session.get("sid"))  # every copy of the cookie stops working, not only this one
        request.session.clear()
        return RedirectResponse("/login", 303)

    routes = [Route("/", fleet_page), Route("/fleet/rows", fleet_rows), Route("/device/{device:path}", device_page),
              Route("/entries", entries_page), Route("/pushes", pushes_page), Route("/metrics", metrics_page),
              Route("/login", login_form), Route("/login", login, methods=["POST"]),
              Route("/logout", logout, methods=["POST"]),
              Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static")]
    cookie_key = (session_key or secrets.token_bytes(32)).hex()
    middleware = [Middleware(Headers), Middleware(SessionMiddleware, secret_key=cookie_key,
                             session_cookie="hub_session", max_age=SESSION_S, same_site="strict",
                             https_only=secure_cookie)]
    return Starlette(routes=routes, middleware=middleware, exception_handlers={
        Exception: lambda request, exc: _failed(request, exc)})


class Headers:
    """Every answer: no framing by another site (clickjacking), scripts and styles from here only, no referrer
    leaving with device names in it, nothing cached on the way."""

    HEADERS = [(b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; form-action 'self'; "
                                            b"base-uri 'none'"),
               (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
               (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)
        await self.app(scope, receive, with_headers)


def _failed(request: Request, exc: Exception) -> Response:
    log.error("dashboard: %s %s failed: %s", request.method, for_log(request.url.path), for_log(repr(exc)))
    return PlainTextResponse("The hub database cannot be read just now; see the dashboard's log.", 503)


def _kind(ack_kind) -> str:
    """A list is pushed as one bundle kind "list" and answered as its snapshot or delta."""
    return "list" if ack_kind in ("list-snapshot", "list-delta") else ack_kind


def _csrf(request: Request) -> str:
    """The session's CSRF token, made on first use (the login form has one before anyone logs in)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def _csrf_ok(request: Request, form) -> bool:
    """The form's token matches the session's, and a browser that says where the form came from says here."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        return False
    expected, sent = request.session.get("csrf"), form.get("csrf")
    return isinstance(expected, str) and bool(expected) and isinstance(sent, str) \
        and hmac.compare_digest(expected.encode(), sent.encode())


def _safe_next(target: str) -> str:
    """Only a path on this site: never an open redirect."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
