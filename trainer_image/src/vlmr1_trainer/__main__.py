"""`python -m vlmr1_trainer --config FILE`: the trainer image's entry point (see worker.py)."""

import sys

from vlmr1_trainer.worker import main

# Guarded: the reward scoring pool's processes import the main module again, under another name.
if __name__ == "__main__":
    sys.exit(main())
