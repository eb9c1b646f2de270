"""`mlflow run . -e models`: registered versions, their metrics, aliases and attribute tags."""
from mlproject import run
from roomclf.commands.models import models

if __name__ == "__main__":
    run(models)
