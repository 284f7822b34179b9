"""What makes a crash cost nothing: atomic files (files), framed append-only records
(framing), the readings journal, the alert outbox, state snapshots, and the store that
restores all three at start (store). Failpoints let the crash tests kill it on purpose.
"""
