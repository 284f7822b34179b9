"""The offline half: fit an LSTM on a history CSV and write a verified bundle.

Only this package imports torch and onnx (the ``train`` extra). Modules: ``data`` (split and
scale), ``model`` (the network and its one-step form), ``fit`` (the training loop),
``calibrate`` (detector calibration on validation errors), ``export`` (ONNX with a parity
check) and ``train`` (the whole ``sensord train`` job).
"""
