"""``python -m demo <command>``: see ``python -m demo --help``."""

import sys

try:
    from demo.cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load: no traceback for that
    sys.exit(130)

sys.exit(main())
