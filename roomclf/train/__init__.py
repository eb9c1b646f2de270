"""Training the room classifier the fast.ai way: data from the label store, a DataBlock through the shared
photo loader, transfer learning with the body frozen, then discriminative fine-tuning.

The steps are separate functions that take data and return data, a module per idea:
``config`` (every knob in ``Recipe``, the run's ``TrainConfig`` and its check, ``TrainingError``),
``data`` (``select_data``: label store -> checked train/valid lists, or a one-line ``TrainingError`` before
anything is trained; ``drop_broken`` and ``drop_leaks`` clean the lists, counting what went),
``learner`` (``build_dls`` and ``make_learner``: fastai objects; ``fit``: the training schedule) and
``predict`` (validation probabilities, pooled features). Attribute heads live in ``attributes``; tracking,
export and registration in ``report``, ``roomclf.models.onnx_file`` and ``gate``; ``run`` ties them
together, ``ensemble`` trains one run per backbone and combines them.
"""
