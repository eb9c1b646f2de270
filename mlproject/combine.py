"""`mlflow run . -e combine`: average several models into one ONNX model (an ensemble)."""
from mlproject import run
from roomclf.commands.models import combine

if __name__ == "__main__":
    run(combine)
