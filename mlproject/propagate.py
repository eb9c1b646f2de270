"""`mlflow run . -e propagate`: propagate manual labels to similar photos, measured."""
from mlproject import run
from roomclf.commands.propagate import propagate

if __name__ == "__main__":
    run(propagate)
