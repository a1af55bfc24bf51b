"""``python -m swarm``: the ``swarm`` command (``[project.scripts]`` in pyproject.toml), where the
console script is not on ``PATH`` (``python -m swarm doctor`` said "No module named swarm.__main__")."""

import sys

from swarm.cli import main

if __name__ == "__main__":
    sys.exit(main())
