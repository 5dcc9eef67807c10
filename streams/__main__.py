"""``python -m streams`` is the ``facestream`` command."""

import sys

from streams.cli import main

sys.exit(main())
