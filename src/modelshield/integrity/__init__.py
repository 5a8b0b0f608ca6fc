"""Model integrity: per-file SHA-256 manifests, and OpenSSF model signatures (sign, verify, check in scans)."""
