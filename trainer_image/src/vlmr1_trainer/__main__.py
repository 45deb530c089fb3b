"""`python -m vlmr1_trainer --config FILE`: the trainer image's entry point (see worker.py)."""

import sys

from vlmr1_trainer.worker import main

sys.exit(main())
