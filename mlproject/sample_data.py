"""`mlflow run . -e sample-data`: fetch the sample corpus (verified)."""
from mlproject import run
from roomclf.commands.data import sample_data

if __name__ == "__main__":
    run(sample_data)
