"""`mlflow run . -e prelabel`: suggest a class for every photo of a batch."""
from mlproject import run
from roomclf.commands.prelabel import prelabel

if __name__ == "__main__":
    run(prelabel)
