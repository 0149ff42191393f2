"""The motion plug-in (AMASS human motion; the embedded procedural motions).

    modality.py    MotionModality: time -> 165 SMPL-X axis-angle values per frame, per-dimension
                   normalisation from the train split, reconstruction metrics (normalised MSE, PSNR,
                   joint rotation error in degrees, joint position error in mm), filmstrips and GIFs
    skeleton.py    the SMPL-X kinematic tree (55 joints) with fixed rest offsets, rotations, forward kinematics
    amass.py       AMASS .npz files: SMPL-H -> SMPL-X layout, resampling to 30 fps, 200-frame clips
    synthetic.py   the embedded motions: five actions and six style factors
    rendering.py   stick figures by forward kinematics: filmstrips and animated GIFs
    evaluation.py  generation scores on forward-kinematics joint trajectories (coverage, MMD, 1-NNA)

This file stays light: the config reads SPEC without importing torch.
"""
from ..spec import Spec

SPEC = Spec(name="motion", summary="time -> 165 SMPL-X pose values (55 joints, axis-angle)",
            sources=("synthetic", "amass"))
