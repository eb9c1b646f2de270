"""`mlflow run . -e distill`: train a cheaper student on the champion's predictions, register and gate it."""
from mlproject import run
from roomclf.commands.train import distill

if __name__ == "__main__":
    run(distill)
