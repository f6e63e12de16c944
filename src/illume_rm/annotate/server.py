"""The annotation page: a small Flask app over the run's :class:`Store`.

- ``GET /`` and ``GET /page.js``: the page (static: all model text reaches it as JSON and is shown
  with ``textContent``, never as HTML; no inline script, so the CSP forbids any);
- ``POST /api/next``: ``{annotator}``: the next question for this person (handed to them: a lease),
  with progress;
- ``POST /api/judge``: ``{task, annotator, accepted: [candidate ids], none, written, suggestions_shown}``;
- ``POST /api/skip``: ``{task, annotator}``;
- ``GET /images/PATH``: an image of the run's dataset (PATH relative to the dataset's image
  folder; only images of the stored questions; ``..`` is refused).

Bound to 127.0.0.1 by default; on any other address every request needs the token printed
at start (the page sends it); without a token, only requests addressed to localhost are
answered (a page reached under another name, as by DNS rebinding, is refused). Every change of state
is a POST, which must be JSON and not cross-site (``Sec-Fetch-Site``, ``Origin``), so another web
site cannot take questions from or submit for a person through their browser. Verdicts and skips
are accepted only from the person the question was handed to, at most k per question, one each
(names compared in Unicode NFC). A malformed or refused request gets a 4xx and stores nothing.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from importlib import resources
from pathlib import Path
from urllib.parse import quote, urlsplit

from flask import Flask, Response, abort, jsonify, request, send_file

from ..errors import UserError
from .store import Refused, Store

TOKEN_HEADER = "X-Annotate-Token"
LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def image_root(paths: set[str]) -> Path | None:
    """The folder that holds every stored image (the dataset's image folder)."""
    if not paths:
        return None
    return Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths]))


def create_app(store: Store, token: str | None = None, show_suggestions: bool = True) -> Flask:
    if token is not None and not token.strip():
        raise UserError("the token is empty (as --token \"$UNSET\" gives): give a token, or none for localhost only")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    files = resources.files("illume_rm.annotate")
    page = files.joinpath("page.html").read_text(encoding="utf-8")
    script = files.joinpath("page.js").read_text(encoding="utf-8")
    known: dict = {}

    def refresh() -> None:
        """The stored questions' images (re-read when a batch added while serving brings new ones)."""
        known["images"] = {str(Path(p).resolve()) for p in store.image_paths()}
        known["root"] = image_root(known["images"])

    refresh()

    def url_of(path: str | None) -> str | None:
        if not path:
            return None
        if str(Path(path).resolve()) not in known["images"]:
            refresh()
        rel = Path(path).resolve().relative_to(known["root"]).as_posix()
        return f"/images/{quote(rel)}" + (f"?token={quote(token)}" if token else "")

    @app.before_request
    def check_origin():
        """State changes come from this page only: a browser says where a request comes from."""
        if request.method != "POST":
            return None
        site = request.headers.get("Sec-Fetch-Site")
        if site not in (None, "same-origin", "none"):
            return jsonify(error=f"cross-site requests are refused (Sec-Fetch-Site: {site})"), 403
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            return jsonify(error=f"requests from {origin} are refused"), 403
        return None

    @app.before_request
    def check_token():
        if request.path == "/page.js":
            return None  # the page's own code: no data, and a <script> tag cannot send the token
        if token is None:
            # loopback without a token: refuse a page reached under another name (DNS rebinding)
            if request.host.rsplit(":", 1)[0].strip("[]") not in LOCAL_NAMES:
                return jsonify(error=f"this server answers only as localhost, not as {request.host}"), 403
            return None
        sent = request.headers.get(TOKEN_HEADER) or request.args.get("token") or ""
        if not hmac.compare_digest(sent.encode(), token.encode()):
            return jsonify(error="this server needs the token printed when it started (?token=...)"), 403
        return None

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                   "script-src 'self'; frame-ancestors 'none'")
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(Refused)
    def refused(exc: Refused):
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(400)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    def http_error(exc):
        return jsonify(error=exc.description), exc.code

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html")

    @app.get("/page.js")
    def page_script():
        return Response(script, mimetype="text/javascript")

    @app.post("/api/next")
    def next_task():
        annotator = field(body(), "annotator", str, required=True)
        task = store.next_task(annotator, show_suggestions=show_suggestions)
        progress = [p.__dict__ | {"needed": p.needed} for p in store.progress()]
        done = sum(p["done"] for p in progress)
        needed = sum(p["needed"] for p in progress)
        if task is not None:
            task["image_url"] = url_of(task.pop("image"))
        scored = task is not None and any(c["suggestion"] is not None for c in task["candidates"])
        return jsonify(task=task, progress={"done": done, "total": needed, "batches": progress},
                       suggestions_available=scored)

    def body() -> dict:
        if not request.is_json:
            raise Refused("send JSON (Content-Type: application/json)", 415)
        try:
            data = request.get_json(silent=True)
        except RecursionError:
            raise Refused("the JSON is nested too deeply") from None
        if not isinstance(data, dict):
            raise Refused("the request body is not a JSON object")
        return data

    def field(data: dict, name: str, kind, default=None, required: bool = False):
        if name not in data:
            if required:
                raise Refused(f"'{name}' is missing")
            return default
        value = data[name]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            raise Refused(f"'{name}' has the wrong type")
        if kind is int and not -2 ** 63 <= value < 2 ** 63:
            raise Refused(f"'{name}' is out of range", 404 if name == "task" else 400)
        return value

    @app.post("/api/judge")
    def judge():
        data = body()
        accepted = field(data, "accepted", list, [])
        if not all(isinstance(a, str) for a in accepted):
            raise Refused("'accepted' must be a list of candidate ids")
        sub = store.submit(field(data, "task", int, required=True), field(data, "annotator", str, required=True),
                           accepted, none=field(data, "none", bool, False), written=field(data, "written", str, ""),
                           suggestions_shown=field(data, "suggestions_shown", bool, None))
        return jsonify(ok=True, submission=sub), 201

    @app.post("/api/skip")
    def skip():
        data = body()
        store.skip(field(data, "task", int, required=True), field(data, "annotator", str, required=True))
        return jsonify(ok=True), 201

    @app.get("/images/<path:rel>")
    def image(rel: str):
        root = known["root"]
        if root is None or "\0" in rel or ".." in Path(rel).parts or rel.startswith("/"):
            abort(404, "no such image")
        path = (root / rel).resolve()
        if str(path) not in known["images"] or not path.is_relative_to(root):
            abort(404, "no such image")
        if not path.is_file():
            abort(404, f"the image file is missing: {path}")
        return send_file(path)

    return app


def serve(store: Store, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          show_suggestions: bool = True, log=print) -> None:
    """Serve until interrupted. Any address but the loopback needs a token (generated when not given)."""
    from werkzeug.serving import make_server

    if token is not None and not token.strip():
        raise UserError("the token is empty (as --token \"$UNSET\" gives): give a token, or none for localhost only")
    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(16)
    app = create_app(store, token, show_suggestions)
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    url = f"http://{shown}:{server.server_port}/" + (f"?token={token}" if token else "")
    log(f"annotation page: {url}")
    if token:
        log(f"token (the page above carries it; send it as {TOKEN_HEADER} otherwise): {token}")
    log("stop with Ctrl+C; every submission is already saved")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
