"""``python -m fastconv.lenet``: the fastconv-lenet command."""

import sys

from .cli import main

sys.exit(main())
