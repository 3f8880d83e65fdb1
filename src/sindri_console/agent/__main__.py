"""``python -m sindri_console.agent`` runs the agent like ``sindri-console agent``."""

import sys

from sindri_console.agent.main import main

sys.exit(main())
