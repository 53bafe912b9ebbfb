"""Dashboard pages, one module each; dashboard/app.py routes to them."""
