"""`python -m googlenet` runs the command-line tool."""

import sys

from googlenet.cli import main

sys.exit(main())
