"""The message viewer: a Starlette app with server-rendered Jinja2 pages.

Pages: ``/messages`` (search), ``/messages/{id}`` (one message, its ACK and trail),
``/messages/{id}/trace`` (the session as an SVG sequence diagram), ``/messages/{id}/{action}``
(confirm, then POST: resend, suspend, discard), ``/items`` (the production's items), ``/login``.

Every view is a thin function: read the request, call one module (search, layout, trace_svg,
actions, items, control), render. Views that touch the store or the broker are plain ``def``s,
which Starlette runs in its thread pool, so blocking SQL never stalls the event loop.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from hie.errors import ConfigError, HIEError, StoreError
from hie.messages import BODY_HL7
from hie.store import Status
from hie import operator as actions
from hie.web import control, items
from hie.web.auth import (
    SESSION_SECONDS,
    AuthConfig,
    check_csrf,
    csrf_token,
    current_user,
    parse_users,
    require_operator,
)
from hie.web.layout import lay_out
from hie.web.search import PAGE_SIZES, parse_query, run_search
from hie.web.trace_svg import EXTERNAL, hops, render_svg

if TYPE_CHECKING:
    from hie.production import Production
    from hie.settings import Settings
    from hie.store import MessageStore
    from hie.operator import Sender

log = logging.getLogger("hie.web")
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
_OPEN_PATHS = ("/login", "/static/")


class ViewerState:
    """What every view needs: settings, production, store, and a dispatcher built on demand."""

    def __init__(
        self,
        settings: Settings,
        production: Production,
        store: MessageStore,
        sender: Sender | None,
    ) -> None:
        self.settings = settings
        self.production = production
        self.store = store
        self._sender = sender
        self._lock = threading.Lock()

    @property
    def sender(self) -> Sender:
        """The dispatcher that resends; the Celery app is only built when first needed."""
        with self._lock:
            if self._sender is None:
                from hie.startup import open_dispatcher

                self._sender = open_dispatcher(self.production, self.settings, self.store)
            return self._sender

    def kind_of(self, name: str) -> str:
        """``service``/``process``/``operation`` for items, ``external`` for anything else."""
        try:
            return str(self.production.host_class(name).kind)
        except (ConfigError, KeyError, HIEError):
            return "external"


def _viewer(request: Request) -> ViewerState:
    state: ViewerState = request.app.state.viewer
    return state


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    """Render a template with what every page shows (user, CSRF token, production name)."""
    viewer = _viewer(request)
    context.update(
        user=current_user(request),
        csrf=csrf_token(request),
        production=viewer.production.name,
        login_required=request.app.state.auth.login_required,
    )
    return templates.TemplateResponse(request, name, context, status_code=status_code)


# -- pages ---------------------------------------------------------------------------------------


def search_page(request: Request) -> Response:
    """The search form and one page of results."""
    viewer = _viewer(request)
    query = parse_query(request.query_params)
    page = None
    if not query.problems:
        try:
            page = run_search(viewer.store, query)
        except StoreError as exc:
            query.problems.append(str(exc))
    items_ = [i.name for i in viewer.production.items]
    return render(
        request,
        "search.html",
        query=query,
        page=page,
        items=items_,
        statuses=[s.value for s in Status],
        sizes=PAGE_SIZES,
        status_code=400 if query.problems else 200,
    )


def _header_or_404(viewer: ViewerState, message_id: str) -> Any:
    try:
        return viewer.store.header(message_id)
    except StoreError:
        raise HTTPException(404, f"message {message_id} is not in the store") from None


def message_page(request: Request) -> Response:
    """One message: header, body laid out by segment, ACK and trail."""
    viewer = _viewer(request)
    message_id = request.path_params["message_id"]
    header = _header_or_404(viewer, message_id)
    envelope = viewer.store.load(message_id)
    segments, version, parse_error = None, None, None
    if envelope.body_type == BODY_HL7 and isinstance(envelope.body, str):
        try:
            segments, version = lay_out(envelope.body)
        except HIEError as exc:
            parse_error = str(exc)
    events = viewer.store.events(message_id)
    acks = [e for e in events if e.event in ("ack_sent", "ack_received")]
    return render(
        request,
        "message.html",
        header=header,
        envelope=envelope,
        segments=segments,
        version=version,
        parse_error=parse_error,
        events=events,
        acks=acks,
        body_text=envelope.body if isinstance(envelope.body, str) else repr(envelope.body),
    )


def trace_page(request: Request) -> Response:
    """The session of a message as a sequence diagram, plus the list of its messages."""
    viewer = _viewer(request)
    message_id = request.path_params["message_id"]
    header = _header_or_404(viewer, message_id)
    headers = viewer.store.session(header.session_id)
    hop_list = hops(headers, viewer.store.events(session_id=header.session_id))
    svg = render_svg(
        hop_list,
        viewer.kind_of,
        lambda mid: f"/messages/{quote(mid)}",
        current=message_id,
    )
    return render(request, "trace.html", header=header, svg=svg, hops=hop_list, external=EXTERNAL)


def confirm_page(request: Request) -> Response:
    """The confirmation step of an action; nothing changes until it is POSTed."""
    viewer = _viewer(request)
    action = _action(request)
    header = _header_or_404(viewer, request.path_params["message_id"])
    return render(
        request,
        "confirm.html",
        header=header,
        action=action,
        targets=actions.resend_targets(viewer.production),
    )


async def action_post(request: Request) -> Response:
    """Do a confirmed action (operator only, CSRF checked), then show the message."""
    form = await check_csrf(request)
    user = require_operator(request)
    viewer = _viewer(request)
    action = _action(request)
    message_id = request.path_params["message_id"]
    await run_in_threadpool(_header_or_404, viewer, message_id)
    if action == "resend":
        try:
            copy = await run_in_threadpool(
                actions.resend,
                viewer.store,
                viewer.sender,
                viewer.production,
                message_id,
                target=form.get("target") or None,
                user=user.name,
            )
        except ConfigError as exc:
            raise HTTPException(400, str(exc)) from None
        log.info("message %s resent as %s by %s", message_id, copy.message_id, user.name)
        return RedirectResponse(f"/messages/{copy.message_id}?done=resend", status_code=303)
    try:
        await run_in_threadpool(actions.set_aside, viewer.store, message_id, action, user=user.name)
    except ConfigError as exc:
        raise HTTPException(409, str(exc)) from None
    log.info("message %s: %s by %s", message_id, action, user.name)
    return RedirectResponse(f"/messages/{message_id}?done={action}", status_code=303)


def _action(request: Request) -> str:
    action = str(request.path_params["action"])
    if action not in actions.ACTIONS:
        raise HTTPException(404, f"no action {action!r}; actions are {', '.join(actions.ACTIONS)}")
    return action


def items_page(request: Request) -> Response:
    """Every item: state, queue depth, last-hour counts and rate, last error, controls."""
    viewer = _viewer(request)
    status = control.send_command(viewer.settings, viewer.production.name, "status", timeout=2.0)
    # The manager answers a list of item snapshots, each with its name.
    running = status.data.get("items") if status.ok else None
    states = (
        {i["name"]: i for i in running if isinstance(i, dict) and "name" in i}
        if isinstance(running, list)
        else None
    )
    views = items.overview(viewer.production, viewer.store, states)
    return render(
        request,
        "items.html",
        items=views,
        manager=status,
        commands=control.COMMANDS,
        notice=request.query_params.get("notice"),
    )


async def item_command(request: Request) -> Response:
    """Ask the manager to enable / disable / restart an item (operator only, CSRF checked)."""
    await check_csrf(request)
    user = require_operator(request)
    viewer = _viewer(request)
    name, command = request.path_params["item"], request.path_params["command"]
    if command not in control.COMMANDS:
        raise HTTPException(404, f"no command {command!r}")
    try:
        viewer.production.item(name)
    except (ConfigError, KeyError):
        raise HTTPException(404, f"no item {name!r} in this production") from None
    reply = await run_in_threadpool(
        control.send_command, viewer.settings, viewer.production.name, command, name
    )
    log.info("item %s: %s by %s: %s", name, command, user.name, reply.message)
    notice = f"{command} {name}: {reply.message}"
    return RedirectResponse(f"/items?notice={quote(notice)}", status_code=303)


def login_page(request: Request) -> Response:
    """The login form."""
    return render(request, "login.html", error=None, next=request.query_params.get("next", "/"))


async def login_post(request: Request) -> Response:
    """Check the password; on success, a fresh session (new CSRF token) for the user."""
    form = await check_csrf(request)
    auth: AuthConfig = request.app.state.auth
    name = form.get("username", "")
    client = request.client.host if request.client else "?"
    target = form.get("next") or "/"
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # only local redirects: no open redirect through the login form
    if (wait := auth.throttle.wait(name, client)) > 0:
        error = f"too many failed logins: try again in {wait:.0f} s"
        return render(request, "login.html", 429, error=error, next=target)
    user = await run_in_threadpool(auth.authenticate, name, form.get("password", ""))
    if user is None:
        auth.throttle.failed(name, client)
        log.info("failed login for a user name")  # no name: it may be a mistyped password
        return render(request, "login.html", 401, error="wrong user name or password", next=target)
    auth.throttle.succeeded(name, client)
    request.session.clear()
    request.session["user"] = user.name
    request.session["sid"] = auth.sessions.open(user.name)
    log.info("login: %s", user.name)
    return RedirectResponse(target, status_code=303)


async def logout_post(request: Request) -> Response:
    """End the session."""
    await check_csrf(request)
    sid = request.session.get("sid")
    if isinstance(sid, str):
        request.app.state.auth.sessions.close(sid)  # a saved copy of the cookie stops working
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def home(request: Request) -> Response:
    """The search page is the start page."""
    return RedirectResponse("/messages", status_code=307)


async def http_error(request: Request, exc: Exception) -> Response:
    """Errors as a page that says what went wrong (never a stack trace)."""
    assert isinstance(exc, HTTPException)
    return render(request, "error.html", exc.status_code, status=exc.status_code, detail=exc.detail)


# -- middleware ----------------------------------------------------------------------------------


class LoginRequired:
    """Send anyone without a session to the login page (POSTs get 403), when login is on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if current_user(request) is None:
            if request.method in ("GET", "HEAD"):
                response: Response = RedirectResponse(
                    f"/login?next={quote(scope['path'])}", status_code=303
                )
            else:
                response = Response("login required", status_code=403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


#: Names the viewer answers to whatever it is told: loopback, where it listens by default.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class SameOrigin:
    """Refuse a state-changing request (POST) sent by a page of another origin (403).

    Browsers send ``Origin`` with every cross-origin POST; a page elsewhere that points a form
    or ``fetch`` at the viewer (directly, or through a DNS name rebound to 127.0.0.1) is refused
    here, before its CSRF token is even looked at. A POST without ``Origin`` (not from a
    browser) still needs the session's CSRF token.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = Headers(scope=scope).get("origin")
            if origin is not None and (urlsplit(origin).hostname or "") not in self.allowed:
                response = Response("cross-origin request refused", status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AccessLog:
    """One log line per request: method, path (no query string: it may hold PHI), status, time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [0]

        async def record(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            ms = (time.perf_counter() - start) * 1000
            log.info("%s %s %s %.0fms", scope["method"], scope["path"], status[0], ms)


# -- the app -------------------------------------------------------------------------------------


def create_web_app(
    settings: Settings,
    production: Production,
    *,
    store: MessageStore | None = None,
    sender: Sender | None = None,
    login_required: bool = False,
    users: str | None = None,
    secret_key: str | None = None,
    allowed_hosts: Sequence[str] = (),
    https: bool = False,
) -> Starlette:
    """The viewer as an ASGI app.

    Args:
        settings: engine settings (store URL, broker URL, home for the manager's socket).
        production: the production whose messages and items are shown.
        store: an open store; one is opened on ``settings.database_url`` when not given.
        sender: what publishes resent messages; a ``Dispatcher`` is built on first use if None.
        login_required: require a user login (``serve`` turns it on off loopback).
        users: ``user:hash:role`` entries, one per line or comma-separated (a users file).
        secret_key: signs the session cookie; a random one (sessions end on restart) if None.
        allowed_hosts: names (or addresses) the viewer is reached by, besides 127.0.0.1 and
            localhost: any other ``Host`` header gets 400 (DNS rebinding), and a POST whose
            ``Origin`` is not one of them gets 403.
        https: the viewer is served over TLS: its session cookie is marked ``Secure``.

    Raises:
        ConfigError: login is required but no users are configured, or a user entry is bad.
    """
    if store is None:
        from hie.startup import open_store

        store = open_store(settings, upgrade=False, production=production.name)
    user_map = parse_users(users or "")
    if login_required and not user_map:
        raise ConfigError(
            "the viewer needs a login when it listens beyond 127.0.0.1, and no users are "
            "configured; write a users file (`hie web --hash-password` makes a hash) or bind "
            "to 127.0.0.1"
        )
    routes = [
        Route("/", home),
        Route("/messages", search_page),
        Route("/messages/{message_id}", message_page),
        Route("/messages/{message_id}/trace", trace_page),
        Route("/messages/{message_id}/{action}", confirm_page, methods=["GET"]),
        Route("/messages/{message_id}/{action}", action_post, methods=["POST"]),
        Route("/items", items_page),
        Route("/items/{item}/{command}", item_command, methods=["POST"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout_post, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    hosts = [*LOOPBACK_HOSTS, *allowed_hosts]
    middleware = [
        Middleware(AccessLog),
        Middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False),
        Middleware(SameOrigin, allowed_hosts=hosts),
        Middleware(
            SessionMiddleware,
            secret_key=secret_key or secrets.token_urlsafe(32),
            session_cookie="hie_viewer",
            same_site="strict",
            https_only=https,
            max_age=SESSION_SECONDS,
        ),
        Middleware(LoginRequired),
    ]
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers={HTTPException: http_error}
    )
    app.state.viewer = ViewerState(settings, production, store, sender)
    app.state.auth = AuthConfig(user_map, login_required or bool(user_map))
    return app
