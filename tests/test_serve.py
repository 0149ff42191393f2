"""The control page (`python -m pipeline.serve`): its JSON API, and the page itself in headless Chromium.

The browser test needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`;
.ci/run installs them). With CHINR_SERVE_RUN=<a trained workspace> it serves that run instead of a micro
one and writes the README's screenshot (docs/images/serve.png) from it.
"""
import base64
import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from conftest import ROOT, copy_of


@pytest.fixture(scope="module")
def served(request, tmp_path_factory):
    """A server over a trained run, in a thread of this process; yields its base URL and workspace."""
    from pipeline import control, serve

    work = os.environ.get("CHINR_SERVE_RUN") or copy_of(request.getfixturevalue("micro_trained"),
                                                         tmp_path_factory.mktemp("served") / "run")
    before = os.getcwd()
    os.chdir(work)
    try:
        session = serve.Session(control.Run(), steps=10)
        server = serve.server(session, port=0)     # the system picks a free port as it binds: no race
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "the control page's server did not start in 10 s"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", Path(work), session
        server.should_exit = True
        thread.join(10)
    finally:
        os.chdir(before)


def api(base, path, body=None):
    """(status, JSON) of one request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def latent(base, key) -> torch.Tensor:
    status, body = api(base, f"/api/latent/{key}")
    assert status == 200, body
    return torch.tensor(body["latent"])


def test_resample_keeps_the_prefix_and_bad_requests_are_messages(served):
    base, work, session = served
    status, info = api(base, "/api/info")
    assert status == 200 and info["layers"] == session.hcdm.layers and info["modality"] == "image"
    status, out = api(base, "/api/resample", {"source": "gen:3", "k": 2, "n": 4, "seed": 0})
    assert status == 200 and out["k"] == 2 and len(out["completions"]) == 4
    anchor = latent(base, out["anchor"]["id"])
    drawn = torch.stack([latent(base, c["id"]) for c in out["completions"]])
    assert torch.equal(drawn[:, :2], anchor[None, :2].expand(4, -1, -1))        # h^1, h^2 bit for bit
    assert (drawn[:, 2:] - anchor[None, 2:]).abs().amax() > 1e-3                # the rest drawn anew
    # ... conditioned on the anchor: the same seed from another anchor draws other h^3..h^L (a prior that
    # ignored the prefix, with h^1, h^2 written over afterwards, draws the same ones).
    status, other = api(base, "/api/resample", {"source": "gen:4", "k": 2, "n": 4, "seed": 0})
    drawn_other = torch.stack([latent(base, c["id"]) for c in other["completions"]])
    assert not torch.equal(drawn_other[:, 2:], drawn[:, 2:])
    assert all(c["image"].startswith("data:image/png;base64,") for c in out["completions"])
    # A completion's id is a source: the next resample starts from it.
    status, again = api(base, "/api/resample", {"source": "id:" + out["completions"][0]["id"], "k": 1, "n": 2, "seed": 1})
    assert status == 200 and torch.equal(latent(base, again["anchor"]["id"]), drawn[0])
    # Interpolation and composition are the latent algebra they claim.
    a, b = latent(base, out["completions"][0]["id"]), latent(base, out["completions"][1]["id"])
    status, mid = api(base, "/api/interpolate", {"a": "id:" + out["completions"][0]["id"],
                                                 "b": "id:" + out["completions"][1]["id"], "t": 0.25})
    assert status == 200 and torch.allclose(latent(base, mid["id"]), 0.75 * a + 0.25 * b, atol=1e-6)
    status, comp = api(base, "/api/compose", {"base": "id:" + out["completions"][0]["id"],
                                              "donor": "id:" + out["completions"][1]["id"], "layers": [3]})
    z = latent(base, comp["id"])
    assert torch.equal(z[:2], a[:2]) and torch.equal(z[2], b[2])
    status, near = api(base, "/api/retrieve", {"source": "train:5", "top": 3})
    assert status == 200 and near["indices"][0] == 5 and len(near["images"]) == 3   # an instance's nearest is itself
    # Bad requests: one message each, and the server keeps serving.
    bad = [({"source": "gen:0", "k": 9, "n": 2, "seed": 0}, 400, f"k 9: must be in [0, {info['layers'] - 1}]"),
           ({"source": "test:999", "k": 1, "n": 2, "seed": 0}, 400, "index out of range"),
           ({"source": "id:nope", "k": 1, "n": 2, "seed": 0}, 404, "unknown or expired"),
           ({"source": "gen:0", "k": "x", "n": 2, "seed": 0}, 400, "k 'x': must be an integer"),
           ({"source": "gen:0", "k": 1}, 400, "missing n, seed"),
           ({"source": "gen:0", "k": 1, "n": 2, "seed": 2 ** 32}, 400, "seed: the seed must be in [0, 2**32)"),
           ({"source": f"gen:{2 ** 32}", "k": 1, "n": 2, "seed": 0}, 400, "the seed must be in [0, 2**32)"),
           ({"source": "gen:0", "k": 1, "n": 2, "seed": "9" * 5000}, 400, "seed '" + "9" * 39 + "...: must be an "
                                                                                           "integer"),
           ({"source": "id:\ud800", "k": 1, "n": 2, "seed": 0}, 404, "source 'id:\\ud800': unknown")]
    for body, code, text in bad:
        status, answer = api(base, "/api/resample", body)
        assert status == code and text in answer["error"], (body, answer)
    others = [("/api/interpolate", {"a": "gen:0", "b": "gen:1", "t": 10 ** 400}, "t 1000000000000000000000000"),
              ("/api/interpolate", {"a": "gen:0", "b": "gen:1", "t": "0.5"}, "t 0.5: must be a number in [0, 1]"),
              ("/api/interpolate", {"a": "gen:0", "b": "gen:1", "t": True}, "t True: must be a number"),
              ("/api/compose", {"base": "gen:0", "donor": "gen:1", "layers": [1] * 100_000}, "at most"),
              ("/api/compose", {"base": "gen:0", "donor": "gen:1", "layers": [True]}, "layers [True]: must be"),
              ("/api/upload", {"name": "a.png", "data": "data:image/png;base64"}, "a.png: not a file (a data URL"),
              ("/api/interpolate", {"a": "gen:0", "b": 5, "t": 0.5}, "b: no source given"),
              ("/api/compose", {"base": "gen:0", "donor": ["x"], "layers": [1]}, "donor: no source given"),
              ("/api/source", {"source": "\ud800:1"}, "source '\\ud800:1': expected"),
              ("/api/upload", {"name": "\ud800.png", "data": "data:image/png;base64"}, "not a file")]
    for path, body, text in others:
        status, answer = api(base, path, body)
        assert status == 400 and text in answer["error"], (path, body, answer)
    not_image = base64.b64encode(b"hello, not a picture").decode()
    status, answer = api(base, "/api/upload", {"name": "notes.txt", "data": not_image})
    assert status == 400 and answer["error"] == ("notes.txt: this image run reads a picture (.png, .jpg), "
                                                 "centre-cropped and resized, not a .txt file")
    status, answer = api(base, "/api/upload", {"name": "notes.png", "data": not_image})
    assert status == 400 and answer["error"].startswith("notes.png: cannot read image")
    huge = base64.b64encode(bytes(9 * 2 ** 20)).decode()
    status, answer = api(base, "/api/upload", {"name": "big.png", "data": huge})
    assert status == 413 and answer["error"] == "big.png: larger than 8 MiB"
    status, answer = api(base, "/api/upload", {"name": "x.png", "data": "%%%"})
    assert status == 400 and "bad base64" in answer["error"]
    assert api(base, "/api/info")[0] == 200


def test_a_failure_of_ours_is_a_one_line_500_and_the_server_goes_on(served, monkeypatch, capsys):
    base, _, session = served

    def broken(latents):
        raise RuntimeError("boom")
    monkeypatch.setattr(session, "shown", broken)
    status, answer = api(base, "/api/source", {"source": "gen:0"})
    assert status == 500 and answer == {"error": "internal error (RuntimeError: boom)"}
    assert "Traceback" in capsys.readouterr().err                  # the console keeps the traceback
    monkeypatch.undo()
    assert api(base, "/api/source", {"source": "gen:0"})[0] == 200


def test_an_uploaded_picture_is_fitted_with_the_inner_loop(served, tmp_path):
    from PIL import Image

    base, work, session = served
    face = session.run.data.test[0]
    buf = tmp_path / "face.png"
    Image.fromarray(face).save(buf)
    status, out = api(base, "/api/upload", {"name": "face.png",
                                            "data": "data:image/png;base64," + base64.b64encode(buf.read_bytes()).decode()})
    assert status == 200 and out["original"].startswith("data:image/png")
    fitted = latent(base, out["id"])
    # The same latent the latent bank holds for that test instance (same inner loop, same steps, from zero).
    assert torch.allclose(fitted, torch.from_numpy(session.bank["test"][0]).float(), atol=1e-4)


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(not (BROWSER and DRIVER), reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)")
def test_the_page_in_a_real_browser(served, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, work, session = served
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1320"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    wait = WebDriverWait(driver, 60)
    try:
        driver.get(base)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        anchor_id = driver.find_element(By.CSS_SELECTOR, "#anchor img").get_attribute("data-id")
        # The interpolation and composition panels follow the anchor; the slider redraws.
        # An <img> has no src until its request returns: get_attribute gives None until then, and an
        # exception inside wait.until (other than a missing element) ends the wait at once.
        def src(css):
            return driver.find_element(By.CSS_SELECTOR, css).get_attribute("src") or ""

        wait.until(lambda d: src("#interp img").startswith("data:"))
        wait.until(lambda d: src("#composed img").startswith("data:"))
        before = src("#interp img")
        driver.execute_script("const t = document.getElementById('t'); t.value = '1'; "
                              "t.dispatchEvent(new Event('input'));")
        wait.until(lambda d: src("#interp img") != before)
        assert anchor_id and driver.find_element(By.ID, "info").text.startswith("image run, hierarchical prior")
        Select(driver.find_element(By.ID, "k")).select_by_value("2")
        driver.find_element(By.ID, "resample").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#completions img")) == 6)
        images = driver.find_elements(By.CSS_SELECTOR, "#completions img")
        assert all((img.get_attribute("src") or "").startswith("data:image/png;base64,") for img in images)
        # The fixed-prefix invariant, read back from the server for what the page shows.
        anchor = latent(base, anchor_id)
        for img in images:
            z = latent(base, img.get_attribute("data-id"))
            assert torch.equal(z[:2], anchor[:2]) and not torch.equal(z, anchor)
        # A click makes a completion the anchor; resampling again draws new images from it.
        chosen = images[3].get_attribute("data-id")
        images[3].click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#anchor img").get_attribute("data-id") == chosen)
        first = [img.get_attribute("src") for img in images]
        driver.find_element(By.ID, "resample").click()
        wait.until(lambda d: d.find_element(By.ID, "completions").get_attribute("data-anchor") == chosen)
        again = driver.find_elements(By.CSS_SELECTOR, "#completions img")
        assert len(again) == 6 and [img.get_attribute("src") for img in again] != first
        # A wrong upload is a message on the page, and the page keeps working.
        bad = tmp_path / "notes.txt"
        bad.write_text("not a picture")
        driver.find_element(By.ID, "upload").send_keys(str(bad))
        wait.until(lambda d: "this image run reads a picture" in d.find_element(By.ID, "message").text)
        driver.find_element(By.ID, "retrieve").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#neighbours img")) == 6)
        assert driver.find_element(By.ID, "message").text == ""
        shot = (ROOT / "docs/images/serve.png") if os.environ.get("CHINR_SERVE_RUN") else tmp_path / "serve.png"
        driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:4] == b"\x89PNG"
    finally:
        driver.quit()


# --- who may drive the page ----------------------------------------------------------------------

def call(guard, method="GET", path="/api/info", headers=(), body=b"", query=b"", chunks=None):
    """One request through an ASGI app, without a network: (status, headers, JSON body)."""
    import asyncio

    parts = list(chunks) if chunks is not None else [body]
    scope = {"type": "http", "method": method, "path": path, "query_string": query, "root_path": "",
             "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers], "http_version": "1.1"}
    sent = []

    async def receive():
        part = parts.pop(0) if parts else b""
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    async def send(message):
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict((k.decode(), v.decode()) for k, v in start["headers"]), json.loads(payload)


@pytest.fixture
def guarded():
    """The Guard around a stand-in app that echoes the body it was given."""
    from pipeline.serve import Guard

    async def echo(scope, receive, send):
        body = (await receive())["body"]
        out = json.dumps({"ok": True, "bytes": len(body)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": out})
    return lambda token=None, max_body=1000, port=8000: Guard(echo, token, max_body, port)


def test_only_loopback_host_names_reach_the_models(guarded):
    """DNS rebinding: the attacker's name resolves to 127.0.0.1, but its requests carry its own Host."""
    g = guarded()
    assert call(g, headers=[("Host", "127.0.0.1:8000")])[0] == 200
    assert call(g, headers=[("Host", "localhost:8000")])[0] == 200
    assert call(g, headers=[("Host", "[::1]:8000")])[0] == 200
    status, _, body = call(g, headers=[("Host", "evil.example:8000")])
    assert status == 403 and "loopback host name" in body["error"]
    # Names urlsplit cannot parse: refused in one line (they ended in a plain-text 500 and a traceback).
    for host in ("[", "[evil]", "[::1"):
        status, _, body = call(g, headers=[("Host", host)])
        assert status == 403 and "loopback host name" in body["error"], host


def test_another_sites_page_cannot_post_to_it(guarded):
    g = guarded()
    json_post = [("Host", "127.0.0.1:8000"), ("Content-Type", "application/json")]
    assert call(g, "POST", headers=json_post, body=b"{}")[0] == 200
    status, _, body = call(g, "POST", headers=[*json_post, ("Origin", "http://evil.example")], body=b"{}")
    assert status == 403 and "another site" in body["error"]
    assert call(g, "POST", headers=[*json_post, ("Origin", "http://127.0.0.1:8000")], body=b"{}")[0] == 200
    status, _, body = call(g, "POST", headers=[*json_post, ("Origin", "http://[")], body=b"{}")
    assert status == 403 and "another site" in body["error"]
    assert call(g, "POST", headers=[*json_post, ("Sec-Fetch-Site", "cross-site")], body=b"{}")[0] == 403
    assert call(g, "POST", headers=[*json_post, ("Sec-Fetch-Site", "same-origin")], body=b"{}")[0] == 200
    # A form or text/plain post needs no CORS preflight from another page: refused for its type.
    status, _, body = call(g, "POST", headers=[("Host", "127.0.0.1:8000"), ("Content-Type", "text/plain")],
                           body=b"{}")
    assert status == 415 and body["error"] == "requests must be application/json"


def test_a_body_over_the_limit_is_refused_before_it_is_read_whole(guarded):
    g = guarded(max_body=1000)
    json_post = [("Host", "127.0.0.1:8000"), ("Content-Type", "application/json")]
    # Declared too big: refused from the header, no chunk read.
    assert call(g, "POST", headers=[*json_post, ("Content-Length", str(512 * 2 ** 20))], chunks=[])[0] == 413
    # Not declared (chunked): refused at the chunk that crosses the limit.
    status, _, _ = call(g, "POST", headers=json_post, chunks=[b"x" * 600, b"x" * 600, b"x" * 600])
    assert status == 413
    assert call(g, "POST", headers=json_post, chunks=[b"x" * 500, b"x" * 500])[2] == {"ok": True, "bytes": 1000}


def test_off_loopback_every_request_needs_the_printed_token(guarded):
    g = guarded(token="s3cret")
    anywhere = [("Host", "box.lan:8000")]
    status, _, body = call(g, path="/", headers=anywhere)
    assert status == 403 and "token" in body["error"]
    assert call(g, path="/", headers=anywhere, query=b"token=wrong")[0] == 403
    status, headers, _ = call(g, path="/", headers=anywhere, query=b"token=s3cret")
    assert status == 200 and headers["set-cookie"].startswith("chinr_token_8000=s3cret;") and "SameSite=Strict" in \
        headers["set-cookie"]
    assert call(g, headers=[*anywhere, ("Cookie", "a=1; chinr_token_8000=s3cret")])[0] == 200
    # A browser sends one host's cookies to every port: another page's token (port 9000) opens nothing here.
    assert call(g, headers=[*anywhere, ("Cookie", "chinr_token_9000=s3cret")])[0] == 403
    other = guarded(token="0ther", port=9000)
    assert call(other, headers=[*anywhere, ("Cookie", "chinr_token_8000=s3cret; chinr_token_9000=0ther")])[0] == 200


def test_a_port_in_use_is_one_line_before_anything_loads(capsys):
    from pipeline import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert serve.main(["--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --port {port}: 127.0.0.1:{port} is in use or cannot be bound; pick another --port"


def test_deep_json_huge_pictures_and_the_size_boundary(served):
    import struct
    import zlib

    from pipeline import serve

    base, work, session = served
    req = urllib.request.Request(base + "/api/source", data=b"[" * 100_000, headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=60)
    except urllib.error.HTTPError as e:
        assert e.code == 400 and json.loads(e.read())["error"] == "the request's JSON is nested too deeply"
    else:
        raise AssertionError("deep JSON was accepted")

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 13000, 13000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    status, body = api(base, "/api/upload", {"name": "big.png", "data": base64.b64encode(png).decode()})
    assert status == 413 and body["error"].startswith("big.png: 13000 x 13000 pixels, over the 16 Mpx")
    # Exactly MAX_UPLOAD bytes passes the size check (and fails later as what it is); one more does not.
    for size, too_large in ((serve.MAX_UPLOAD, False), (serve.MAX_UPLOAD + 1, True)):
        with pytest.raises(serve.Refused) as e:
            session.upload("blob.bin", base64.b64encode(b"\0" * size).decode())
        assert ("larger than 8 MiB" in str(e.value)) == too_large


@pytest.mark.parametrize("flag", ["--steps", "--inner-steps"])
def test_a_step_count_below_one_is_one_line_before_anything_loads(capsys, flag):
    from pipeline import serve

    assert serve.main([flag, "0"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {flag} 0: must be >= 1"
