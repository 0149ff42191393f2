"""The motion plug-in: AMASS reading, resampling, forward kinematics, rotation errors, decoding at 400 frames."""
import re

import numpy as np
import pytest
import torch

from pipeline.errors import DataError
from pipeline.loe import LayersOfExperts
from pipeline.meta import MetaSGD, inner_loop
from pipeline.modalities.motion import amass, rendering, skeleton, synthetic
from pipeline.modalities.motion.modality import MotionModality

from conftest import REALDATA

SAMPLE = REALDATA / "amass_sample_smplh.npz"
BOUND_400 = 0.02      # the 400-frame decode, back at 200 frames: within 2% of the decode's value range
needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason=f"{SAMPLE} (real AMASS sample) not present")


@needs_sample
def test_smplh_file_maps_to_smplx_value_by_value():
    raw = np.load(SAMPLE)["poses"]                                   # (500, 156) at 120 fps
    poses, rate = amass.read_poses(SAMPLE)
    assert rate == 120.0 and poses.shape == (500, 165)
    assert np.array_equal(poses[:, 3:66], raw[:, 3:66])              # 21 body joints
    # The root: AMASS's z-up turned y-up, R = R_x(-90 deg) R_amass.
    assert np.allclose(skeleton.rotation_matrices(poses[:, :3]),
                       amass.Z_UP_TO_Y_UP @ skeleton.rotation_matrices(raw[:, :3]), atol=1e-9)
    assert np.array_equal(poses[:, 66:75], np.zeros((500, 9)))       # jaw, two eyes
    assert np.array_equal(poses[:, 75:], raw[:, 66:])                # 2 x 15 hand joints


@needs_sample
def test_the_sample_stands_upright():
    poses, _ = amass.read_poses(SAMPLE)
    joints = skeleton.forward_kinematics(poses)
    head = joints[:, skeleton.JOINTS.index("head")] - joints[:, 0]
    assert head[:, 1].min() > 0.3                                     # the head above the pelvis in y, every frame


@needs_sample
def test_the_sample_becomes_clips_at_30_fps():
    poses, rate = amass.read_poses(SAMPLE)
    c = amass.clips(poses, rate, 100)                                # 500 frames at 120 fps = 125 at 30 fps
    assert c.shape == (1, 100, 165) and c.dtype == np.float32
    # Every 4th source frame is an output frame: the same rotations (axis-angle may differ by 2 pi).
    got, want = c[0].reshape(100, 55, 3), poses[:400:4].reshape(100, 55, 3)
    assert skeleton.geodesic_degrees(got, want).max() < 1e-3


def test_resampling_a_known_sinusoid():
    # One joint turning about a fixed axis, angle 0.8 sin(2 pi 1.3 t), at 120 fps -> 50 fps (not a divisor).
    t = np.arange(600) / 120
    angle = 0.8 * np.sin(2 * np.pi * 1.3 * t)
    axis = np.array([0.6, 0.0, 0.8])
    out = amass.resample((angle[:, None] * axis).astype(np.float64), 120.0, 50.0)
    t_out = np.arange(len(out)) / 50
    assert len(out) == 250                                            # times 0 .. 4.98 s within the 4.99 s span
    want = 0.8 * np.sin(2 * np.pi * 1.3 * t_out)[:, None] * axis
    # Slerp about one axis is linear interpolation of the angle: error <= h^2/8 max|f''| = 5.9e-4 rad.
    assert np.abs(out - want).max() < 6e-4


def test_slerp_takes_the_short_way_across_pi():
    # 3.0 rad and -3.0 rad about z are 0.28 rad apart through pi; halfway is the rotation by pi, not 0.
    out = amass.resample(np.array([[0, 0, 3.0], [0, 0, -3.0]]), 1.0, 2.0)
    assert len(out) == 3
    assert skeleton.geodesic_degrees(out[1], np.array([0, 0, np.pi])) < 1e-4


def test_unwrap_keeps_a_turn_past_pi_continuous():
    angles = np.linspace(0, 2.5 * np.pi, 60)
    wrapped = skeleton.matrix_to_axis_angle(skeleton.rotation_matrices(angles[:, None] * [0, 1.0, 0]))
    assert np.abs(np.diff(wrapped[:, 1])).max() > 5                   # the [0, pi] form jumps
    out = skeleton.unwrap(wrapped[:, None])[:, 0]
    assert np.allclose(out[:, 1], angles, atol=1e-9) and np.allclose(out[:, [0, 2]], 0, atol=1e-9)
    assert np.array_equal(skeleton.unwrap(out[:10, None])[:, 0], out[:10])     # nothing to do: unchanged


def test_matrix_to_axis_angle_near_pi():
    for angle in (np.pi, np.pi - 1e-5, 3.0, 1e-8):
        v = angle * np.array([0.6, 0.0, -0.8])
        assert skeleton.geodesic_degrees(v, skeleton.matrix_to_axis_angle(skeleton.rotation_matrices(v))) < 1e-3


def test_zero_pose_gives_the_rest_skeleton():
    rest = skeleton.rest_joints()
    assert np.allclose(skeleton.forward_kinematics(np.zeros((2, 165)))[1], rest)
    assert np.allclose(rest[0], 0) and rest[15, 1] > 0.5 > rest[7, 1] + 1.2      # head above, ankles below
    assert np.allclose(rest[skeleton.JOINTS.index("left_wrist")] * [-1, 1, 1],
                       rest[skeleton.JOINTS.index("right_wrist")], atol=0.02)


def test_forward_kinematics_turns_a_child_by_its_parents_rotation():
    pose = np.zeros(165)
    pose[3 * skeleton.JOINTS.index("left_hip"):][:3] = [np.pi / 2, 0, 0]          # hip flexed 90 degrees about x
    j = skeleton.forward_kinematics(pose)
    knee, hip = skeleton.JOINTS.index("left_knee"), skeleton.JOINTS.index("left_hip")
    off = skeleton.OFFSETS[knee]
    assert np.allclose(j[knee] - j[hip], [off[0], -off[2], off[1]])              # R_x(90): (x, y, z) -> (x, -z, y)


def test_geodesic_error_of_a_known_rotation_pair():
    assert skeleton.geodesic_degrees(np.array([0, 0, 0.5]), np.array([0, 0, -0.3])) == pytest.approx(
        np.degrees(0.8))
    # 30 degrees about x, then the same rotation written with angle 2 pi - 30 degrees about -x: 0 error.
    a = np.radians(30)
    assert skeleton.geodesic_degrees(np.array([a, 0, 0]), np.array([-(2 * np.pi - a), 0, 0])) < 1e-5
    assert skeleton.geodesic_degrees(np.array([np.pi / 2, 0, 0]), np.array([0, np.pi / 2, 0])) == pytest.approx(120)


def test_bad_files_get_one_line_naming_them(tmp_path):
    cases = {"nokeys.npz": {"trans": np.zeros((10, 3))},
             "shape.npz.bad.npz": {"poses": np.zeros((10, 100)), "mocap_framerate": np.array(60.0)},
             "nan.npz": {"poses": np.full((10, 156), np.nan), "mocap_framerate": np.array(60.0)},
             "norate.npz": {"poses": np.zeros((10, 156))}}
    for name, arrays in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(DataError, match=rf"^{tmp_path / name}: ") as e:
            amass.read_poses(tmp_path / name)
        assert "\n" not in str(e.value)
    (tmp_path / "text.npz").write_text("not a zip")
    good = tmp_path / "good.npz"
    np.savez_compressed(good, poses=np.zeros((50, 156)), mocap_framerate=np.array(60.0))
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[:-40])
    for name in ("text.npz", "truncated.npz"):
        with pytest.raises(DataError, match=rf"^{tmp_path / name}: cannot read as .npz"):
            amass.read_poses(tmp_path / name)


def declaring(path, shape, dtype="<f8") -> None:
    """An .npz of a few hundred bytes whose 'poses' header declares `shape` of `dtype` (its data left out)."""
    import io as _io
    import zipfile

    header = _io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    rate = _io.BytesIO()
    np.save(rate, np.array(60.0))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("poses.npy", header.getvalue())                 # the magic, the header, no data
        z.writestr("mocap_framerate.npy", rate.getvalue())


def test_a_motion_file_declaring_more_frames_than_it_could_hold_is_refused_from_its_header(tmp_path):
    """A small deflated upload can declare and hold gigabytes: the frame count is read from the header."""
    from pipeline import io

    declaring(tmp_path / "huge.npz", (10 ** 12, 165))
    assert (tmp_path / "huge.npz").stat().st_size < 1000
    with pytest.raises(DataError, match=rf"^{tmp_path / 'huge.npz'}: 'poses' declares 1000000000000 frames; "
                                        rf"a motion file holds at most {amass.MAX_FRAMES}"):
        amass.read_poses(tmp_path / "huge.npz")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'huge.npz'}: 'poses' declares \(1000000000000, 165\) "
                                        r"float64, 1.23e\+06 GiB, more than this machine's memory"):
        io.load_npz(tmp_path / "huge.npz")            # an artifact's reader: refused from the header too
    for shape, dtype in (((2, 500_000_000), "<f8"), ((10, 165), "<U35")):   # GBs in other dimensions, strings
        declaring(tmp_path / "wide.npz", shape, dtype)
        with pytest.raises(DataError, match=r"'poses' (has shape \(2, 500000000\)|must hold real numbers, found <U35)"):
            amass.read_poses(tmp_path / "wide.npz")
    np.savez_compressed(tmp_path / "long.npz", poses=np.zeros((amass.MAX_FRAMES + 1, 165), np.float32),
                        mocap_framerate=np.array(60.0))
    with pytest.raises(DataError, match=f"declares {amass.MAX_FRAMES + 1} frames"):
        amass.read_poses(tmp_path / "long.npz")


def test_damaged_compressed_data_is_one_line_from_every_npz_reader(tmp_path):
    from pipeline import io

    good = tmp_path / "good.npz"
    np.savez_compressed(good, poses=np.random.default_rng(0).normal(size=(400, 156)), mocap_framerate=np.array(60.0))
    data = bytearray(good.read_bytes())
    data[200:260] = bytes(255 - b for b in data[200:260])
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"^{tmp_path / 'bad.npz'}: cannot read"):
        io.load_npz(tmp_path / "bad.npz")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'bad.npz'}: cannot read as .npz"):
        amass.read_poses(tmp_path / "bad.npz")


@pytest.mark.parametrize("poses, rate, says", [
    (np.zeros((50, 156)), np.ones(3), "frame rate 'mocap_framerate' must be one real number, found float64 (3,)"),
    (np.zeros((0, 156)), np.array(60.0), "'poses' has 0 frames; a motion needs at least 2"),
    (np.full((10, 156), "0.1"), np.array(60.0), "'poses' must hold real numbers, found <U3"),
    (np.zeros((10, 156)) + 1j, np.array(60.0), "'poses' must hold real numbers, found complex128"),
    (np.full((10, 156), 1e30), np.array(60.0), "'poses' holds a rotation of 1e+30 rad"),
    (np.zeros((10, 156)), np.array(1e-4), "frame rate 0.0001 fps is outside [1, 2000] fps"),
    (np.zeros((10, 156)), np.array(1e-300), "frame rate 1e-300 fps is outside [1, 2000] fps"),
    (np.zeros((10, 156)), np.array("60"), "frame rate 'mocap_framerate' must be one real number, found <U2"),
])
def test_hostile_motion_files_are_one_line_before_any_allocation(tmp_path, poses, rate, says):
    """A rate of 1e-4 fps asked for 58.5 GiB; strings, complex values and 1e30-rad angles went through."""
    np.savez(tmp_path / "m.npz", poses=poses, mocap_framerate=rate)
    with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path / 'm.npz'}: {says}")):
        amass.read_poses(tmp_path / "m.npz")


def test_embedded_motions_are_seeded_and_within_the_rotation_range():
    a, fa = synthetic.generate(6, 40, seed=3)
    b, fb = synthetic.generate(6, 40, seed=3)
    assert np.array_equal(a, b) and np.array_equal(fa, fb)
    assert a.shape == (6, 40, 165) and fa.shape == (6, len(synthetic.FACTOR_NAMES))
    assert np.linalg.norm(a.reshape(6, 40, 55, 3), axis=-1).max() < np.pi
    assert not np.array_equal(a, synthetic.generate(6, 40, seed=4)[0])


def test_normalisation_round_trips_and_pictures_have_the_filmstrip_shape():
    poses, _ = synthetic.generate(8, 40, seed=0)
    m = MotionModality(40)
    m.fit_to_train(poses)
    t = m.targets(poses)
    assert t.shape == (8, 40, 165) and abs(float(t.mean())) < 1e-4
    assert np.allclose(m.poses(t), poses, atol=1e-5)
    again = MotionModality(**m.construction_args())
    assert torch.equal(again.targets(poses), t)
    assert m.to_pictures(t[:2]).shape == (2, 64, 288, 3)
    from PIL import Image
    import io as _io

    with Image.open(_io.BytesIO(rendering.gif(poses[0], 30.0))) as g:      # 40 frames at 30 fps = 1.33 s
        assert g.format == "GIF" and g.n_frames == 33 and g.info["duration"] == 40
    scores = m.reconstruction_metrics(t, t)
    assert scores["mse"].max() == 0 and scores["rotation_error"].max() < 1e-3 and scores["position_error"].max() < 1e-6


def test_reconstruction_errors_of_a_known_perturbation():
    # The left knee of a zero pose bent by 10 degrees about x in every frame: known angle and joint offsets.
    m = MotionModality(20)
    zero = np.zeros((1, 20, 165), np.float32)
    bent = zero.copy()
    knee = skeleton.JOINTS.index("left_knee")
    bent[..., 3 * knee] = np.radians(10)
    s = m.reconstruction_metrics(m.targets(bent), m.targets(zero))
    assert s["rotation_error"][0] == pytest.approx(10 / 55, rel=1e-4)
    assert s["body_rotation_error"][0] == pytest.approx(10 / 22, rel=1e-4)
    r = skeleton.rotation_matrices(np.array([np.radians(10), 0, 0]))
    ankle = skeleton.OFFSETS[skeleton.JOINTS.index("left_ankle")]
    foot = ankle + skeleton.OFFSETS[skeleton.JOINTS.index("left_foot")]
    moved_mm = 1000 * (np.linalg.norm(r @ ankle - ankle) + np.linalg.norm(r @ foot - foot))
    assert s["position_error"][0] == pytest.approx(moved_mm / 55, rel=1e-4)
    assert s["body_position_error"][0] == pytest.approx(moved_mm / 22, rel=1e-4)
    assert s["psnr"][0] > 0 and s["mse"][0] > 0


def test_a_value_still_in_training_but_moving_in_test_costs_its_typical_motion_not_minus_16_db():
    # Train: the embedded motions, hands at rest (std 0). Test: the same clips with the right hand's 45 values
    # swinging 0.5 rad. A decode that holds the hand at rest (what Stage-1 learns) is wrong by exactly that
    # swing; its PSNR is measured in units of the moving values' RMS std, not of a 0.01-rad floor.
    poses, _ = synthetic.generate(8, 40, seed=0)
    m = MotionModality(40)
    m.fit_to_train(poses)
    std = poses.reshape(-1, 165).astype(np.float64).std(0)
    still = std < 0.01
    moving_std = std[~still]
    typical = np.sqrt(np.mean(moving_std ** 2))
    assert np.allclose(m.std[still], typical) and np.array_equal(m.std[~still], moving_std.astype(np.float32))
    hand = slice(120, 165)
    assert still[hand].all()
    test = poses.copy()
    swing = 0.5 * np.sin(np.linspace(0, 2 * np.pi, 40))[None, :, None]
    test[..., hand] += swing
    s = m.reconstruction_metrics(m.targets(poses), m.targets(test))
    mse = 45 / 165 * np.mean((swing / (3 * typical)) ** 2)            # only the hand is wrong
    assert s["mse"][0] == pytest.approx(mse, rel=1e-4)
    assert s["psnr"][0] == pytest.approx(10 * np.log10(4 / mse), abs=1e-3) and s["psnr"][0] > 10
    old = 45 / 165 * np.mean((swing / 0.03) ** 2)                         # the 0.01-rad floor: 3 x 0.01
    assert 10 * np.log10(4 / old) < -5                                   # what the floor reported
    # The raw-angle error of the same decode: the hand joints' geodesic error, independent of normalisation.
    assert s["rotation_error"][0] == pytest.approx(np.degrees(np.abs(swing)).mean() * 15 * np.sqrt(3) / 55,
                                                   rel=1e-3)
    (line,) = m.data_warnings(poses, test)
    assert line.startswith("45 of 165 pose values never move in the train split but do in the test split")
    assert m.data_warnings(poses, poses) == []


def test_decoding_at_400_frames_resampled_to_200_matches_the_200_frame_decode():
    # A continuous function of t: the 400-frame decode, linearly interpolated at the 200 frames' times,
    # stays within a bound of the 200-frame decode, for a trained-like latent (fitted by the inner loop).
    torch.manual_seed(0)
    m = MotionModality(200)
    poses, _ = synthetic.generate(4, 200, seed=1)
    m.fit_to_train(poses)
    model = LayersOfExperts(1, 165, 5, 8, 64, 16, 30.0)
    h = inner_loop(model, MetaSGD(5, 16, 0.05, 0.1)(), m.coordinates(), m.targets(poses), torch.zeros(4, 5, 16),
                   3, 1.0, False)
    short = model.render(m.coordinates(), h)                     # (4, 200, 165)
    long = model.render(m.coordinates(2.0), h)                   # (4, 400, 165)
    t200, t400 = m.coordinates()[:, 0].numpy(), m.coordinates(2.0)[:, 0].numpy()
    back = np.stack([np.stack([np.interp(t200, t400, long[i, :, d].numpy()) for d in range(165)], -1)
                     for i in range(4)])                                          # (4, 200, 165)
    diff = np.abs(back - short.numpy())
    assert back.shape == (4, 200, 165)
    assert diff.max() < BOUND_400 * (short.max() - short.min()).item()


def test_upsampling_error_is_zero_for_a_decode_that_is_the_slerped_source():
    poses, _ = synthetic.generate(3, 40, seed=2)
    m = MotionModality(40)
    m.fit_to_train(poses)
    exact = m.targets(np.stack([amass.resample(p.astype(np.float64), 39, 79) for p in poses]))   # (3, 80, 165)

    class Exact:                                   # decodes the source at the 80 frames' times
        def render(self, coords, latents, batch_size=256):
            assert coords.shape == (80, 1)
            return exact[: len(latents)]

    s = m.extra_reconstruction_metrics(Exact(), torch.zeros(3, 5, 8), {}, 8, poses)
    assert s["upsampled_body_rotation_error"].max() < 1e-3 and s["upsampled_body_position_error"].max() < 1e-3
    shifted = m.extra_reconstruction_metrics(type("Late", (), {"render": lambda self, c, l, b=256: exact.roll(1, 1)})(),
                                             torch.zeros(3, 5, 8), {}, 8, poses)
    assert shifted["upsampled_body_rotation_error"].min() > 0.01    # one frame late: a measurable error


def test_too_short_motion_files_are_listed_with_the_resolution_that_keeps_them(tmp_path):
    from pipeline import config, datasets

    for name, frames in (("a.npz", 90), ("b.npz", 125), ("c.npz", 500)):       # at 30 fps already
        np.savez(tmp_path / name, poses=np.zeros((frames, 156)), mocap_framerate=np.array(30.0))
    cfg = config.from_dict({"dataset": {"modality": "motion", "source": "amass", "path": str(tmp_path),
                                        "resolution": 200}})
    with pytest.raises(DataError) as e:
        datasets.prepare(cfg)
    message = str(e.value)
    assert "1 motion file(s) hold a clip of 200 frames" in message and "2 too short" in message
    assert "a.npz 90, b.npz 125, c.npz 500" in message
    assert "dataset.resolution 125 or less keeps a clip of 2 of them" in message and "\n" not in message


def test_a_decode_at_twice_the_frames_shows_twice_the_panels():
    m = MotionModality(32)
    values = torch.zeros(1, 64, 165)
    one, two = m.to_pictures(values[:, :32]), m.to_pictures(values, 2.0)
    assert two.shape[2] == 2 * one.shape[2] and two.shape[1] == one.shape[1]


def amass_folder(root, names, frames=64):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        np.savez(root / name, poses=np.zeros((frames, 156)), mocap_framerate=np.array(30.0))


def amass_cfg(root, **dataset):
    from pipeline import config

    return config.from_dict({"dataset": {"modality": "motion", "source": "amass", "path": str(root),
                                         "resolution": 16, **dataset}})


def test_smplx_body_shape_files_are_not_read_as_motions(tmp_path):
    from pipeline import datasets

    amass_folder(tmp_path, ["S1/a_stageii.npz", "S1/b_stageii.npz", "S2/c_stageii.npz", "S2/d_stageii.npz"])
    for subject in ("S1", "S2"):
        np.savez(tmp_path / subject / "female_stagei.npz", betas=np.zeros(16))
    data = datasets.prepare(amass_cfg(tmp_path))
    assert data.info["files"] == 4 and data.info["body_shape_files"] == 2 and data.info["skipped_files"] == 0


def test_two_or_three_motion_files_follow_the_split_setting(tmp_path):
    from pipeline import datasets

    amass_folder(tmp_path, ["a.npz", "b.npz", "c.npz"])
    listing = tmp_path.parent / f"{tmp_path.name}_test.txt"
    listing.write_text("a\n")
    assert datasets.prepare(amass_cfg(tmp_path, split=str(listing))).info["test_file_names"] == ["a.npz"]
    assert datasets.prepare(amass_cfg(tmp_path, split="sorted")).info["test_file_names"] == ["c.npz"]


def test_a_motion_name_in_two_subjects_must_be_named_by_its_path(tmp_path):
    from pipeline import datasets

    amass_folder(tmp_path, ["S1/Box_1_poses.npz", "S2/Box_1_poses.npz", "S3/Walk_poses.npz", "S3/Jog_poses.npz"])
    listing = tmp_path.parent / f"{tmp_path.name}_test.txt"
    listing.write_text("Box_1_poses\n")
    with pytest.raises(DataError, match=r"'Box_1_poses' matches 2 files \(S1/Box_1_poses.npz, S2/Box_1_poses.npz\)"):
        datasets.prepare(amass_cfg(tmp_path, split=str(listing)))
    listing.write_text("S2/Box_1_poses\nS3/Jog_poses.npz\n")
    assert datasets.prepare(amass_cfg(tmp_path, split=str(listing))).info["test_file_names"] == \
        ["S2/Box_1_poses.npz", "S3/Jog_poses.npz"]


def test_a_too_short_motion_file_leaves_its_own_side_of_a_sorted_split(tmp_path):
    from pipeline import datasets

    amass_folder(tmp_path, ["a.npz", "c.npz", "d.npz"])
    amass_folder(tmp_path, ["b.npz"], frames=8)                       # shorter than one 16-frame clip
    data = datasets.prepare(amass_cfg(tmp_path, split="sorted", folder={"train_count": 2}))
    assert data.info["test_file_names"] == ["c.npz", "d.npz"] and data.info["train_files"] == 1


def test_a_single_motion_file_is_told_to_add_a_second_not_a_longer_one(tmp_path):
    from pipeline import datasets

    amass_folder(tmp_path, ["only.npz"], frames=125)                  # 7 clips of 16 frames, one file
    with pytest.raises(DataError, match="add a second motion file: the split is by file"):
        datasets.prepare(amass_cfg(tmp_path))


def test_motion_files_are_found_in_any_case_and_hidden_ones_are_not_read(tmp_path):
    from pipeline import datasets

    amass_folder(tmp_path, ["S1/a.npz", "S1/b.npz", "S2/c.npz"])
    for name in ("S2/d.NPZ", "S2/SHAPE.NPZ", "S1/._a.npz", ".ipynb_checkpoints/a-checkpoint.npz",
                 "__MACOSX/S1/._b.npz"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        with open(tmp_path / name, "wb") as f:          # np.savez would add `.npz` to a `.NPZ` path
            if name.startswith("S2/"):
                np.savez(f, **({"betas": np.zeros(16)} if "SHAPE" in name else
                               {"poses": np.zeros((64, 156)), "mocap_framerate": np.array(30.0)}))
            else:
                f.write(b"\x00\x05\x16\x07 AppleDouble")  # macOS sidecars: not zips
    files, body_shapes = amass.motion_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["S1/a.npz", "S1/b.npz", "S2/c.npz", "S2/d.NPZ"]
    assert body_shapes == 1
    data = datasets.prepare(amass_cfg(tmp_path, split="sorted"))
    assert data.info["files"] == 4 and data.info["test_file_names"] == ["S2/c.npz", "S2/d.NPZ"]
