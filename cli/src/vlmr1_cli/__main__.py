"""`python -m vlmr1_cli` is `vlmr1` (for environments without the console script)."""

import sys

from vlmr1_cli import main

sys.exit(main())
