"""Fuzzing the two ways bad input comes in: params.yaml and data files.

Every mutation must end one of two ways: accepted as a valid config / read as
a valid signal, or refused with the project's own error whose one line names
the key / the file. Never another exception, never a traceback.
"""
import copy
import math
import random
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REALDATA, STAGE_ENV
from pipeline.modalities.image.modality import load_image
from pipeline import config, preset
from pipeline.modalities.shape import voxels
from pipeline.errors import DataError

BASE = yaml.safe_load(preset.rendered("default"))     # not the working params.yaml, which a preset rewrites
KEY = re.compile(r"^[A-Za-z_0-9]+(\.[A-Za-z_0-9]+)*(\[\d+\])?: ")
ODD = ["abc", "", [1, 2], {}, {"x": 1}, None, True, False, 0, -1, 1, 2, 3, 10 ** 12, -10 ** 9, 0.5, -0.5,
       1e-30, 1e30, float("inf"), -float("inf"), float("nan"), "1e-3", "cuda:x", [0.1], [0.2, 0.1], [0.1, 0.2, 0.3]]


def leaf_paths(d: dict, prefix=()) -> list[tuple]:
    out = []
    for k, v in d.items():
        out += leaf_paths(v, prefix + (k,)) if isinstance(v, dict) else [prefix + (k,)]
    return out


def section_paths(d: dict, prefix=()) -> list[tuple]:
    out = [prefix]
    for k, v in d.items():
        if isinstance(v, dict):
            out += section_paths(v, prefix + (k,))
    return out


def mutate(raw: dict, rng: random.Random) -> str:
    """One random mutation in place; returns what it did."""
    kind = rng.choice(["value", "value", "value", "delete", "unknown", "section"])
    if kind == "value":
        path = rng.choice(leaf_paths(raw))
        node = raw
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = copy.deepcopy(rng.choice(ODD))
        return f"{'.'.join(path)} = {node[path[-1]]!r}"
    if kind == "delete":
        path = rng.choice(leaf_paths(raw))
        node = raw
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
        return f"del {'.'.join(path)}"
    section = rng.choice(section_paths(raw))
    node = raw
    for k in section:
        node = node[k]
    if kind == "unknown":
        node[rng.choice(["typo", "lr_", "Steps", "extra_key"])] = 1
        return f"unknown key in {'.'.join(section) or 'top level'}"
    if section:
        parent = raw
        for k in section[:-1]:
            parent = parent[k]
        parent[section[-1]] = rng.choice([1, "x", None, [1]])
        return f"section {'.'.join(section)} replaced"
    return "no-op"


def touched(what: list[str]) -> list[str]:
    """The dotted keys or sections `mutate`'s descriptions name ("" for the top level)."""
    out = []
    for w in what:
        if w.startswith("del "):
            out.append(w[4:])
        elif w.startswith("unknown key in "):
            out.append("" if w.endswith("top level") else w[len("unknown key in "):])
        elif w.startswith("section "):
            out.append(w[len("section "):-len(" replaced")])
        else:
            out.append(w.split(" = ")[0])
    return out


def test_three_hundred_random_param_mutations_are_accepted_or_refused_by_key():
    rng = random.Random(0)
    accepted = refused = 0
    for trial in range(300):
        raw = copy.deepcopy(BASE)
        what = [mutate(raw, rng) for _ in range(rng.choice([1, 1, 2]))]
        try:
            cfg = config.from_dict(raw)
        except config.ConfigError as e:
            msg = str(e)
            assert KEY.match(msg) and "\n" not in msg, (what, msg)
            # ... naming what was mutated: the key itself, or (a rule across keys) the other key beside it
            assert any(key == "" or key in msg for key in touched(what)), (what, msg)
            refused += 1
            continue
        except Exception as e:   # noqa: BLE001 -- the point of the test
            pytest.fail(f"{what}: {e.__class__.__name__}: {e}")
        # accepted: valid, and the same config again after a round trip
        assert config.from_dict(config.to_dict(cfg)) == cfg, what
        for key in ("fit_loe.lr", "hcdm.lr", "loe.w0", "fit_loe.init_std"):
            value = cfg
            for part in key.split("."):
                value = getattr(value, part)
            assert math.isfinite(value), (what, key)
        accepted += 1
    assert refused > 150 and accepted > 20, (accepted, refused)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_params_through_a_stage_give_exit_2_and_one_line(tmp_path, seed):
    rng = random.Random(100 + seed)
    while True:   # a mutation that is refused
        raw = copy.deepcopy(BASE)
        mutate(raw, rng)
        try:
            config.from_dict(raw)
        except config.ConfigError as e:
            expected = f"error: {e}"
            break
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    r = subprocess.run([sys.executable, "-m", "pipeline.stages.prepare"], cwd=tmp_path, capture_output=True, text=True,
                       env=STAGE_ENV)
    assert r.returncode == 2 and r.stderr.strip() == expected and not (tmp_path / "data").exists()


# --- bad files, per reader ------------------------------------------------------

def png(width=12, height=10, mode="RGB") -> bytes:
    import io as _io

    buf = _io.BytesIO()
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    value, dtype = (200 * 257, np.uint16) if mode == "I;16" else (200, np.uint8)   # 16-bit 51400 reads as 200
    Image.fromarray(np.full(shape, value, dtype)).save(buf, format="PNG")
    return buf.getvalue()


def jpeg() -> bytes:
    import io as _io

    buf = _io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def binvox(dims=(8, 8, 8), runs=((1, 255), (1, 255), (0, 2))) -> bytes:
    head = f"#binvox 1\ndim {dims[0]} {dims[1]} {dims[2]}\ntranslate 0 0 0\nscale 1\ndata\n".encode()
    return head + bytes(v for r in runs for v in r)


def flip_bytes(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(max(1, len(out) // 20)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


IMAGE_FILES = {
    "empty.png": b"", "text.png": b"just some text", "truncated.png": png()[:60], "truncated.jpg": jpeg()[:200],
    "ok.png": png(), "grey16.png": png(mode="I;16"), "grey.png": png(mode="L"), "ok.jpg": jpeg(),
    "wide.png": png(200, 3), "flipped1.png": flip_bytes(png(), 1), "flipped2.jpg": flip_bytes(jpeg(), 2),
    "png_as.jpg": png(), "zlib_garbage.png": png()[:33] + zlib.compress(b"junk" * 20),
}
SHAPE_FILES = {
    "ok.binvox": binvox(), "empty.binvox": b"", "no_dim.binvox": b"#binvox 1\ndata\n" + bytes([1, 255]),
    "bad_dim.binvox": b"#binvox 1\ndim 8 x 8\ndata\n", "zero_dim.binvox": binvox((0, 8, 8)),
    "short.binvox": binvox(runs=((1, 20),)), "all_empty.binvox": binvox(runs=((0, 255), (0, 255), (0, 2))),
    "huge.binvox": binvox((5000, 5000, 5000)), "flipped.binvox": flip_bytes(binvox(), 3),
    "box.binvox": binvox((8, 4, 6), runs=((1, 192),)),      # non-cubic: trimesh asserted (an empty message)
    "ok.txt": b"0 0 0\n1 1 1\n2 2 2\n", "empty.txt": b"", "words.txt": b"a b c\n", "floats.txt": b"0.5 1 2\n",
    "neg.txt": b"-1 0 0\n", "two_cols.txt": b"1 2\n3 4\n", "ragged.txt": b"1 2 3\n4 5\n", "big.txt": b"4000 0 0\n",
    "bin.txt": bytes(range(256)), "box_4_4_4.txt": b"9 0 0\n", "zero_0_4_4.txt": b"0 0 0\n",
    "garbage.obj": b"v 1 2\nf 1 2 3 4 5\n", "empty.off": b"", "text.ply": b"ply\nformat nonsense\n",
    "random.stl": bytes(random.Random(4).randrange(256) for _ in range(300)),
}


def read_or_named(path: Path, read):
    """read(path), or None when it raised the project's one-line error naming `path`."""
    try:
        return read(path)
    except DataError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e), str(e)
        return None


@pytest.mark.parametrize("name", sorted(IMAGE_FILES))
def test_every_bad_image_is_read_or_named(tmp_path, name):
    (tmp_path / name).write_bytes(IMAGE_FILES[name])
    img = read_or_named(tmp_path / name, lambda p: load_image(p, 16))
    assert img is not None or not name.startswith(("ok", "grey"))
    if img is not None:
        assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    if name.startswith(("ok", "grey")):
        assert abs(int(img.mean()) - (90 if name.endswith("jpg") else 200)) <= 2


@pytest.mark.parametrize("name", sorted(SHAPE_FILES))
def test_every_bad_shape_file_is_read_or_named(tmp_path, name):
    (tmp_path / name).write_bytes(SHAPE_FILES[name])
    grid = read_or_named(tmp_path / name, lambda p: voxels.read_file(p, 8))
    assert grid is not None or not name.startswith("ok")
    if grid is not None:
        assert grid.shape == (8, 8, 8) and grid.dtype == bool and grid.any()


def test_real_files_with_flipped_bytes_are_read_or_named(tmp_path):
    """The shared real samples, each with a few random bytes changed."""
    files = sorted((REALDATA / "binvox").glob("*.binvox"))[:2] + sorted((REALDATA / "voxels_3drecgan").glob("*.txt"))[:2]
    files += sorted((REALDATA / "faces_alae128").glob("*.png"))[:2]
    if not files:
        pytest.skip("no ../shared/realdata here")
    outcomes = []
    for i, src in enumerate(files):
        for seed in range(3):
            path = tmp_path / f"{seed}_{src.name}"
            path.write_bytes(flip_bytes(src.read_bytes(), seed + 10 * i))
            read = (lambda p: load_image(p, 16)) if src.suffix == ".png" else (lambda p: voxels.read_file(p, 16))
            outcomes.append("read" if read_or_named(path, read) is not None else "refused")
    assert "refused" in outcomes


def write_hdf5(path: Path, **datasets_):
    import h5py

    with h5py.File(path, "w") as f:
        for k, v in datasets_.items():
            if isinstance(v, dict):   # a group where a dataset belongs
                f.create_group(k)
            else:
                f.create_dataset(k, data=v)


def cube(n, dtype=np.uint8, side=8):
    g = np.zeros((n, side, side, side, 1), dtype)
    g[:, 2:6, 2:6, 2:6] = 1
    return g


@pytest.mark.parametrize("name, make", [
    ("not_hdf5", lambda p: p.write_bytes(b"plain text")),
    ("no_voxels", lambda p: write_hdf5(p, pixels=np.zeros((2, 4)))),
    ("flat", lambda p: write_hdf5(p, voxels=np.zeros((2, 8)))),
    ("box", lambda p: write_hdf5(p, voxels=np.zeros((2, 8, 8, 4, 1)))),
    ("none", lambda p: write_hdf5(p, voxels=np.zeros((0, 8, 8, 8, 1)))),
    ("nan", lambda p: write_hdf5(p, voxels=np.where(cube(2, np.float32) > 0, np.nan, 0))),
    ("empty_shape", lambda p: write_hdf5(p, voxels=cube(2) * np.array([1, 0], np.uint8)[:, None, None, None, None])),
    ("group", lambda p: write_hdf5(p, voxels={})),
    ("text", lambda p: write_hdf5(p, voxels=np.full((2, 8, 8, 8, 1), b"1", "S1"))),
    ("ok_float", lambda p: write_hdf5(p, voxels=cube(2, np.float32))),
    ("ok_bool", lambda p: write_hdf5(p, voxels=cube(2, bool)[..., 0])),
])
def test_every_bad_imnet_file_is_read_or_named(tmp_path, name, make):
    path = tmp_path / f"{name}.hdf5"
    make(path)
    packed = read_or_named(path, lambda p: voxels.read_imnet(p, 8))
    assert (packed is not None) == name.startswith("ok")
    if packed is not None:
        assert packed.shape == (2, 8 ** 3 // 8)
