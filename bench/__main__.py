"""`python -m bench` is `scripts/bench`."""

import sys

from bench.run import main

sys.exit(main())
