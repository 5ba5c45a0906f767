import sys

from ebsd_core.cli import main

sys.exit(main())
