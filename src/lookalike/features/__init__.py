"""Descriptors read off a CNN's feature maps: local (positions, scales, strengths) and global."""

from lookalike.features.extract import Extractor, ImageFeatures
from lookalike.features.local import LocalFeatures

__all__ = ["Extractor", "ImageFeatures", "LocalFeatures"]
