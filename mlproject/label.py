"""`mlflow run . -e label`: prelabel the batch, then serve the labelling app."""
from mlproject import run
from roomclf.commands.label import label

if __name__ == "__main__":
    run(label)
