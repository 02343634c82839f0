"""What can be read as an image: :data:`ImageSource`."""

from __future__ import annotations

import os
from typing import TypeAlias

import numpy as np
from PIL import Image

ImageSource: TypeAlias = str | os.PathLike[str] | bytes | Image.Image | np.ndarray
"""A file path, encoded file bytes, a PIL image, or a uint8 array (H, W), (H, W, 3) or
(H, W, 4): what `load_image` and `source_size` take."""
