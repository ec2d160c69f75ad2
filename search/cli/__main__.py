"""`python -m search.cli`: the `resnet-search` command."""

import sys

from . import main

sys.exit(main())
