"""`python -m modelshield`."""

import sys

from modelshield.cli import entry

sys.exit(entry())
