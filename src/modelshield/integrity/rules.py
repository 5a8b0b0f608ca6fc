"""Rules reported when a scan checks model signatures (`scan --public-key`, or a policy's `public-key`)."""

from __future__ import annotations

from modelshield.core.rules import Category, Rule, Severity

SIGNATURE_INVALID = Rule(
    id="INT001",
    title="Model signature verification failed",
    severity=Severity.HIGH,
    category=Category.INTEGRITY,
    overview="The model has an OpenSSF model signature, but it does not verify against the trusted key: a "
    "file differs from the signed manifest, a signed file is missing, a file was added, the signature was "
    "made with another key, or the signature file itself is damaged or altered.",
    attack="Attackers who can write to a model's storage (a compromised hub account, mirror, cache, "
    "bucket or build step) swap a weight file for one carrying a payload, or add a file a loader picks up "
    "(a pickle next to safetensors weights, a custom code module, a tokenizer template). The publisher's "
    "signature covers the hash of every file, so any such change breaks it; re-signing needs the private key.",
    impact="The files are not the ones the publisher signed. Whatever was changed or added may run code "
    "when the model is loaded, or silently change the model's behaviour (a backdoored or poisoned model).",
    remediation="Do not load the model. Obtain it again from the publisher and verify it with "
    "`modelshield verify PATH --public-key KEY`; the finding names each file that differs. If you changed the "
    "files yourself on purpose, have the publisher (or your own release process) sign them again.",
    example="`config.json` edited after signing: `config.json was modified after signing`.",
)

SIGNATURE_MISSING = Rule(
    id="INT002",
    title="Model signature missing",
    severity=Severity.HIGH,
    category=Category.INTEGRITY,
    overview="No signature file was found for the model (by default `model.sig` inside a model folder, or "
    "`NAME.sig` next to a single-file model). It is reported at high severity when the policy sets "
    "`require-signature = true`, and as information otherwise.",
    attack="Removing the signature is the easiest way to defeat signature checks that only run when a "
    "signature is present: the tampered model then looks merely unsigned.",
    impact="Nothing proves that the files are the ones the publisher released; any of them may have been "
    "replaced or added on the way.",
    remediation="Obtain the signature from the publisher (or sign your own releases with `modelshield sign "
    "PATH --private-key KEY`) and pass its location with `--signature` if it is not in the default place.",
)

INTEGRITY_RULES = (SIGNATURE_INVALID, SIGNATURE_MISSING)
