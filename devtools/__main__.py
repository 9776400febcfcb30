"""``python -m devtools serve|send``: the local demo, outside the shipped gateway."""
from devtools.cli import demo_group

demo_group(prog_name="python -m devtools")
