"""Label propagation: annoy neighbours, the vote that lends labels, the run and its report."""
