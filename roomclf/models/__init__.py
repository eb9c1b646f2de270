"""The room network in all its forms: backbones, the network, ONNX, ensembles of ONNX models, int8, pyfunc,
embeddings, their annoy neighbours and near-duplicate search; the registry and the catalogue of its versions."""
