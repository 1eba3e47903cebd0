from lethe_audit.cli import main

main(prog_name="lethe-audit")
