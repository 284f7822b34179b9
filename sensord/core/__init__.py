"""The core: samples in, scores and alert events out. No I/O on the scoring path, no clock,
no globals: the daemon and ``sensord replay`` drive it alike.

bundle (the model bundle and its checks), engine (one batched recurrent step), state (a slot
per stream), wave (one step per stream at a time), detect (scoring), alert (deciding),
nodata (silence), swap (state across bundles), pipeline (all of it, per micro-batch).
"""
