"""`mlflow run . -e infer`: run the registered ONNX model over the corpus (roomclf infer-all)."""
from mlproject import run
from roomclf.commands.infer import infer_all

if __name__ == "__main__":
    run(infer_all)
