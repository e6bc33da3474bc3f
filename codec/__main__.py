"""`python -m codec ARGS` runs `fvc ARGS`, for a checkout without the installed console script."""
import sys

from .cli import main

sys.exit(main())
