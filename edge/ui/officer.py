"""The officer page (/officer): login, the live list of scans, review answers, manual entry, device health.

Mounted by edge/ui/server.py: routes(context) and middleware(context). Everything it does to the appliance goes
through the UIContext (submit, review); it reads only context.recent and context.status.

Security: the session is a signed cookie (Starlette's SessionMiddleware, itsdangerous) under a per-device key
beside the database; every POST carries the session's CSRF token (a hidden field, compared in constant time);
logins are limited per client address and per name (auth.LoginLimit). Pages carry a strict Content-Security-
Policy: no inline script, nothing from elsewhere.

Audit: review answers and manual entries are entries (source "review" / "manual", with the officer's name) and
reach the hub like any scan. Logins, refused logins, logouts and refused forms are not decisions about a person
at the gate, so they are not entries (entries drive the gate, the repeat rule and the scan counts); they are
audit lines in the log (checkpoint.audit) and the last of them are in audit(context).recent(), which the daemon
puts in its status, retained at the broker and stored by the hub per device.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import unicodedata
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from edge.common.textsafe import for_log
from edge.ui import i18n, panels
from edge.ui.auth import (
    Audit,
    LoginLimit,
    Refusals,
    Sessions,
    check_password,
    csrf_ok,
    is_loopback,
    new_csrf_token,
    officer_hashes,
    session_secret,
)
from edge.ui.context import ActionRefused, UIContext
from edge.ui.events import TooManySubscribers, full_response, sse, stream

log = logging.getLogger("checkpoint.ui")

HERE = Path(__file__).parent
RECENT = 200               # scans the page lists (and keeps, as live ones arrive)
MAX_CODE = 4096            # characters of a code typed by hand
MAX_FIELD = 1024           # any other form field
SESSION_COOKIE = "checkpoint_officer"
SESSION_MAX_AGE_S = 12 * 3600
DECISIONS = ("allow", "deny", "review")
HEADERS = {"Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                                      "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
           "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
           "Referrer-Policy": "no-referrer"}

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


@dataclass
class _Officer:
    """What the page keeps for one UIContext: the officers' hashes, the login limit, the audit."""
    context: UIContext
    hashes: dict[str, str]
    limit: LoginLimit = field(default_factory=LoginLimit)
    audit: Audit = field(default_factory=Audit)
    refusals: Refusals = field(default_factory=Refusals)
    sessions: Sessions = field(default_factory=lambda: Sessions(SESSION_MAX_AGE_S))
    secret: bytes = b""
    # One argon2 check at a time (64 MiB, 4 lanes each): a flood of logins cannot take the scanner's memory
    # and CPU; a login arriving while one is checked is told to try again. Made on the server's loop.
    checking: asyncio.Semaphore | None = None


_pages: dict[int, _Officer] = {}


def _page(context: UIContext) -> _Officer:
    page = _pages.get(id(context))
    if page is None or page.context is not context:
        folder = getattr(context, "data_dir", None)
        while len(_pages) >= 8:  # contexts of servers stopped by reloads
            _pages.pop(next(iter(_pages)))
        page = _pages[id(context)] = _Officer(context, officer_hashes(context.settings),
                                              secret=session_secret(Path(folder) if folder else None))
        if not page.hashes:
            log.warning("officer page: no officer can log in ([ui] officers lists none with a readable hash)")
    return page


def audit(context: UIContext) -> Audit:
    """The officers' actions on this context's page, for the daemon's status."""
    return _page(context).audit


def middleware(context: UIContext) -> list[Middleware]:
    page = _page(context)
    return [Middleware(SessionMiddleware, secret_key=page.secret.hex(), session_cookie=SESSION_COOKIE,
                       max_age=SESSION_MAX_AGE_S, same_site="strict",
                       https_only=bool(context.settings.tls_cert_file))]


def routes(context: UIContext) -> list[Route]:
    page = _page(context)
    return [
        Route("/officer", partial(_show, page), methods=["GET"]),
        Route("/officer/login", partial(_login, page), methods=["POST"]),
        Route("/officer/logout", partial(_logout, page), methods=["POST"]),
        Route("/officer/review", partial(_review, page), methods=["POST"]),
        Route("/officer/manual", partial(_manual, page), methods=["POST"]),
        Route("/officer/events", partial(_events, page), methods=["GET"]),
        Route("/officer/officer.js", partial(_asset, "officer.js"), methods=["GET"]),
        Route("/officer/officer.css", partial(_asset, "officer.css"), methods=["GET"]),
    ]


async def _asset(name: str, request: Request) -> Response:
    return FileResponse(HERE / "static" / name, headers={"Cache-Control": "no-cache"})


# ---- words ---------------------------------------------------------------------------------------
def _words(page: _Officer, request: Request) -> panels.Words:
    language = request.session.get("lang") or page.context.settings.language
    return i18n.catalogue(language, "officer")


def _render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**values), status_code=status, headers=HEADERS)


# ---- handlers ------------------------------------------------------------------------------------
def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _officer(page: _Officer, request: Request) -> str | None:
    """The officer logged in on this request's session (server-side table: revocable, absolute expiry)."""
    return page.sessions.officer(request.session.get("sid"), page.hashes)


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = new_csrf_token()
    return token


async def _show(page: _Officer, request: Request) -> Response:
    lang = request.query_params.get("lang")
    if lang in i18n.languages():
        request.session["lang"] = lang
    words = _words(page, request)
    flash = request.session.pop("flash", None)
    common = {"w": words, "csrf": _csrf(request), "flash": flash, "lang": words.get("html_lang", "en"),
              "device": page.context.device_id, "languages": i18n.languages()}
    officer = _officer(page, request)
    if officer is None:
        return _render("officer_login.html", **common)
    now = time.time_ns() // 1_000_000
    events = panels.with_repeats(await asyncio.to_thread(page.context.recent, RECENT))
    answers = panels.answers(events)
    rows = [panels.row(page.context, words, e, answers, now) for e in events]
    try:
        status = await asyncio.to_thread(page.context.status)
    except Exception as exc:  # a status that cannot be read leaves the panel empty, not the page
        log.warning("officer page: device status unreadable: %s", exc)
        status = {}
    reasons = sorted({r["reason"] for r in rows} | set(words.get("reason") or {}) - {"expired_since",
                     "not-yet-valid_from", "repeated_at"})
    return _render("officer.html", **common, officer=officer, rows=rows, now_ms=now,
                   health=panels.health(words, status if isinstance(status, dict) else {},
                                        i18n.zone(page.context.timezone)),
                   decisions=[(d, i18n.decision_word(words, d)) for d in DECISIONS],
                   reasons=[(r, (words.get("reason") or {}).get(r, r)) for r in reasons])


async def _form(request: Request) -> dict[str, str]:
    try:
        form = await request.form(max_files=0, max_fields=10, max_part_size=64 * 1024)
    except Exception:  # malformed body: treated as an empty form (which fails the CSRF check)
        return {}
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _back(request: Request, message: str | None = None, level: str = "info") -> Response:
    if message:
        request.session["flash"] = {"text": message, "level": level}
    return RedirectResponse("/officer", status_code=303, headers=HEADERS)


async def _checked(page: _Officer, request: Request, *,
                   logged_in: bool = True) -> tuple[dict[str, str], Response | None]:
    """The form when its CSRF token is the session's (and an officer is logged in); else a 403 response."""
    form = await _form(request)
    officer = _officer(page, request)
    if not csrf_ok(request.session, form.get("csrf")) or (logged_in and officer is None):
        if officer is None:  # anyone: a counter, so outsiders cannot flush the officers' records
            page.refusals.count("forged-or-stale-form", request.url.path, _client(request))
        else:
            page.audit.record("forged-or-stale-form", officer, _client(request), refused=True,
                              path=request.url.path)
        words = _words(page, request)
        return {}, _render("officer_refused.html", 403, w=words, lang=words.get("html_lang", "en"),
                             message=words.get("forbidden"))
    return form, None


async def _login(page: _Officer, request: Request) -> Response:
    form, refused = await _checked(page, request, logged_in=False)
    if refused:
        return refused
    words = _words(page, request)
    name = form.get("name", "")[:MAX_FIELD].strip()
    address = _client(request)
    wait = page.limit.attempt(address, name)  # counted now, before the check: parallel guesses are limited too
    if wait > 0:
        page.refusals.count("login-limited", request.url.path, address)
        return _back(request, panels.say(words, "login_limited", minutes=max(1, round(wait / 60))), "bad")
    if page.checking is None:
        page.checking = asyncio.Semaphore(1)
    if page.checking.locked():
        page.limit.succeeded(address, name)  # not checked: not counted
        page.refusals.count("login-busy", request.url.path, address)
        return _back(request, words.get("login_busy"), "bad")
    async with page.checking:
        ok = await asyncio.to_thread(check_password, page.hashes, name, form.get("password", ""))
    if not ok:
        page.audit.record("login-refused", name, address, refused=True)
        return _back(request, words.get("login_refused"), "bad")
    page.limit.succeeded(address, name)
    page.sessions.end(request.session.get("sid"))
    lang = request.session.get("lang")
    request.session.clear()  # nothing from before the login carries over, a new token included
    request.session.update({"sid": page.sessions.start(name, page.hashes[name]), "csrf": new_csrf_token(),
                            **({"lang": lang} if lang else {})})
    page.audit.record("login", name, address)
    return _back(request)


async def _logout(page: _Officer, request: Request) -> Response:
    form, refused = await _checked(page, request)
    if refused:
        return refused
    page.audit.record("logout", _officer(page, request) or "?", _client(request))
    page.sessions.end(request.session.get("sid"))  # a copy of the cookie is refused from now on
    lang = request.session.get("lang")
    request.session.clear()
    if lang:
        request.session["lang"] = lang
    return _back(request)


def _refused(words: panels.Words, exc: Exception) -> str:
    """Why the daemon refused an action, in the page's words."""
    if isinstance(exc, ActionRefused):
        text = (words.get("refused") or {}).get(exc.reason)
        if text:
            return str(text)
    return panels.say(words, "failed", why=str(exc)[:200])


async def _review(page: _Officer, request: Request) -> Response:
    form, refused = await _checked(page, request)
    if refused:
        return refused
    words, officer = _words(page, request), _officer(page, request) or "?"
    entry_id, answer = form.get("id", "")[:MAX_FIELD], form.get("answer", "")[:MAX_FIELD]
    try:  # the daemon checks the entry (a review, unanswered, not expired) on the pipeline's thread
        event = await asyncio.to_thread(page.context.review, entry_id, answer, officer)
    except Exception as exc:  # whatever the daemon says, the officer sees it; the page goes on
        log.log(logging.INFO if isinstance(exc, ActionRefused) else logging.ERROR,
                "officer %s: review answer for %s not recorded: %s", for_log(officer), for_log(entry_id), exc)
        page.audit.record("review-refused", officer, _client(request), refused=True, ref_id=entry_id,
                          why=str(exc))
        return _back(request, _refused(words, exc), "bad")
    page.audit.record("review", officer, _client(request), answer=answer, ref_id=entry_id,
                      entry_id=(event or {}).get("id"))
    return _back(request, panels.say(words, "review_done", decision=i18n.decision_word(words, answer)), "ok")


def _typed_code(text: str) -> str | None:
    code = text.strip()
    if not code or len(code) > MAX_CODE or any(unicodedata.category(c) in ("Cc", "Cs") for c in code):
        return None
    return code


async def _manual(page: _Officer, request: Request) -> Response:
    form, refused = await _checked(page, request)
    if refused:
        return refused
    words, officer = _words(page, request), _officer(page, request) or "?"
    raw = form.get("code", "")
    if not raw.strip():
        return _back(request, words.get("manual_empty"), "bad")
    code = _typed_code(raw)
    if code is None:
        return _back(request, words.get("manual_bad"), "bad")
    try:
        event = await asyncio.to_thread(page.context.submit, code, officer)
    except Exception as exc:
        log.log(logging.INFO if isinstance(exc, ActionRefused) else logging.ERROR,
                "officer %s: manual entry not recorded: %s", for_log(officer), exc)
        return _back(request, _refused(words, exc), "bad")
    page.audit.record("manual", officer, _client(request), entry_id=(event or {}).get("id"))
    tz = i18n.zone(page.context.timezone)
    decision = str(event.get("decision"))
    return _back(request, panels.say(words, "manual_done", decision=i18n.decision_word(words, decision),
                                     reason=i18n.reason_text(words, event, tz)),
                 "ok" if decision == "allow" else "bad")


async def _events(page: _Officer, request: Request) -> Response:
    if _officer(page, request) is None:
        return Response(status_code=403, headers=HEADERS)
    words = _words(page, request)
    template = _env.get_template("officer_row.html")

    def render(event: dict[str, Any]) -> bytes | None:
        if not isinstance(event, dict) or "decision" not in event:
            return None
        now = time.time_ns() // 1_000_000
        row = panels.row(page.context, words, event, {}, now)
        body = {"id": row["id"], "ref_id": row["ref_id"], "html": template.render(r=row, w=words, csrf=csrf)}
        if row["ref_id"] and event.get("source") == "review":
            body["answer"] = panels.say(words, "answered", decision=row["decision_word"], officer=row["officer"] or "?")
        return sse("scan", json.dumps(body, ensure_ascii=False), event.get("seq"))

    csrf = _csrf(request)
    try:
        subscriber = page.context.events.subscribe(local=is_loopback(_client(request)))
    except TooManySubscribers:
        return full_response()
    return StreamingResponse(stream(subscriber, render), media_type="text/event-stream",
                             headers={**HEADERS, "X-Accel-Buffering": "no"})
