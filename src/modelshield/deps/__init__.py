"""Model dependencies: what a model loads besides itself (other models, other code), resolved offline
and scanned transitively. The format analysers record dependencies in `Finding.details["dependency"]`."""
