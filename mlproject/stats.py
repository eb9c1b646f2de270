"""`mlflow run . -e stats`: label counts per source and class."""
from mlproject import run
from roomclf.commands.data import stats

if __name__ == "__main__":
    run(stats)
