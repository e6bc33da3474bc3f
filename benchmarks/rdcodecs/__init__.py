"""Codec wrappers for the rate-distortion benchmark: one small class per method."""
from .base import BenchmarkError, Codec, CodedClip
from .x264 import X264, X264Settings

__all__ = ["BenchmarkError", "Codec", "CodedClip", "X264", "X264Settings"]
