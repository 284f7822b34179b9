"""Cluster mode (docs/cluster.md): streams partitioned over several sensord members on NATS
JetStream. Which member owns which partition (assign.py) and the leases that make it so
(leases.py); a partition's readings from the engine's log (feed.py); its state handed over
and checkpointed through the engine (handover.py); the alert ledger (ledger.py). The
member's engine side ties them together in a thread of its own (member.py): one record per
partition it owns (partition.py), each one's reader (reader.py), the one commit that saves
a partition (checkpoint.py), the jobs it hands the scoring loop (bridge.py) and its
connection to the engine (engine.py). Which partition a stream is in is the engine's
subject mapping (sensord/wire/partition.py); the daemon's side is
sensord/daemon/clustered.py."""
