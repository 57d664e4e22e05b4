"""The dashboard's static files (HTML, CSS, ES modules), served from memory by web.routes.ui."""
