"""``python -m simulators.demo`` (the same as ``python -m bot demo``)."""

import sys

from simulators.demo import main

sys.exit(main())
