"""Rules the engine itself reports: disguised content, polyglots, bounds and fail-closed coverage."""

from __future__ import annotations

from modelshield.core.rules import Category, Rule, Severity

EXTENSION_MISMATCH = Rule(
    id="SCN001",
    title="Content does not match the file name",
    severity=Severity.MEDIUM,
    category=Category.ARCHIVE,
    overview="The file's bytes are one format while its name claims another, such as a pickle named "
    "`model.safetensors` or a LiteRT model named `weights.bin`.",
    attack="Loaders such as `torch.load`, `pickle.load` and `joblib.load` ignore file names, while people, "
    "hubs and many scanners trust them. Renaming a pickle to a 'safe' extension gets it past filters that "
    "only open pickle-looking names, and past reviewers who believe the name.",
    impact="A file believed to be inert data may execute code when a loader that sniffs content opens it.",
    remediation="Treat the file as the format its content shows (modelshield already scanned it as such). "
    "Ask the publisher why the name is misleading, and rename it or drop it.",
    example="`pytorch_model.safetensors` whose first bytes are `80 04 95` (a protocol-4 pickle).",
)

POLYGLOT = Rule(
    id="SCN002",
    title="File is valid as more than one format (polyglot)",
    severity=Severity.MEDIUM,
    category=Category.ARCHIVE,
    overview="The same bytes parse as two formats, for example a pickle followed by a zip archive.",
    attack="Different tools read different views: `pickle.load` runs the leading pickle, while a scanner "
    "that sees a zip only inspects the archive members. The attacker puts the payload in the view the "
    "scanner skips.",
    impact="Code hidden in one view runs in the loader that reads that view.",
    remediation="Every view was scanned; review the findings of each. Legitimate models are not polyglots: "
    "rebuild the file with the framework's own save function.",
)

NOT_ANALYSED = Rule(
    id="SCN003",
    title="Model file could not be fully analysed",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="Part of a model-like file could not be analysed: it is truncated, malformed, uses an "
    "unsupported encoding, or the scanner hit an internal error on it.",
    attack="Attackers break a file deliberately so that scanners give up while the loader still runs "
    "what comes before the break (the 'nullifAI' models put a reverse shell before a corrupt section). "
    "A scanner that reports such a file as clean is bypassed.",
    impact="Whatever sits in the unanalysed part is unknown and may run code when loaded.",
    remediation="Do not load the file until it can be analysed. Obtain an intact copy from the publisher "
    "and compare its hash; findings made before the break are reported separately.",
)

UNRECOGNISED = Rule(
    id="SCN004",
    title="Unrecognised content under a model file name",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="The file is named like a model (for example `.pkl`, `.pt`, `.safetensors`) but its bytes are "
    "no format modelshield recognises. Unknown binary content is medium (it may be a format or encoding "
    "the scanner does not know); content positively identified as plain text or as an image (PNG, JPEG, "
    "GIF, BMP, TIFF, RIFF) is low, since the loaders of that name reject it (a pickle loader stops at the "
    "first byte that is no opcode, safetensors at a header length past the file; text pickles are "
    "recognised as pickles).",
    attack="Custom encodings, obfuscated or encrypted payloads and corrupted files all look like this; a "
    "custom loader may still decode and execute them.",
    impact="Nothing can be said about what the file does when loaded.",
    remediation="Find out which program reads this file and how; do not load it with a generic loader. "
    "For text or an image, check that the file is the one you meant to get (a web page or an error "
    "message saved in place of a download, an asset under the wrong name).",
)

LIMIT_EXCEEDED = Rule(
    id="SCN005",
    title="Resource limit exceeded (possible archive or decompression bomb)",
    severity=Severity.HIGH,
    category=Category.ARCHIVE,
    overview="Scanning stopped at a bound: nesting depth, member count, total decompressed bytes, "
    "compression ratio, or buffer size.",
    attack="Archive bombs (a few kilobytes that inflate to terabytes, or archives nested hundreds deep) "
    "exhaust the disk, memory or time of any tool that unpacks them, and can hide payloads past the "
    "point where a scanner gives up.",
    impact="Loading or unpacking the file may exhaust resources; content past the bound was not analysed.",
    remediation="Do not unpack or load the file. If it is a legitimate very large model, raise the bound in "
    "the policy's `[limits]` table and scan again.",
)

PLACEHOLDER = Rule(
    id="SCN006",
    title="Placeholder instead of the model (Git LFS pointer or empty file)",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="The file is not the model at all: a Git LFS pointer (the short text `version "
    "https://git-lfs.github.com/spec/v1`, `oid sha256:...`, `size N` that a repository cloned without "
    "git-lfs holds in place of each large file), recognised by content whatever its name and inside "
    "archives, or an empty file under a model name (an interrupted download or copy).",
    attack="Nothing in the placeholder runs, but nothing about the real model was checked either: the "
    "scan passed a stand-in. The real file is fetched later (`git lfs pull`, a loader's download, a "
    "deployment step) and loaded unscanned.",
    impact="The model that will actually be loaded was never scanned.",
    remediation="Fetch the real files and scan again: `git lfs install && git lfs pull` inside the clone, "
    "or download the model again (`huggingface-cli download ORG/NAME`); for an empty file, download it "
    "again and compare its hash with the publisher's.",
    example="`pytorch_model.bin` of 134 bytes starting `version https://git-lfs.github.com/spec/v1`.",
)

ENGINE_RULES = (EXTENSION_MISMATCH, POLYGLOT, NOT_ANALYSED, UNRECOGNISED, LIMIT_EXCEEDED, PLACEHOLDER)
