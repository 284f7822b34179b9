"""Running sensord for months: recording readings and alerts (recording), reading them back
as history for retraining (history), operators' verdicts (feedback) and each route's model
versions with their decision log (models).
"""
