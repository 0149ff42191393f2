"""The shape plug-in (ShapeNet / IM-NET occupancy; embedded procedural shapes).

    modality.py    ShapeModality: reading voxel and mesh files and IM-NET's HDF5, the embedded data,
                   voxel-centre coordinates, near-surface training points, rendered views,
                   reconstruction metrics (accuracy, IoU, shape PSNR), PLY files
    synthetic.py   the embedded shapes: five categories, seven part-level factors
    voxels.py      packed occupancy grids, resampling, surface band; binvox/text/mesh/HDF5 readers
    rendering.py   shaded pictures of occupancy grids (no OpenGL); marching cubes, surface points, PLY
    evaluation.py  reference surface points and generation scores (coverage, MMD, 1-NNA)
    metrics.py     Chamfer distance, coverage, MMD, 1-NNA

This file stays light: the config reads SPEC without importing torch.
"""
from ..spec import Spec

SPEC = Spec(name="shape", summary="3-D coordinates -> occupancy", sources=("synthetic", "folder", "imnet"),
            resolution_multiple=2, resolution_reason="voxels are packed 8 to a byte")
