import json

import numpy as np
import pytest
from PIL import Image

from conftest import REALDATA
from pipeline.modalities.image.modality import load_image
from pipeline import config, datasets
from pipeline.modalities.image import synthetic as synthetic_faces
from pipeline.datasets import DataError

FACES = REALDATA / "faces_alae128"


def test_synthetic_faces_are_deterministic_and_labelled():
    a, fa = synthetic_faces.generate(10, 24, seed=5)
    b, fb = synthetic_faces.generate(10, 24, seed=5)
    c, _ = synthetic_faces.generate(10, 24, seed=6)
    assert a.shape == (10, 24, 24, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(fa, fb) and not np.array_equal(a, c)
    assert fa.shape == (10, len(synthetic_faces.FACTORS)) and len(synthetic_faces.FACTORS) >= 6
    for i, (kind, lo, hi) in enumerate(synthetic_faces.FACTORS.values()):
        assert (fa[:, i] >= lo).all() and (fa[:, i] <= hi).all()
        if kind == "categorical":
            assert np.array_equal(fa[:, i], np.round(fa[:, i]))


def test_each_factor_changes_the_picture():
    base = synthetic_faces.sample_factors(1, np.random.default_rng(0))
    base[0, synthetic_faces.FACTOR_NAMES.index("hair_style")] = 3
    ref = synthetic_faces.render(base, 32)
    for i, (_, lo, hi) in enumerate(synthetic_faces.FACTORS.values()):
        moved = base.copy()
        moved[0, i] = lo if moved[0, i] != lo else hi
        diff = np.abs(synthetic_faces.render(moved, 32).astype(int) - ref).sum()
        assert diff > 0, synthetic_faces.FACTOR_NAMES[i]


def test_anti_aliased_edges():
    img, _ = synthetic_faces.generate(4, 32, seed=0)
    # Box-filtered supersampling leaves intermediate values along edges, not just a few flat colours.
    assert all(len(np.unique(im.reshape(-1, 3), axis=0)) > 30 for im in img)


def folder_cfg(path, split="sorted", seed=0, **folder):
    return config.from_dict({"seed": seed, "dataset": {"source": "folder", "path": str(path), "resolution": 16,
                                                       "split": split, "folder": folder}})


def write_images(folder, n, size=(40, 30)):
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def test_folder_split_first_n_train(tmp_path):
    write_images(tmp_path, 6)
    data = datasets.prepare(folder_cfg(tmp_path, train_count=4))
    assert data.train.shape == (4, 16, 16, 3) and data.test.shape == (2, 16, 16, 3)
    data = datasets.prepare(folder_cfg(tmp_path, train_fraction=0.5))
    assert len(data.train) == 3


def test_a_class_sorted_folder_gets_a_mixed_seeded_test_split(tmp_path):
    """Files named by class (10 dark 'a_*', then 10 light 'b_*'): `sorted` puts only b's in the test split;
    `random` (the default) mixes them, the same way on every run and whatever order the files are listed in."""
    for i in range(10):
        Image.fromarray(np.full((16, 16, 3), 20 + i, np.uint8)).save(tmp_path / f"a_{i:02d}.png")
        Image.fromarray(np.full((16, 16, 3), 200 + i, np.uint8)).save(tmp_path / f"b_{i:02d}.png")
    assert config.from_dict({}).dataset.split == "random"
    sorted_split = datasets.prepare(folder_cfg(tmp_path, train_count=14))
    assert (sorted_split.test > 128).all() and sorted_split.info["test_files"][0] == "b_04.png"
    first = datasets.prepare(folder_cfg(tmp_path, split="random", train_count=14))
    light = int((first.test[:, 0, 0, 0] > 128).sum())
    assert len(first.test) == 6 and 0 < light < 6                          # both classes in the test split
    again = datasets.prepare(folder_cfg(tmp_path, split="random", train_count=14))
    assert again.info["test_files"] == first.info["test_files"] and np.array_equal(again.test, first.test)
    other_seed = datasets.prepare(folder_cfg(tmp_path, split="random", seed=1, train_count=14))
    assert other_seed.info["test_files"] != first.info["test_files"]
    assert first.info["test_files"] == sorted(first.info["test_files"])     # each split keeps the name order


def test_a_file_of_test_names_is_the_test_split(tmp_path):
    write_images(tmp_path, 6)
    listing = tmp_path.parent / f"{tmp_path.name}-test.txt"
    listing.write_text("001.png\n004\n")                                   # names or stems
    data = datasets.prepare(folder_cfg(tmp_path, split=str(listing)))
    assert data.info["test_files"] == ["001.png", "004.png"] and len(data.train) == 4
    listing.write_text("001.png\nnope.png\n")
    with pytest.raises(DataError, match=r"-test\.txt: 1 of its 2 test names not in .*'nope.png'"):
        datasets.prepare(folder_cfg(tmp_path, split=str(listing)))
    with pytest.raises(DataError, match="dataset.split is not random, sorted or a readable file"):
        datasets.prepare(folder_cfg(tmp_path, split=str(tmp_path / "missing.txt")))


def test_centre_crop_then_bicubic_resize(tmp_path):
    img = np.zeros((20, 40, 3), dtype=np.uint8)
    img[:, 10:30] = 200                               # the centre square is uniformly 200
    Image.fromarray(img).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 8)
    assert out.shape == (8, 8, 3) and (out == 200).all()


def test_corrupt_image_is_named_or_skipped_and_counted(tmp_path):
    write_images(tmp_path, 4)
    (tmp_path / "002_bad.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="002_bad.jpg"):
        datasets.prepare(folder_cfg(tmp_path))
    data = datasets.prepare(folder_cfg(tmp_path, skip_corrupt=True, train_count=2))
    assert data.info["skipped_files"] == 1 and data.info["skipped"] == ["002_bad.jpg"]
    assert len(data.train) == 2 and data.info["test_files"] == ["002.png", "003.png"]
    # A skip that leaves a side too small says so, with the count of files skipped.
    with pytest.raises(DataError, match=r"\(less 1 unreadable files skipped\): 4 instances split into 3 train / 1"):
        datasets.prepare(folder_cfg(tmp_path, skip_corrupt=True))


def test_a_skipped_file_leaves_its_own_side_and_never_moves_the_sorted_boundary(tmp_path):
    write_images(tmp_path, 10, size=(8, 8))
    names = [f"{i:03d}.png" for i in range(10)]
    (tmp_path / names[3]).write_bytes(b"not a png")          # a train file: the test split stays 7, 8, 9
    data = datasets.prepare(folder_cfg(tmp_path, skip_corrupt=True, train_count=7))
    assert data.info["test_files"] == names[7:] and len(data.train) == 6


def test_sorted_split_orders_unpadded_numbers_by_value(tmp_path):
    """CelebA-HQ ships 0.jpg ... 29999.jpg: the test split of `sorted` with train_count is the last numbers."""
    write_images(tmp_path, 12, size=(8, 8))
    for i in range(12):
        (tmp_path / f"{i:03d}.png").rename(tmp_path / f"{i}.png")
    data = datasets.prepare(folder_cfg(tmp_path, train_count=9))
    assert data.info["test_files"] == ["9.png", "10.png", "11.png"]
    # ... and each split keeps that order: the pixels of 10.png come after 9.png's.
    padded = tmp_path.parent / f"{tmp_path.name}_padded"
    padded.mkdir()
    write_images(padded, 12, size=(8, 8))
    padded = datasets.prepare(folder_cfg(padded, train_count=9))
    np.testing.assert_array_equal(data.test, padded.test)


def test_files_sharing_a_stem_are_one_instance_on_one_side_of_every_split(tmp_path):
    """`000.png` and `000.jpg` (one picture saved twice, as a folder often has) never land on both sides."""
    write_images(tmp_path, 12, size=(8, 8))
    for i in range(0, 12, 2):   # 000, 002, ... also as .jpg
        Image.open(tmp_path / f"{i:03d}.png").save(tmp_path / f"{i:03d}.jpg", quality=95)
    for seed in range(5):
        data = datasets.prepare(folder_cfg(tmp_path, split="random", seed=seed, train_count=8))
        tested = {n.split(".")[0] for n in data.info["test_files"]}
        assert data.info["groups"] == 12 and len(tested) == 4      # train_count counts instances: 8 + 4
        assert len(data.train) + len(data.test) == 18
        pairs = {f"{i:03d}" for i in range(0, 12, 2)}
        assert all(f"{s}.jpg" in data.info["test_files"] for s in tested & pairs)   # both of a pair, or neither
    # A split file's stem, or either name, tests both files of the stem.
    listing = tmp_path.parent / f"{tmp_path.name}_test.txt"
    for line in ("000", "000.jpg", "000.png"):
        listing.write_text(f"{line}\n003\n")
        data = datasets.prepare(folder_cfg(tmp_path, split=str(listing)))
        assert data.info["test_files"] == ["000.jpg", "000.png", "003.png"] and len(data.train) == 15


def test_a_split_file_name_that_matches_two_instances_is_refused_with_both(tmp_path):
    write_images(tmp_path, 4)
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "000.png.jpg")   # stem 000.png: a 2nd instance
    listing = tmp_path.parent / f"{tmp_path.name}_test.txt"
    listing.write_text("000.png\n003\n")
    with pytest.raises(DataError, match=r"'000.png' matches 2 files \(000.png, 000.png.jpg\); name one by its path"):
        datasets.prepare(folder_cfg(tmp_path, split=str(listing)))
    listing.write_text("000.png.jpg\n003\n")
    assert datasets.prepare(folder_cfg(tmp_path, split=str(listing))).info["test_files"] == ["000.png.jpg", "003.png"]


def test_two_copies_of_one_picture_are_not_a_split_of_two(tmp_path):
    write_images(tmp_path, 3, size=(8, 8))
    Image.open(tmp_path / "002.png").save(tmp_path / "002.jpg", quality=95)
    listing = tmp_path.parent / f"{tmp_path.name}_test.txt"
    listing.write_text("002\n")
    with pytest.raises(DataError, match=(r"^.+: its 4 files are 3 instances \(the views of one object, or files "
                                         r"sharing a stem, are one\), split into 2 train / 1 test; each split needs "
                                         r"at least 2 \(FID, KID and precision/recall compare sets\): add files")):
        datasets.prepare(folder_cfg(tmp_path, split=str(listing)))


def test_a_split_file_saved_with_a_bom_names_its_first_file(tmp_path):
    write_images(tmp_path, 6, size=(8, 8))
    listing = tmp_path.parent / f"{tmp_path.name}_test.txt"
    listing.write_bytes("001.png\r\n004\r\n".encode("utf-8-sig"))          # as Windows' Notepad saves it
    assert datasets.prepare(folder_cfg(tmp_path, split=str(listing))).info["test_files"] == ["001.png", "004.png"]


def test_hidden_files_and_macos_sidecars_are_not_read(tmp_path):
    write_images(tmp_path, 4, size=(8, 8))
    (tmp_path / "._001.png").write_bytes(b"\x00\x05\x16\x07AppleDouble sidecar")   # macOS on a FAT/exFAT drive
    Image.open(tmp_path / "000.png").save(tmp_path / ".000.png")                   # a hidden copy
    (tmp_path / "__MACOSX.png").write_bytes(b"not a picture")
    data = datasets.prepare(folder_cfg(tmp_path))
    assert (len(data.train), len(data.test)) == (2, 2) and data.info["test_files"] == ["002.png", "003.png"]


def test_every_test_file_name_is_recorded(tmp_path):
    write_images(tmp_path, 230, size=(2, 2))
    data = datasets.prepare(folder_cfg(tmp_path, split="sorted", train_count=10))
    assert data.info["test_files"] == [f"{i:03d}.png" for i in range(10, 230)]


def test_a_test_picture_equal_to_a_train_picture_is_warned_with_the_count(tmp_path, monkeypatch):
    from pipeline.stages import prepare

    (tmp_path / "imgs").mkdir()
    write_images(tmp_path / "imgs", 6, size=(8, 8))
    for i, copy in ((0, "copy_a.png"), (1, "copy_b.png"), (2, "copy_c.png")):   # three files saved twice
        (tmp_path / "imgs" / copy).write_bytes((tmp_path / "imgs" / f"{i:03d}.png").read_bytes())
    listing = tmp_path / "test.txt"
    listing.write_text("copy_a\ncopy_b\n001\n005\n")   # copy_a's original trains; copy_b and 001 both test
    cfg = folder_cfg(tmp_path / "imgs", split=str(listing))
    data = datasets.prepare(cfg)
    assert datasets.exact_copies(data.train, data.test) == 1
    assert datasets.exact_copies(data.train, data.train[::-1]) == len(data.train)
    monkeypatch.chdir(tmp_path)
    prepare.main(cfg, None, 0.0, "cpu")
    warnings = json.loads((tmp_path / "metrics/detail/prepare.json").read_text())["warnings"]
    assert (f"1 of 4 test instances equal a train instance exactly (the same stored signal, e.g. one file saved under "
            f"two names): their test figures measure recall, not generalisation; remove the duplicates from the data in "
            f"{tmp_path / 'imgs'}") in warnings


def test_an_exif_rotated_jpeg_is_read_upright(tmp_path):
    """A phone's portrait photo: the sensor's landscape pixels and Orientation 6 (turn 90 degrees clockwise)."""
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16] = (250, 0, 0)                  # red left half, blue right half as stored
    stored[:, 16:] = (0, 0, 250)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "portrait.jpg", quality=95, exif=exif.tobytes())
    out = load_image(tmp_path / "portrait.jpg", 8).astype(int)
    # Shown upright it is 16 wide, 32 tall, red above blue; the centre square keeps half of each.
    assert np.abs(out[:3] - (250, 0, 0)).max() < 12 and np.abs(out[5:] - (0, 0, 250)).max() < 12
    Image.fromarray(stored).save(tmp_path / "plain.jpg", quality=95)           # no tag: as stored, red left
    plain = load_image(tmp_path / "plain.jpg", 8).astype(int)
    assert np.abs(plain[:, :3] - (250, 0, 0)).max() < 12 and np.abs(plain[:, 5:] - (0, 0, 250)).max() < 12


def test_transparent_pixels_are_put_on_white_as_srn_views_are(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)                        # transparent black on the left
    rgba[:, 4:] = (10, 20, 30, 255)                              # opaque on the right
    rgba[:2, 4:] = (200, 0, 0, 128)                              # half-transparent red above it
    Image.fromarray(rgba).save(tmp_path / "cutout.png")
    out = load_image(tmp_path / "cutout.png", 8)
    assert (out[:, :4] == 255).all() and (out[2:, 4:] == (10, 20, 30)).all()
    assert out[0, 4].tolist() == [227, 127, 127]                 # 200 * 128/255 + 255 * 127/255 = 227.4
    # An opaque alpha band changes nothing, resized or not.
    pixels = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([pixels, np.full((30, 40), 255, np.uint8)])).save(tmp_path / "opaque.png")
    for side in (7, 30):
        assert np.array_equal(load_image(tmp_path / "opaque.png", side), load_image(tmp_path / "rgb.png", side))


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        datasets.prepare(folder_cfg(tmp_path / "nowhere"))


@pytest.mark.skipif(not FACES.is_dir(), reason="../shared/realdata/faces_alae128 is not present")
def test_real_faces_folder():
    data = datasets.prepare(folder_cfg(FACES, train_count=128))
    assert data.train.shape == (128, 16, 16, 3) and len(data.test) == len(list(FACES.glob("*.png"))) - 128
    assert 40 < data.train.mean() < 220


def test_prepared_file_round_trip(tmp_path):
    cfg = config.from_dict({"dataset": {"resolution": 16, "synthetic": {"train": 5, "test": 2}}})
    data = datasets.prepare(cfg)
    datasets.save(tmp_path / "d.npz", data, {"resolution": 16})
    back = datasets.load(tmp_path / "d.npz")
    assert np.array_equal(back.train, data.train) and np.array_equal(back.test_factors, data.test_factors)
    assert back.modality.d_in == 2 and back.modality.d_out == 3 and back.factor_names == data.factor_names
