"""`mlflow run . -e predict`: classify a few photos with a registered model."""
from mlproject import run
from roomclf.commands.predict import predict

if __name__ == "__main__":
    run(predict)
