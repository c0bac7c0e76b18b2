"""Coarser render meshes for small images: vertex clustering on a grid.

Software rasterisers pay per triangle: OGBench's UR5e + Robotiq meshes have 185k faces, which
make most of a 64 px frame's time through llvmpipe (README, Speed) although most faces are
smaller than a hundredth of a pixel. Snapping every vertex to the first vertex of its
`cell`-sized grid cube and dropping the faces that collapse keeps the silhouettes to within one
cell (6 mm is a fraction of a 64 px pixel at OGBench's camera distance) and removes ~90% of the
faces.

Only a copy of the model is changed, and only what the renderer uploads (faces and their
normal/texture indices): physics, collision meshes and the caller's model stay untouched.
"""
from __future__ import annotations

import copy

import mujoco
import numpy as np


def _cluster_faces(vert: np.ndarray, face: np.ndarray, cell: float) -> np.ndarray:
    """Indices of the faces kept after clustering, and the faces rewritten onto cluster vertices."""
    _, first, inverse = np.unique(np.floor(vert / cell).astype(np.int64), axis=0, return_index=True,
                                  return_inverse=True)
    snapped = first[inverse.ravel()][face]  # each corner -> the first vertex of its cell
    distinct = ((snapped[:, 0] != snapped[:, 1]) & (snapped[:, 1] != snapped[:, 2])
                & (snapped[:, 0] != snapped[:, 2]))
    # Two faces on the same three clusters draw the same triangle: keep the first (its winding).
    _, unique = np.unique(np.sort(snapped[distinct], axis=1), axis=0, return_index=True)
    keep = np.flatnonzero(distinct)[np.sort(unique)]
    return keep, snapped[keep]


def simplified_render_model(model: mujoco.MjModel, cell: float) -> mujoco.MjModel:
    """A copy of `model` whose meshes draw with vertices clustered on a `cell`-metre grid.

    Each mesh keeps its vertex array; its first faces are overwritten with the kept ones and
    `mesh_facenum` shrinks to their count, so every address stays valid. Use the copy only to
    build a renderer (`mujoco.Renderer(copy)`); scenes are still filled from the live model's data.
    """
    if not (isinstance(cell, (int, float)) and np.isfinite(cell) and cell > 0):
        raise ValueError(f"cell: expected a positive finite number of metres, got {cell!r}")
    out = copy.copy(model)  # mj_copyModel: a deep copy
    for i in range(out.nmesh):
        va, vn = out.mesh_vertadr[i], out.mesh_vertnum[i]
        fa, fn = out.mesh_faceadr[i], out.mesh_facenum[i]
        keep, faces = _cluster_faces(out.mesh_vert[va:va + vn], out.mesh_face[fa:fa + fn], cell)
        n = len(keep)
        if n == 0:  # a mesh smaller than one cell: keep it whole rather than let it vanish
            continue
        out.mesh_face[fa:fa + n] = faces
        out.mesh_facenormal[fa:fa + n] = out.mesh_facenormal[fa:fa + fn][keep]
        if out.mesh_texcoordadr[i] >= 0:
            out.mesh_facetexcoord[fa:fa + n] = out.mesh_facetexcoord[fa:fa + fn][keep]
        out.mesh_facenum[i] = n
    return out
