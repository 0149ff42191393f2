"""A local web page for hierarchical control over the trained run of this workspace.

    python -m pipeline.serve                 # then open http://127.0.0.1:8000
    python -m pipeline.serve --port 9000 --host 0.0.0.0     # to the network: prints a URL with a token

Pick a source (a generated seed, a train/test instance, a sample, or a file of
your own fitted with the meta-learned inner loop), pick k, and draw
completions that keep h^1..h^k; click a completion to make it the anchor.
Interpolate between two sources with a slider, compose layers of two sources,
and retrieve the nearest training instances. Works for every modality through
its own `to_pictures` (shapes as rendered views).

The models are loaded once at start; each request only runs them. Every
latent the page shows is kept (up to `KEPT`) under an id, so a click or a
check reads back exactly what was drawn: `GET /api/latent/<id>`.

Who may drive it (`Guard`): on a loopback address, only requests whose Host
is a loopback name (a DNS-rebinding page's Host is its own name) and whose
Origin, when sent, is one too (another site's page cannot post to it); every
POST must be `application/json` (a form or `text/plain` post from elsewhere
is refused, and a cross-site JSON post needs a CORS preflight we never
grant). On any other address it prints a URL with a random token, and only
requests carrying it (the page keeps it in a SameSite cookie) are served.
Bodies over MAX_BODY are refused before they are read whole; an uploaded
picture over MAX_UPLOAD_PIXELS is refused from its header, before decoding,
and an upload is read and decoded without holding the model lock.

Stack: Starlette (a small, well-kept ASGI toolkit: routing, JSON, error
handlers) served by uvicorn; the page is one plain HTML file with inline
script and style, so it works offline, with no CDN.
"""
from __future__ import annotations

import argparse
import base64
import hmac
import io
import itertools
import json
import secrets
import socket
import sys
import tempfile
import threading
import traceback
from urllib.parse import parse_qs, urlsplit
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from . import analysis, control, pictures
from . import io as pipeline_io
from .errors import DataError, MissingArtifact

KEPT = 4096                     # latents kept for ids the page may send back (oldest dropped first)
MAX_UPLOAD = 8 * 1024 * 1024    # bytes of an uploaded file
MAX_BODY = 2 * MAX_UPLOAD      # bytes of a request; above it, refused before it is read whole (an upload
                                # between 8 MiB and this gets the page's own message)
MAX_UPLOAD_PIXELS = 4096 * 4096  # pixels of an uploaded picture (its header is read before any decoding)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_COOKIE = "chinr_token"   # + "_<port>": a browser keeps cookies per host, not per port
MAX_COMPLETIONS = 32
MAX_CONCURRENT = 16             # connections uvicorn serves at once (beyond: 503); each POST buffers up to MAX_BODY
DECODING = threading.Semaphore(2)   # uploads read and decoded at once (each up to 16 Mpx, ~100 MB of work)
PAGE = Path(__file__).with_name("serve.html")


class Refused(ValueError):
    """A request the page can show as a message; `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Session:
    """The loaded run, the latents shown so far, and one lock: the models run one request at a time."""

    def __init__(self, run: control.Run, sampler: str = "ddim", steps: int = 50, inner_steps: int | None = None):
        self.run, self.lock = run, threading.Lock()
        self.options = SimpleNamespace(sampler=sampler, steps=steps, inner_steps=inner_steps)
        self.kept: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.ids = itertools.count()
        # The models, data and latent bank now; the sample stage's latents on the first `sample:I` asked for.
        self.modality, self.hcdm, self.bank = run.data.modality, run.hcdm, run.bank
        run.loe

    # -- latents and pictures ----------------------------------------------------
    def keep(self, latent: torch.Tensor) -> str:
        key = f"z{next(self.ids)}"
        self.kept[key] = latent.detach().clone()
        while len(self.kept) > KEPT:
            self.kept.popitem(last=False)
        return key

    def latent(self, spec: str, field: str = "source") -> torch.Tensor:
        """A SOURCE as the control CLI reads it (gen:S, train:I, test:I, sample:I), or id:<id> of a shown latent;
        `field`: the request's key, named in a refusal."""
        if not isinstance(spec, str) or not spec:
            raise Refused(f"{field}: no source given (expected gen:S, train:I, test:I, sample:I or id:ID, got "
                          f"{shorten(spec)})")
        kind, _, value = spec.partition(":")
        if kind == "id":
            if value not in self.kept:
                raise Refused(f"{field} {shorten(spec)}: unknown or expired; pick the source again", 404)
            return self.kept[value]
        if kind not in ("gen", "train", "test", "sample"):
            raise Refused(f"{field} {shorten(spec)}: expected gen:S, train:I, test:I, sample:I or id:ID")
        try:
            return control.resolve(self.run, spec, self.options).latent
        except (control.UsageError, MissingArtifact) as e:
            raise Refused(str(e)) from None

    def shown(self, latents: torch.Tensor) -> list[dict]:
        """(N, L, H) -> N {id, PNG data URL}."""
        return [{"id": self.keep(z), "image": png_url(pic)} for z, pic in zip(latents, self.run.render(latents))]

    # -- what the page asks for ----------------------------------------------------
    def info(self) -> dict:
        return {"modality": self.modality.name, "layers": self.hcdm.layers, "latent_dim": int(self.bank["train"].shape[-1]),
                "variant": self.hcdm.variant, "train": len(self.bank["train"]), "test": len(self.bank["test"]),
                "stage1": self.run.loe[0].variant, "per_layer_latents": self.run.loe[0].per_layer_latents,
                "can_fix_prefix": self.hcdm.variant != "flat" and self.run.loe[0].per_layer_latents}

    def layer_wise(self, what: str) -> None:
        try:
            control.check_layer_wise(self.run, what)
        except control.UsageError as e:
            raise Refused(str(e)) from None

    def source(self, spec: str) -> dict:
        return self.shown(self.latent(spec)[None])[0]

    def resample(self, spec: str, k, n, seed) -> dict:
        k, n, seed = integer(k, "k"), integer(n, "n"), integer(seed, "seed")
        if not 0 <= k < self.hcdm.layers:
            raise Refused(f"k {k}: must be in [0, {self.hcdm.layers - 1}]")
        if not 1 <= n <= MAX_COMPLETIONS:
            raise Refused(f"n {n}: must be in [1, {MAX_COMPLETIONS}]")
        if k > 0:
            self.layer_wise(f"resample k {k}")
        anchor = self.latent(spec)
        try:
            drawn = analysis.resample(self.hcdm, anchor, k, n, control.generator(seed, "seed"),
                                      self.options.sampler, self.options.steps)
        except ValueError as e:   # e.g. a flat prior asked for a prefix
            raise Refused(str(e)) from None
        return {"k": k, "anchor": self.shown(anchor[None])[0], "completions": self.shown(drawn)}

    def interpolate(self, a: str, b: str, t) -> dict:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
            raise Refused(f"t {str(t)[:40]}: must be a number in [0, 1]")
        za, zb = self.latent(a, "a"), self.latent(b, "b")
        return self.shown(((1 - t) * za + t * zb)[None])[0]

    def compose(self, base: str, donor: str, layers) -> dict:
        self.layer_wise("compose")
        zb, zd = self.latent(base, "base"), self.latent(donor, "donor")
        if not isinstance(layers, list) or len(layers) > self.hcdm.layers or not all(
                isinstance(l, int) and not isinstance(l, bool) and 1 <= l <= self.hcdm.layers for l in layers):
            raise Refused(f"layers {str(layers)[:80]}: must be a list of at most {self.hcdm.layers} layer numbers "
                          f"in [1, {self.hcdm.layers}]")
        out = zb.clone()
        for l in layers:
            out[l - 1] = zd[l - 1]
        return self.shown(out[None])[0]

    def retrieve(self, spec: str, top) -> dict:
        top = integer(top, "top")
        bank = torch.from_numpy(self.bank["train"]).float()
        if not 1 <= top <= min(32, len(bank)):
            raise Refused(f"top {top}: must be in [1, {min(32, len(bank))}]")
        found = analysis.retrieve(self.latent(spec), bank, top)["all"]
        m, train = self.modality, self.run.data.train
        pics = m.to_pictures(m.targets(train[found.numpy()]))
        return {"indices": found.tolist(), "images": [png_url(p) for p in pics]}

    def upload(self, name: str, data: str) -> dict:
        """A file of the user's (a data URL or base64), fitted as export_latents fits a test instance."""
        name = str(name)[:80]
        if not isinstance(data, str) or not data:
            raise Refused("no file in the upload")
        if data.startswith("data:") and "," not in data:
            raise Refused(f"{name}: not a file (a data URL without its data)")
        payload = data.split(",", 1)[1] if data.startswith("data:") else data
        size = len(payload) * 3 // 4 - min(2, len(payload) - len(payload.rstrip("=")))   # padding is no data
        if size > MAX_UPLOAD:
            raise Refused(f"{name}: larger than {MAX_UPLOAD // 2 ** 20} MiB", 413)
        try:
            raw = base64.b64decode(payload, validate=True)
        except ValueError:
            raise Refused(f"{name}: not a file (bad base64)") from None
        too_big(name, raw)
        suffix = Path(str(name)).suffix.lower()[:10]
        with DECODING, tempfile.TemporaryDirectory() as tmp:   # without the model lock, two uploads at a time
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(raw)
            try:
                signal = control.read_file(self.run, f"{self.modality.name}:{path}")
            except (DataError, control.UsageError) as e:
                raise Refused(str(e).replace(str(path), str(name))) from None
        with self.lock:                              # the models run one request at a time
            src = control.fit_file(self.run, signal, self.options)
            shown = self.shown(src.latent[None])[0]
        original = self.modality.to_pictures(self.modality.targets(src.picture[None]))[0]
        return {**shown, "original": png_url(original)}


def too_big(name: str, raw: bytes) -> None:
    """Refuse a picture whose header declares more than MAX_UPLOAD_PIXELS, before it is decoded
    (a 20 KB PNG can declare 13000 x 13000 pixels: 1.7 GB and seconds of work once decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw), formats=pipeline_io.PICTURE_FORMATS) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return   # not a picture PIL knows (a shape, a motion file): its own reader judges it
    if width * height > MAX_UPLOAD_PIXELS:
        raise Refused(f"{name}: {width} x {height} pixels, over the {MAX_UPLOAD_PIXELS // 2 ** 20} Mpx this page "
                      "accepts", 413)


def shorten(value, at: int = 40) -> str:
    """repr of a value a request sent, cut at `at` characters: an error echoes it, not 5000 digits of it."""
    text = repr(value)
    return text if len(text) <= at else text[:at] + "..."


def integer(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or isinstance(value, str) and len(value) > 40:
        raise Refused(f"{name} {shorten(value)}: must be an integer")
    try:
        return int(value)
    except ValueError:
        raise Refused(f"{name} {shorten(value)}: must be an integer") from None


def png_url(picture: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(pictures.png_bytes(picture)).decode()


def app(session: Session):
    """The ASGI app: the page, and one JSON endpoint per action. A refused request is {"error": ...}."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.responses import JSONResponse as _JSONResponse
    from starlette.routing import Route

    class JSONResponse(_JSONResponse):
        """ASCII JSON: a value the request sent back in an error may hold a lone surrogate ("\\ud800" is valid
        JSON), which UTF-8 cannot encode (Starlette's own response raised, and the page got a 500)."""

        def render(self, content) -> bytes:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")

    page = PAGE.read_text()

    async def index(request: Request):
        return HTMLResponse(page)

    def action(method, *fields, locked=True):
        async def endpoint(request: Request):
            try:
                body = await request.json() if request.method == "POST" else dict(request.path_params)
            except ValueError:
                return JSONResponse({"error": "the request is not JSON"}, status_code=400)
            except RecursionError:
                return JSONResponse({"error": "the request's JSON is nested too deeply"}, status_code=400)
            if not isinstance(body, dict):
                return JSONResponse({"error": "the request must be a JSON object"}, status_code=400)
            missing = [f for f in fields if f not in body]
            if missing:
                return JSONResponse({"error": f"missing {', '.join(missing)}"}, status_code=400)

            def work():
                if not locked:   # the method takes the lock itself, for its model work only
                    return method(*(body[f] for f in fields))
                with session.lock:
                    return method(*(body[f] for f in fields))
            try:
                return JSONResponse(await run_in_threadpool(work))
            except Refused as e:
                return JSONResponse({"error": str(e)}, status_code=e.status)
            except (ValueError, TypeError) as e:
                return JSONResponse({"error": f"bad request: {e}"}, status_code=400)
            except Exception as e:   # a defect of ours: one line for the page, the traceback for the console
                traceback.print_exc()
                return JSONResponse({"error": f"internal error ({e.__class__.__name__}: {str(e)[:200]})"},
                                    status_code=500)
        return endpoint

    def latent(key: str) -> dict:
        return {"id": key, "latent": session.latent(f"id:{key}").tolist()}

    routes = [
        Route("/", index),
        Route("/api/info", action(session.info)),
        Route("/api/latent/{key}", action(latent, "key")),
        Route("/api/source", action(session.source, "source"), methods=["POST"]),
        Route("/api/resample", action(session.resample, "source", "k", "n", "seed"), methods=["POST"]),
        Route("/api/interpolate", action(session.interpolate, "a", "b", "t"), methods=["POST"]),
        Route("/api/compose", action(session.compose, "base", "donor", "layers"), methods=["POST"]),
        Route("/api/retrieve", action(session.retrieve, "source", "top"), methods=["POST"]),
        Route("/api/upload", action(session.upload, "name", "data", locked=False), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def hostname(netloc: str) -> str:
    """`127.0.0.1:8000` -> `127.0.0.1`; `[::1]:8000` -> `::1`; a name urlsplit cannot parse (`[`, `[evil]`) -> ""
    (no host: not a loopback one)."""
    try:
        return (urlsplit("//" + netloc).hostname or "").lower()
    except ValueError:
        return ""


def origin_host(origin: str) -> str:
    """An Origin header's host name; "" for one that does not parse."""
    try:
        return hostname(urlsplit(origin).netloc)
    except ValueError:
        return ""


class Guard:
    """ASGI middleware: who may drive the models (the module docstring says why each check)."""

    def __init__(self, app, token: str | None = None, max_body: int = MAX_BODY, port: int = 8000):
        self.app, self.token, self.max_body = app, token, max_body
        self.cookie = f"{TOKEN_COOKIE}_{port}"   # two pages on two ports keep their own tokens

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        cookie = headers.get("cookie", "")
        cookies = dict(part.strip().split("=", 1) for part in cookie.split(";") if "=" in part)
        set_cookie = None
        if self.token is None:
            if hostname(headers.get("host", "")) not in LOOPBACK:
                return await refuse(send, 403, "this page answers only to a loopback host name (127.0.0.1, "
                                               "localhost); start it with --host to serve others")
            origin = headers.get("origin")
            cross = headers.get("sec-fetch-site") == "cross-site"   # browsers say where a request comes from
            if cross or (origin is not None and origin_host(origin) not in LOOPBACK):
                return await refuse(send, 403, "a request from another site's page is refused")
        else:
            given = query.get("token", [cookies.get(self.cookie, "")])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return await refuse(send, 403, "open the page with the URL and token that `python -m "
                                               "pipeline.serve` printed")
            if "token" in query:
                set_cookie = f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        if scope["method"] == "POST":
            if headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return await refuse(send, 415, "requests must be application/json")
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body:
                return await refuse(send, 413, f"the request is over {self.max_body // 2 ** 20} MiB")
            chunks, size = [], 0
            while True:   # read the body ourselves, to stop at max_body whatever the headers said
                message = await receive()
                if message["type"] != "http.request":
                    return
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > self.max_body:
                    return await refuse(send, 413, f"the request is over {self.max_body // 2 ** 20} MiB")
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)

            async def replay():
                return {"type": "http.request", "body": body, "more_body": False}
            receive = replay

        async def with_cookie(message):
            if set_cookie and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", set_cookie.encode())]}
            await send(message)
        await self.app(scope, receive, with_cookie)


async def refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def server(session: Session, host: str = "127.0.0.1", port: int = 8000, token: str | None = None):
    """A uvicorn server for the app (`.run()` blocks; tests run it in a thread and set `.should_exit`).
    `token`: required of every request (None: loopback only, see `Guard`)."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(Guard(app(session), token, port=port), host=host, port=port,
                                         log_level="warning", limit_concurrency=MAX_CONCURRENT))


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--sampler", choices=("ddim", "ddpm"), default=None,
                   help="the HCDM's sampler (default: params.yaml's sample.sampler, as the stages and control sample)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps per draw (default: params.yaml's sample.ddim_steps)")
    p.add_argument("--inner-steps", type=int, default=None, help="inner steps to fit an uploaded file")
    a = p.parse_args(argv)
    below = control.first_below_one(a, ("steps", "inner_steps"))
    if below:
        print(f"error: {below}", file=sys.stderr)
        return 2
    if not 0 < a.port < 65536:
        print(f"error: --port {a.port}: must be in [1, 65535]", file=sys.stderr)
        return 2
    if not port_free(a.host, a.port):
        print(f"error: --port {a.port}: {a.host}:{a.port} is in use or cannot be bound; pick another --port",
              file=sys.stderr)
        return 2
    try:
        run = control.Run()
        _ = run.loe, run.hcdm   # loaded first: a missing model says what to run before params.yaml is read
        session = Session(run, *control.sampling(a), a.inner_steps)
        control.say_drift(run)      # at start, not at the first upload
    except (MissingArtifact, DataError, ValueError) as e:   # ValueError: a bad params.yaml (ConfigError)
        print(f"error: {e}", file=sys.stderr)
        return 2
    token = None if a.host in LOOPBACK else secrets.token_urlsafe(18)
    if token is None:
        print(f"serving the {session.modality.name} run of this workspace on http://{a.host}:{a.port} (Ctrl-C stops)")
    else:
        print(f"warning: serving to the network on {a.host}:{a.port}: anyone with this URL can drive the models "
              "of this workspace", file=sys.stderr)
        print(f"serving the {session.modality.name} run on http://<this machine>:{a.port}/?token={token} (Ctrl-C stops)")
    try:
        server(session, a.host, a.port, token).run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
