"""Archive rules (ARC...): structural tricks in zip, tar and 7z containers that fool scanners or unpackers."""

from __future__ import annotations

from modelshield.core.rules import Category, Rule, Severity

PATH_ESCAPE = Rule(
    id="ARC001",
    title="Archive member name escapes the extraction folder",
    severity=Severity.HIGH,
    category=Category.ARCHIVE,
    overview="A member is named with `..` components, an absolute path, a Windows drive letter or backslash "
    "separators, so that unpacking it writes outside the folder it is unpacked into ('zip slip').",
    attack="Model bundles are often unpacked with tools that trust member names (`tar -xf`, "
    "`zipfile.extractall` in older Pythons, hand-written loops, model-serving archive loaders). A member named "
    "`../../home/user/.bashrc` or `C:\\Users\\x\\AppData\\...\\Startup\\run.bat` overwrites a file that a "
    "shell or the operating system later executes. Backslashes are a path separator on Windows only, so "
    "`..\\..\\x` passes checks written for POSIX paths.",
    impact="Unpacking the archive can overwrite configuration, scripts or Python modules on the host, which "
    "leads to code execution the next time they are used, independent of the model itself.",
    remediation="Do not unpack the archive. If you must, use an extractor that rejects such names (Python 3.12+ "
    "`tarfile` with `filter='data'`) and ask the publisher to repackage it with relative names.",
    example="`model.tar` containing `../../../../etc/cron.d/job` next to `pytorch_model.bin`.",
)

LINK_ESCAPE = Rule(
    id="ARC002",
    title="Archive link member points outside the archive",
    severity=Severity.HIGH,
    category=Category.ARCHIVE,
    overview="A symbolic or hard link member targets an absolute path or climbs out of the archive with `..`.",
    attack="An unpacker first creates the link (for example `weights -> /home/user/.ssh`), then writes a "
    "later member through it (`weights/authorized_keys`), landing outside the target folder even though "
    "no single member name contains `..`. A loader that follows the link may also read arbitrary host files "
    "as model data.",
    impact="Files outside the extraction folder can be overwritten or disclosed when the archive is unpacked.",
    remediation="Do not unpack the archive with a tool that creates links; model archives have no reason to "
    "contain links to outside paths. Ask for a repackaged bundle without links.",
    example="A zip member `config` whose Unix mode is `S_IFLNK` and whose content is `/etc/passwd`.",
)

SPECIAL_FILE = Rule(
    id="ARC003",
    title="Archive contains a device file or FIFO",
    severity=Severity.MEDIUM,
    category=Category.ARCHIVE,
    overview="A tar member is a character device, block device or named pipe rather than a regular file.",
    attack="When unpacked as root, a device member such as a copy of `/dev/sda` or `/dev/mem` gives raw "
    "access to host storage or memory through a path inside the extraction folder; a FIFO makes a loader "
    "that opens it block forever.",
    impact="Privileged unpacking exposes host devices; unprivileged loaders can hang.",
    remediation="Unpack model archives as an unprivileged user with special files disabled, or reject the "
    "archive. Legitimate model bundles contain only regular files and folders.",
)

DUPLICATE_NAME = Rule(
    id="ARC004",
    title="Archive contains several members with the same name",
    severity=Severity.HIGH,
    category=Category.ARCHIVE,
    overview="Two or more members share one name. Tools disagree about which copy a name refers to: Python's "
    "`zipfile` returns the last one, others return the first, and extractors overwrite one with the other.",
    attack="The attacker stores a malicious `archive/data.pkl` and a benign one under the same name. A scanner "
    "that looks members up by name analyses the benign copy, while the loader (which may pick the other copy) "
    "runs the malicious one. Each copy is reported here as `name`, `name[#2]`, ... in archive order.",
    impact="A payload is hidden behind a clean-looking twin; which copy runs depends on the loader.",
    remediation="Reject the archive; no tool writes duplicate names by accident. Review the findings of every "
    "copy (modelshield scanned all of them).",
    example="`model.pt` with two central-directory entries `model/data.pkl`, the first calling `os.system`.",
)

NAME_MISMATCH = Rule(
    id="ARC005",
    title="Zip local header name differs from the central directory name",
    severity=Severity.HIGH,
    category=Category.ARCHIVE,
    overview="A zip member's local file header carries a different file name from its central directory "
    "entry (CVE-2025-1944).",
    attack="Python's `zipfile` raises 'File name in directory and header differ' and scanners built on it give "
    "up on the archive, while PyTorch's miniz reader ignores the local name and loads the member anyway. The "
    "attacker edits one header so that the scanner stops and the loader runs the pickle.",
    impact="The payload reaches `torch.load` past any scanner that uses the standard library's zip reader.",
    remediation="Do not load the file. Re-save the model with the framework's own writer from a trusted copy.",
)

HEADER_MISMATCH = Rule(
    id="ARC006",
    title="Zip member headers disagree about size or compression",
    severity=Severity.MEDIUM,
    category=Category.ARCHIVE,
    overview="The local header, the central directory and the member's actual data disagree about the "
    "compression method or the compressed or uncompressed size.",
    attack="Readers pick different fields: some trust the central directory, some the local header, some "
    "decode until the stream ends. A size that lies makes one reader see a short, benign member and another a "
    "longer one with a payload, and hides how much data a bomb expands to.",
    impact="Different tools see different content for the same member; limits based on declared sizes fail.",
    remediation="Treat the archive as tampered with; obtain a freshly written copy.",
)

BAD_CRC = Rule(
    id="ARC007",
    title="Zip member CRC-32 does not match its data",
    severity=Severity.MEDIUM,
    category=Category.ARCHIVE,
    overview="The CRC-32 stored for a member differs from the CRC of its data (CVE-2025-10156).",
    attack="Python's `zipfile` raises 'Bad CRC-32' when it reads such a member, so scanners built on it skip the "
    "member or the whole archive. PyTorch does not check CRCs and loads the member normally. Corrupting one "
    "CRC field is enough to blind those scanners.",
    impact="A payload in the member reaches the loader unscanned by tools that trust `zipfile`.",
    remediation="Do not load the file; obtain an intact copy and compare its hash with the publisher's. "
    "modelshield verifies CRCs of members up to 1 MiB stored or 16 MiB compressed; larger members are "
    "scanned but not CRC-checked.",
)

FLAGGED_MEMBER = Rule(
    id="ARC008",
    title="Archive member marked as encrypted or with unusual flag bits",
    severity=Severity.MEDIUM,
    category=Category.ARCHIVE,
    overview="A zip member sets the encryption (0x1), patched-data (0x20) or strong-encryption (0x40) general "
    "purpose flags or central directory encryption (0x2000), or a 7z archive is password protected.",
    attack="For zip, the bits are a lie aimed at scanners (CVE-2025-1945): Python's `zipfile` refuses such "
    "members while PyTorch ignores the flags and reads the bytes as plain data. modelshield decodes the member "
    "by its compression method anyway. For 7z, real encryption hides the content from any scanner, and the "
    "recipient is told the password elsewhere.",
    impact="Zip: the payload reaches the loader past `zipfile`-based scanners. 7z: the content is unknown.",
    remediation="Zip: do not load the file; model writers never set these flags. Encrypted 7z: decrypt it in an "
    "isolated environment and scan the content, or reject it.",
)

PREPENDED_DATA = Rule(
    id="ARC009",
    title="Data before the start of the archive",
    severity=Severity.MEDIUM,
    category=Category.ARCHIVE,
    overview="Bytes precede the first zip member. Zip readers locate members from the end of the file, so "
    "anything can sit in front of a valid archive.",
    attack="A pickle placed in front of a zip (a pickle+zip polyglot) is what `pickle.load` and `joblib.load` "
    "execute, while zip-aware scanners look only at the archive members. Self-extracting archives use the "
    "same layout for an executable stub.",
    impact="Code in the prefix runs in loaders that read the file from the start.",
    remediation="Model archives start with their first member. Reject the file, or review the findings for the "
    "prefix (modelshield scanned it as `<prefix>` unless the whole file was already recognised as another "
    "format).",
    example="`cat evil.pkl model.pt > model.pt` keeps `torch.load` working and makes `pickle.load` run the payload.",
)

TRAILING_DATA = Rule(
    id="ARC010",
    title="Data after the end of the archive",
    severity=Severity.LOW,
    category=Category.ARCHIVE,
    overview="Bytes follow the zip end-of-central-directory record and its comment.",
    attack="Trailing bytes are ignored by most readers but may be read by a custom loader, and they can "
    "confuse readers that search backwards for the end record into using a forged one.",
    impact="Content that some tools ignore and others may parse; usually a sign of tampering or concatenation.",
    remediation="Rebuild the archive with a standard writer; find out what appended the data.",
)

HIDDEN_MEMBER = Rule(
    id="ARC011",
    title="Zip member present only as a local header",
    severity=Severity.HIGH,
    category=Category.ARCHIVE,
    overview="A local file header and its data sit in the archive body without a central directory entry.",
    attack="Readers that walk local headers sequentially (streaming unzip, some recovery and Java tools) see a "
    "member that directory-based readers and scanners never list, so a payload can be delivered to one tool "
    "and hidden from another.",
    impact="A member invisible to most scanners may be extracted or loaded by a streaming reader.",
    remediation="Reject the archive; no standard writer leaves unlisted members. modelshield scanned the hidden "
    "member: review its findings.",
)

BROKEN_DIRECTORY = Rule(
    id="ARC012",
    title="Zip central directory missing or corrupt",
    severity=Severity.MEDIUM,
    category=Category.ARCHIVE,
    overview="The end-of-central-directory record is missing, or the central directory it points to cannot be "
    "parsed completely.",
    attack="Directory-based readers, including the scanners built on them, reject the file, while streaming "
    "readers and repair tools still recover the members from their local headers, payload included.",
    impact="The archive cannot be analysed the way a strict reader sees it; modelshield fell back to walking "
    "the local headers and scanned what it found.",
    remediation="Obtain an intact copy; a truncated download or deliberate corruption both look like this.",
)

OVERLAPPING_MEMBERS = Rule(
    id="ARC013",
    title="Zip members overlap",
    severity=Severity.HIGH,
    category=Category.ARCHIVE,
    overview="Two members' byte ranges in the archive overlap, so the same bytes belong to both.",
    attack="Overlapping entries are the core of non-recursive zip bombs (many central entries pointing into one "
    "highly compressed kernel, each expanding to gigabytes) and let two names present one payload.",
    impact="Unpacking can exhaust disk or memory; one payload appears under several names.",
    remediation="Do not unpack the archive. Legitimate writers never produce overlapping members.",
)

ARCHIVE_RULES = (
    PATH_ESCAPE,
    LINK_ESCAPE,
    SPECIAL_FILE,
    DUPLICATE_NAME,
    NAME_MISMATCH,
    HEADER_MISMATCH,
    BAD_CRC,
    FLAGGED_MEMBER,
    PREPENDED_DATA,
    TRAILING_DATA,
    HIDDEN_MEMBER,
    BROKEN_DIRECTORY,
    OVERLAPPING_MEMBERS,
)
