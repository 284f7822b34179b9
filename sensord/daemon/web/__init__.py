"""The operator's web page: what the loop keeps for it (board.py) and how it is served
(app.py, static/)."""
