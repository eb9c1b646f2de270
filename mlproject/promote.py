"""`mlflow run . -e promote`: move an alias (champion) to a version, every form of its run."""
from mlproject import run
from roomclf.commands.models import promote

if __name__ == "__main__":
    run(promote)
