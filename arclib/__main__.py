"""``python -m arclib``: see ``arclib.cli``."""

import sys

from arclib.cli import main

sys.exit(main())
