"""The kiosk screen (/kiosk): public and display only. It shows the current decision and never the code.

Its live stream (/events) carries only what the screen shows (the decision, its words, the label), already
in the screen's language, so nothing else about a scan leaves the device through this public page.
"""
from __future__ import annotations

import json
from datetime import tzinfo
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from edge.ui import i18n
from edge.ui.auth import is_loopback
from edge.ui.context import UIContext
from edge.ui.events import (
    MONO_TO_WALL_NS,
    TooManySubscribers,
    full_response,
    sse,
    stream,
)

TEMPLATES = Path(__file__).parent / "templates"
SYMBOLS = {"allow": "✓", "deny": "✗", "review": "?"}
LABEL_MAX = 200  # a list's label is shown, not a novel
# The page loads nothing but its own files; no script runs from the markup.
KIOSK_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}

templates = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(("html",)),
                        trim_blocks=True, lstrip_blocks=True)


def language(request: Request, context: UIContext) -> str:
    """?lang=en shows another installed language; otherwise the configured one."""
    wanted = request.query_params.get("lang", "")
    return wanted if wanted in i18n.languages() else context.settings.language


def kiosk_view(event: dict[str, Any], words: dict[str, Any], tz: tzinfo, *, private: bool = True) -> dict[str, Any]:
    """What the kiosk shows of one scan: never the code; with private=False (a screen not on this device) not
    the label (a person's name) nor the commit time either."""
    decision = str(event.get("decision"))
    if decision not in SYMBOLS:
        decision = "review"
    label = event.get("label")
    return {
        "seq": event.get("seq"), "decision": decision, "symbol": SYMBOLS[decision],
        "word": i18n.decision_word(words, decision),
        "label": label[:LABEL_MAX] if isinstance(label, str) and private else "",
        "reason": i18n.reason_text(words, event, tz),
        "committed_unix_ns": event.get("committed_ns", 0) + MONO_TO_WALL_NS if private else 0,
    }


def health_marks(status: dict[str, Any]) -> dict[str, Any]:
    """The idle screen's three small marks: the source delivers, the lists are fresh, the hub answers."""
    source = status.get("source") or {}
    sync = status.get("sync") or {}
    connection = sync.get("connection")
    return {
        "source": "ok" if source.get("state") in ("ok", "finished", "starting") else "bad",
        "lists": "bad" if status.get("stale_lists") or status.get("missing_lists") else "ok",
        "hub": "off" if not sync.get("enabled") else ("ok" if connection == "online" else "bad"),
    }


def routes(context: UIContext) -> list[Route]:
    tz = i18n.zone(context.timezone)

    async def home(request: Request) -> Response:
        return RedirectResponse("/kiosk", status_code=303)

    async def kiosk(request: Request) -> Response:
        lang = language(request, context)
        words = i18n.catalogue(lang, "kiosk")
        others = [i18n.catalogue(other, "kiosk")["prompt"] for other in i18n.languages() if other != lang]
        html = templates.get_template("kiosk.html").render(
            words=words, lang=lang, others=others, site_name=context.settings.site_name or words.get("title", ""),
            display_ms=int(context.settings.display_s * 1000), tz=context.timezone,
            events_url=f"/events?lang={lang}")
        return HTMLResponse(html, headers=KIOSK_HEADERS)

    async def events(request: Request) -> Response:
        words = i18n.catalogue(language(request, context), "kiosk")

        # The stream is public: names go only to the device's own screen (a loopback client).
        local = is_loopback(request.client.host if request.client else "")

        def render(event: dict[str, Any]) -> bytes:
            return sse("scan", json.dumps(kiosk_view(event, words, tz, private=local), ensure_ascii=False),
                       event.get("seq"))

        try:
            subscriber = context.events.subscribe(local=local)
        except TooManySubscribers:
            return full_response()
        return StreamingResponse(stream(subscriber, render), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def health(request: Request) -> Response:
        status = context.status()
        return JSONResponse({"state": status.get("state", "starting"), "marks": health_marks(status),
                             "problems": len(status.get("problems") or []), "events": context.events.stats()},
                            headers={"Cache-Control": "no-store"})

    return [Route("/", home), Route("/kiosk", kiosk), Route("/events", events), Route("/health", health)]
