"""The labelling web app: `roomclf label` (FastAPI app in app.py, page in static/)."""
