"""``python -m bridge_app``: the same as the ``ddb-kafka-bridge`` command."""

import sys

from bridge_app.cli import main

sys.exit(main())
