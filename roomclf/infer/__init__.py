"""infer-all: the shared batch functions, the Ray engine, the output folder and listing rows."""
