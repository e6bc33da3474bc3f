"""Numbers of the benchmark protocol that several scripts share: one home for each (torch-free)."""

# The first 10 s of every clip at 25 fps: rd_curve's bench512 protocol, which the other scripts follow.
DEFAULT_FRAMES = 250
