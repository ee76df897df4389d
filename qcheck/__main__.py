"""``python -m qcheck COMMAND``: what qcheck does outside a pytest run.

    python -m qcheck merge OUT.json SHARD1.json SHARD2.json ... [--html R.html] [--junit J.xml]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

_USAGE = "usage: python -m qcheck merge OUT.json IN.json [IN.json ...] [--html PATH] [--csv DIR] [--junit PATH] " \
         "[--costs FILE]"


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "merge":
        from qcheck.merge import main as merge

        return merge(rest)
    print(f"python -m qcheck: unknown command {command!r}\n{_USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
