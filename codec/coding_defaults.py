"""Encoder defaults the CLI shows too, in a torch-free module so `fvc --help` starts fast."""

# Default refresh threshold. With the image renderer (warp128) luma PSNR at the 128² analysis size
# tracks LPIPS as well as at 32² or 64² (rank correlation 0.92 on the held-out cache clips), and
# frames cross LPIPS 0.2 near 16 dB (benchmarks/refresh_proxy.py). A sharp warp a pixel off scores
# low PSNR yet looks right, hence far below the 22 dB the blurry feature renderers needed.
DEFAULT_REFRESH_DB = 16.0
