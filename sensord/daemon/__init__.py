"""``sensord run``: the online half. assembly builds the parts and the loop (loop) runs them.
Readings come from a source and sensord's messages leave by an outlet (the protocols and
the messages in transport; on paho in mqtt and mqttbuffer; from a cluster member's
partitions in clustered). A reading goes down one pipeline of stages (stages): routed and
decoded (ingest), held after a gap (reorder), scored in its route's core pipeline (routes),
its alerts and states published (publisher, discovery for Home Assistant) and delivered
(delivery), then acknowledged. Operators' verdicts go to the desk (desk); the figures to
stats, metrics, histogram, health and notify (systemd); the web page is in web.
"""
