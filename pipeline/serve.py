"""A local web page for hierarchical control over the trained run of this workspace.

    python -m pipeline.serve                 # then open http://127.0.0.1:8000
    python -m pipeline.serve --port 9000 --host 0.0.0.0

Pick a source (a generated seed, a train/test instance, a sample, or a file of
your own fitted with the meta-learned inner loop), pick k, and draw
completions that keep h^1..h^k; click a completion to make it the anchor.
Interpolate between two sources with a slider, compose layers of two sources,
and retrieve the nearest training instances. Works for every modality through
its own `to_pictures` (shapes as rendered views).

The models are loaded once at start; each request only runs them. Every
latent the page shows is kept (up to `KEPT`) under an id, so a click or a
check reads back exactly what was drawn: `GET /api/latent/<id>`.

Stack: Starlette (a small, well-kept ASGI toolkit: routing, JSON, error
handlers) served by uvicorn; the page is one plain HTML file with inline
script and style, so it works offline, with no CDN.
"""
from __future__ import annotations

import argparse
import base64
import itertools
import sys
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from . import analysis, control, pictures
from .errors import DataError, MissingArtifact

KEPT = 4096                     # latents kept for ids the page may send back (oldest dropped first)
MAX_UPLOAD = 8 * 1024 * 1024    # bytes of an uploaded file
MAX_COMPLETIONS = 32
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
        # Load everything now, so no request reads a file.
        self.modality, self.hcdm, self.bank = run.data.modality, run.hcdm, run.bank
        run.loe

    # -- latents and pictures ----------------------------------------------------
    def keep(self, latent: torch.Tensor) -> str:
        key = f"z{next(self.ids)}"
        self.kept[key] = latent.detach().clone()
        while len(self.kept) > KEPT:
            self.kept.popitem(last=False)
        return key

    def latent(self, spec: str) -> torch.Tensor:
        """A SOURCE as the control CLI reads it (gen:S, train:I, test:I, sample:I), or id:<id> of a shown latent."""
        if not isinstance(spec, str) or not spec:
            raise Refused("no source given")
        kind, _, value = spec.partition(":")
        if kind == "id":
            if value not in self.kept:
                raise Refused(f"{spec}: unknown or expired; pick the source again", 404)
            return self.kept[value]
        if kind not in ("gen", "train", "test", "sample"):
            raise Refused(f"source {spec!r}: expected gen:S, train:I, test:I, sample:I or id:ID")
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
                "can_fix_prefix": self.hcdm.variant != "flat"}

    def source(self, spec: str) -> dict:
        return self.shown(self.latent(spec)[None])[0]

    def resample(self, spec: str, k, n, seed) -> dict:
        k, n, seed = integer(k, "k"), integer(n, "n"), integer(seed, "seed")
        if not 0 <= k < self.hcdm.layers:
            raise Refused(f"k {k}: must be in [0, {self.hcdm.layers - 1}]")
        if not 1 <= n <= MAX_COMPLETIONS:
            raise Refused(f"n {n}: must be in [1, {MAX_COMPLETIONS}]")
        anchor = self.latent(spec)
        try:
            drawn = analysis.resample(self.hcdm, anchor, k, n, torch.Generator().manual_seed(seed),
                                      self.options.sampler, self.options.steps)
        except ValueError as e:   # e.g. a flat prior asked for a prefix
            raise Refused(str(e)) from None
        return {"k": k, "anchor": self.shown(anchor[None])[0], "completions": self.shown(drawn)}

    def interpolate(self, a: str, b: str, t) -> dict:
        t = float(t)
        if not 0.0 <= t <= 1.0:
            raise Refused(f"t {t}: must be in [0, 1]")
        za, zb = self.latent(a), self.latent(b)
        return self.shown(((1 - t) * za + t * zb)[None])[0]

    def compose(self, base: str, donor: str, layers) -> dict:
        zb, zd = self.latent(base), self.latent(donor)
        if not isinstance(layers, list) or not all(isinstance(l, int) and 1 <= l <= self.hcdm.layers for l in layers):
            raise Refused(f"layers {layers!r}: must be a list of layer numbers in [1, {self.hcdm.layers}]")
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
        """A file of the user's (a data URL or base64), fitted with the inner loop."""
        if not isinstance(data, str) or not data:
            raise Refused("no file in the upload")
        payload = data.split(",", 1)[1] if data.startswith("data:") else data
        if len(payload) * 3 // 4 > MAX_UPLOAD:
            raise Refused(f"{name}: larger than {MAX_UPLOAD // 2 ** 20} MiB", 413)
        try:
            raw = base64.b64decode(payload, validate=True)
        except ValueError:
            raise Refused(f"{name}: not a file (bad base64)") from None
        suffix = Path(str(name)).suffix.lower()[:10]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(raw)
            try:
                src = control.resolve(self.run, f"{self.modality.name}:{path}", self.options)
            except (DataError, control.UsageError) as e:
                raise Refused(str(e).replace(str(path), str(name))) from None
        shown = self.shown(src.latent[None])[0]
        original = self.modality.to_pictures(self.modality.targets(src.picture[None]))[0]
        return {**shown, "original": png_url(original)}


def integer(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Refused(f"{name} {value!r}: must be an integer")
    try:
        return int(value)
    except ValueError:
        raise Refused(f"{name} {value!r}: must be an integer") from None


def png_url(picture: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(pictures.png_bytes(picture)).decode()


def app(session: Session):
    """The ASGI app: the page, and one JSON endpoint per action. A refused request is {"error": ...}."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    page = PAGE.read_text()

    async def index(request: Request):
        return HTMLResponse(page)

    def action(method, *fields):
        async def endpoint(request: Request):
            try:
                body = await request.json() if request.method == "POST" else dict(request.path_params)
            except ValueError:
                return JSONResponse({"error": "the request is not JSON"}, status_code=400)
            if not isinstance(body, dict):
                return JSONResponse({"error": "the request must be a JSON object"}, status_code=400)
            missing = [f for f in fields if f not in body]
            if missing:
                return JSONResponse({"error": f"missing {', '.join(missing)}"}, status_code=400)

            def work():
                with session.lock:
                    return method(*(body[f] for f in fields))
            try:
                return JSONResponse(await run_in_threadpool(work))
            except Refused as e:
                return JSONResponse({"error": str(e)}, status_code=e.status)
            except (ValueError, TypeError) as e:
                return JSONResponse({"error": f"bad request: {e}"}, status_code=400)
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
        Route("/api/upload", action(session.upload, "name", "data"), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def server(session: Session, host: str = "127.0.0.1", port: int = 8000):
    """A uvicorn server for the app (`.run()` blocks; tests run it in a thread and set `.should_exit`)."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app(session), host=host, port=port, log_level="warning"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--sampler", choices=("ddim", "ddpm"), default="ddim")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps per draw (default: %(default)s)")
    p.add_argument("--inner-steps", type=int, default=None, help="inner steps to fit an uploaded file")
    a = p.parse_args(argv)
    try:
        session = Session(control.Run(), a.sampler, a.steps, a.inner_steps)
    except (MissingArtifact, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"serving the {session.modality.name} run of this workspace on http://{a.host}:{a.port} (Ctrl-C stops)")
    try:
        server(session, a.host, a.port).run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
