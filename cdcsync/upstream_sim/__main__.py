"""``python -m cdcsync.upstream_sim``: the reference platform without the main CLI (tests, runner)."""

from cdcsync.upstream_sim.cli import upstream_sim_command

if __name__ == "__main__":
    upstream_sim_command(prog_name="cdcsync upstream-sim")
