"""`python -m modelshield`."""

import sys

from modelshield.cli import main

sys.exit(main())
