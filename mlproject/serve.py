"""`mlflow run . -e serve`: serve the registered champion over HTTP (runs until stopped)."""
from mlproject import run
from roomclf.commands.serve import serve

if __name__ == "__main__":
    run(serve)
