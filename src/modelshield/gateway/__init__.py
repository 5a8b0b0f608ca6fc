"""The gateway: a Hub-compatible proxy that scans every model revision before serving it.

Developers point `HF_ENDPOINT` at it and use huggingface_hub as before; the gateway fetches each
revision from the upstream Hub into its store, scans it whole with `modelshield.scan`, keeps the
verdict in its database and serves only what the policy allows. Started by `modelshield serve`
(the `gateway` extra); nothing heavy is imported here, so the scanner's start-up does not pay for it.
"""
