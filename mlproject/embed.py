"""`mlflow run . -e embed`: compute the embeddings of some batches."""
from mlproject import run
from roomclf.commands.data import embed

if __name__ == "__main__":
    run(embed)
