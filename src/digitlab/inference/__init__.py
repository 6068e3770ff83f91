"""Using a trained model: loading it safely, predicting, exporting to other runtimes,
quantising, and averaging several models into an ensemble."""
