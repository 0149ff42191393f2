"""The radiance-field plug-in (SRN-Cars; the embedded procedural cars).

    modality.py    NerfModality: scenes stored as posed views, rays as coordinates, the Stage-1 loss on
                   rendered pixels (the LoE is queried at points along each ray and alpha-composited),
                   novel-view PSNR / SSIM on held-out views, turntable pictures and GIFs
    rendering.py   cameras and rays (SRN's OpenCV camera-to-world poses), volume rendering, RadianceField
    synthetic.py   the embedded cars: boxes and wheels with seven ground-truth factors, ray-cast exactly
    srn.py         SRN-Cars folders: <split>/<scene>/rgb/*.png, pose/*.txt, intrinsics.txt
    evaluation.py  generation scores: FID of rendered views against the test scenes' held-out views

This file stays light: the config reads SPEC without importing torch.
"""
from ..spec import Spec

# dataset.nerf.colour: its choices and its one default (the config, the plug-in and the renderer read these).
COLOURS = ("sigmoid", "raw")
COLOUR = "raw"

SPEC = Spec(name="nerf", summary="3-D points -> density and RGB, seen through volume rendering",
            sources=("synthetic", "srn"), dataset_args=("views", "nerf.colour", "nerf.near", "nerf.far", "nerf.up",
                          "nerf.scale"))
