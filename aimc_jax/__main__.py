"""`python -m aimc_jax`: the `aimc-jax` command line (`aimc_jax.cli`)."""

import sys

from aimc_jax.cli import main

if __name__ == "__main__":
    sys.exit(main())
