"""MLproject entry points: each module is one call into roomclf (``mlflow run . -e NAME``).

MLflow passes parameters as strings; an empty string means "use roomclf's default".
"""
import sys


def run(command) -> None:
    """Run a roomclf command with sys.argv, dropping options given as empty strings.

    It goes through the ``roomclf`` group, so bad input is one line, as on the command line.
    """
    from roomclf.cli import main

    args, argv = [], sys.argv[1:]
    i = 0
    while i < len(argv):
        if argv[i].startswith("--") and "=" not in argv[i] and i + 1 < len(argv) and argv[i + 1] == "":
            i += 2
            continue
        args.append(argv[i])
        i += 1
    main.main(args=[command.name, *args], prog_name="roomclf")
