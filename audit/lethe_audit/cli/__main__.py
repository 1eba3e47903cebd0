"""``python -m lethe_audit.cli``: the same as the ``lethe-audit`` script."""

from lethe_audit.cli import main

if __name__ == "__main__":
    main(prog_name="lethe-audit")
