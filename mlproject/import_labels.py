"""`mlflow run . -e import-labels`: store labels from a CSV or a folder-per-class tree."""
from mlproject import run
from roomclf.commands.data import import_labels

if __name__ == "__main__":
    run(import_labels)
