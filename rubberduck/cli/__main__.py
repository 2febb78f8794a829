"""``python -m rubberduck.cli``: the same as the ``rubberduck`` command."""

import sys

from rubberduck.cli import main

sys.exit(main())
