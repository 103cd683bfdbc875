#!/usr/bin/env bash
# Refuses, clearly, a Python older than 3.11 before a virtual environment is made with it.
set -euo pipefail
py="${1:-python3}"
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "cifa: Python 3.11 or newer is needed; '$py' is $("$py" --version 2>&1 || echo missing)." >&2
    echo "cifa: run 'make PYTHON=python3.11 ...' with a newer interpreter." >&2
    exit 1
fi
