"""Labels: the store, prelabelling (champion or zero-shot), the queue and the labelling app."""
