"""Every figure digitlab draws. Each function takes data and a path, writes a PNG and closes it.

One module per family (training, evaluation, exploration), sharing `figure_to_png`.
"""
