"""The mirrored look: a query read flipped left to right, for copies that were mirrored.

Verification fits a rotation, scale and shear (an affine map whose determinant is positive; a
reflection is rejected as degenerate), and the backbone's local descriptors are not mirror
invariant, so a mirrored copy verifies with 0 inliers. Described from its flipped pixels, the
query matches its mirrored copy as an upright query matches an upright copy; the outcome is then
mapped back to the query's own pixels (`unmirror`), so that inliers, the matrix and boxes read
as for any other look.
"""

from __future__ import annotations

import numpy as np

from lookalike.search.verify import Verified


def mirrored(image: np.ndarray) -> np.ndarray:
    """`image: (H, W, C)` flipped left to right, C-contiguous."""
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W, C), got {image.shape}")
    return np.ascontiguousarray(image[:, ::-1])


def flip_matrix(width: float) -> np.ndarray:
    """`(3, 3)` float64: a point of an image `width` pixels wide -> the same point of the image
    flipped left to right (continuous pixel coordinates: x -> width - x). Its own inverse."""
    return np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def unmirror(verified: Verified, width: float) -> Verified:
    """The outcome of verifying a query flipped left to right (its positions in the flipped
    query's pixels) as one in the query's own pixels, `width` pixels wide: query positions
    flipped back, and the matrix composed with the flip (it maps a point of the query to its
    place in the image, a reflection: its determinant is negative)."""
    if verified.matrix is None:
        return verified
    query_xy = np.asarray(verified.query_xy, np.float32).copy()
    query_xy[:, 0] = np.float32(width) - query_xy[:, 0]
    matrix = verified.matrix @ flip_matrix(width)
    return Verified(verified.inliers, matrix, query_xy, verified.image_xy)
