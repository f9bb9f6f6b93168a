import sys

from flowfm.cli import main

sys.exit(main())
