"""`mlflow run . -e train`: train, track, register and gate the room classifier."""
from mlproject import run
from roomclf.commands.train import train

if __name__ == "__main__":
    run(train)
