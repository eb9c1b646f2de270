"""The room network in all its forms: backbones, the network, ONNX, int8, pyfunc, embeddings; the registry
and the catalogue of its versions."""
