"""Cluster mode (issue 17, in progress): streams partitioned over several sensord members
on NATS JetStream. What is here: which partition a stream is in (partition.py, as the
engine's own subject mapping computes it), which member should own which partition
(assign.py), the leases that make it so (leases.py), and a partition's state handed over
through the engine (handover.py). Not yet wired into ``sensord run``."""
