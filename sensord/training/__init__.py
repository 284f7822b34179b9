"""The offline half: fit an LSTM on a history CSV and write a verified bundle.

Only this package imports torch and onnx (the ``train`` extra). Modules: ``data`` (split and
scale), ``model`` (the network and its one-step form), ``fit`` (the training loop),
``calibrate`` (detector calibration on validation errors), ``export`` (ONNX with a parity
check), ``train`` (the whole ``sensord train`` job) and ``retrain`` (a candidate per route,
judged against the live model by ``judge``). ``options`` holds the jobs' options and
defaults without torch, so the CLI reads its defaults there.
"""
