"""The control page's memory under hostile requests: one server process, its peak RSS after each.

    python benchmarks/serve_memory.py            # in a workspace after `dvc repro`
    -> benchmarks/results/cpu/serve_memory.json

Starts `python -m pipeline.serve` on a free port, lets it load the models, then sends, one after the
other: a 100 MB body without a Content-Length (chunked), a body declaring 512 MiB, 100,000 nested `[`,
a 20-byte-IDAT PNG declaring 13000 x 13000 pixels, a JSON body of exactly the 16 MiB limit. Each reply's
status and the server's VmHWM (peak resident memory, from /proc) after it; the bound the server keeps is
the last peak minus the peak after loading the models.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks/results/cpu/serve_memory.json"


def peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, path: str, body=None, headers=None, chunked=None) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json", **(headers or {})}
    try:
        if chunked is not None:
            c.putrequest("POST", path, skip_host=True)
            for k, v in {**headers, "Transfer-Encoding": "chunked"}.items():
                c.putheader(k, v)
            c.endheaders()
            for part in chunked:
                c.send(b"%x\r\n" % len(part) + part + b"\r\n")
            c.send(b"0\r\n\r\n")
        else:
            c.request("POST" if body is not None else "GET", path, body=body, headers=headers)
        return c.getresponse().status
    except (ConnectionError, BrokenPipeError):
        return -1   # the server closed the connection mid-body: refused without reading it
    finally:
        c.close()


def png_header(w: int, h: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT, help="the JSON to write (default: %(default)s)")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from pipeline import io

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pipeline.serve", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if request(port, "/api/info") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            print("error: the server did not answer /api/info within 300 s", file=sys.stderr)
            return 1
        rows = [{"request": "GET /api/info (models loaded)", "status": 200, "peak_mib": peak_mib(server.pid)}]
        mib = b"x" * 2 ** 20
        cases = [
            ("POST 100 MB chunked body", "/api/source", dict(chunked=[mib] * 100)),
            ("POST declaring 512 MiB", "/api/source", dict(body=b"{}", headers={"Content-Length": str(512 * 2 ** 20)})),
            ("POST 100,000 nested [", "/api/source", dict(body=b"[" * 100_000)),
            ("POST PNG declaring 13000 x 13000", "/api/upload", dict(body=json.dumps(
                {"name": "big.png", "data": base64.b64encode(png_header(13000, 13000)).decode()}).encode())),
            ("POST a 16 MiB JSON string", "/api/source", dict(body=b'"' + b"x" * (16 * 2 ** 20 - 2) + b'"')),
        ]
        for name, path, kw in cases:
            status = request(port, path, **kw)
            rows.append({"request": name, "status": status, "peak_mib": peak_mib(server.pid)})
            print(f"{name:40s} {status:4d}  peak {rows[-1]['peak_mib']:8.1f} MiB", flush=True)
        alive = request(port, "/api/info") == 200
        out = {"rows": rows, "still_serving": alive,
               "peak_growth_mib": round(rows[-1]["peak_mib"] - rows[0]["peak_mib"], 1)}
        io.save_text(a.out, json.dumps(out, indent=2) + "\n")
        print(f"peak growth over the loaded server: {out['peak_growth_mib']} MiB; still serving: {alive}")
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
