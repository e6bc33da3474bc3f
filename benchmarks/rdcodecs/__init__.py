"""Codec wrappers for the rate-distortion benchmark: one small class per method.

`rdcodecs.fvc` (fvc, FOMM) imports torch and the codec; it is imported only when those methods run.
"""
from .base import BenchmarkError, Codec, CodedClip
from .x264 import X264, X264Settings

__all__ = ["BenchmarkError", "Codec", "CodedClip", "X264", "X264Settings"]
