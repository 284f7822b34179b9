"""Cluster mode (docs/cluster.md): streams partitioned over several sensord members on NATS
JetStream. Which member owns which partition (assign.py) and the leases that make it so
(leases.py); a partition's readings from the engine's log (feed.py); its state handed over
and checkpointed through the engine (handover.py); the alert ledger (ledger.py); and the
member's engine side that ties them together in a thread of its own (member.py). Which
partition a stream is in is the engine's subject mapping (sensord/wire/partition.py); the
daemon's side is sensord/daemon/clustered.py."""
