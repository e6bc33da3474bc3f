"""Codec wrappers for the rate-distortion benchmark: one small class per method.

`rdcodecs.fvc` (fvc, FOMM) imports torch and the codec; it is imported only when those methods run.
"""
from .base import BenchmarkError, Codec, CodedClip
from .svtav1 import SvtAv1
from .x264 import X264, X264Settings
from .x265 import X265

__all__ = ["BenchmarkError", "Codec", "CodedClip", "SvtAv1", "X264", "X264Settings", "X265"]
