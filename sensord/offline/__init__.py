"""Working with files instead of MQTT: sensor history CSVs (series), generated series with
known anomalies (synthetic), replaying a CSV through the core (replay) with its picture
(plot) and text (report), and the NAB scorer (nabscore).
"""
