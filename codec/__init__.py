"""fvc: a neural talking-head video codec (face-vid2vid keypoints + H.264 keyframes)."""

__version__ = "0.1.0"
