"""``python -m minigen ...``: the same as the ``minigen`` command."""
import sys

from .cli import main

sys.exit(main())
