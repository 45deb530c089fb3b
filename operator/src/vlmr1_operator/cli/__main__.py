"""`python -m vlmr1_operator.cli` is `vlmr1` (for environments without the console script)."""

import sys

from vlmr1_operator.cli import main

sys.exit(main())
