"""The ``sensord`` command, the only top of the house: every command (main, models), the
demo (demo: live and offline; livedemo), the simulator (simulate) and a local broker (broker).
"""
