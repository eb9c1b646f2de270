"""`mlflow run . -e export-labels`: write the label store's labels to a CSV."""
from mlproject import run
from roomclf.commands.data import export_labels

if __name__ == "__main__":
    run(export_labels)
