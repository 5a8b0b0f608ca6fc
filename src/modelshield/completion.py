"""Shell completion scripts (`modelshield completion bash|zsh|fish`), generated from the parser itself so
that they never fall behind the options the command accepts."""

from __future__ import annotations

import argparse
import shlex

from modelshield.core.rules import Severity


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for sub-commands
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def _values(action: argparse.Action) -> str | None:
    """The words an option's value can be: its choices, or the severity names for a SEVERITY."""
    if action.choices:
        return " ".join(str(v) for v in action.choices)
    if action.metavar == "SEVERITY":
        return " ".join(s.label for s in sorted(Severity, reverse=True))
    return None


def bash(parser: argparse.ArgumentParser) -> str:
    """A bash function completing commands, each command's options, option values, and file names."""
    commands = _commands(parser)
    top = " ".join([*commands, "--help", "--version"])
    per_command = []
    values = []
    for name, command in commands.items():
        flags = " ".join(flag for action in _options(command) for flag in action.option_strings)
        per_command.append(f"        {name}) opts={shlex.quote(flags)} ;;")
        for action in command._actions:
            words = _values(action)
            if words is None:
                continue
            after = action.option_strings or [name]  # a positional's value follows the command itself
            pattern = "|".join(f"{name}:{flag}" for flag in after)
            values.append(f"        {pattern}) words={shlex.quote(words)} ;;")
    return f"""# modelshield completion for bash: source <(modelshield completion bash)
_modelshield() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" opts="" words=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W {shlex.quote(top)} -- "$cur"))
        return
    fi
    case "${{COMP_WORDS[1]}}" in
{chr(10).join(per_command)}
    esac
    case "${{COMP_WORDS[1]}}:$prev" in
{chr(10).join(values)}
    esac
    if [ -n "$words" ]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    elif [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F _modelshield modelshield
"""


def zsh(parser: argparse.ArgumentParser) -> str:
    """zsh runs the bash function through its bash-completion layer."""
    return "# modelshield completion for zsh\nautoload -U +X bashcompinit && bashcompinit\n" + bash(parser)


def fish(parser: argparse.ArgumentParser) -> str:
    """One `complete` line per command and option."""
    commands = _commands(parser)
    lines = ["# modelshield completion for fish", "complete -c modelshield -f"]
    for name, command in commands.items():
        description = shlex.quote(command.description.split(".")[0] if command.description else name)
        lines.append(f"complete -c modelshield -n __fish_use_subcommand -a {name} -d {description}")
        for action in _options(command):
            parts = [f"complete -c modelshield -n '__fish_seen_subcommand_from {name}'"]
            for flag in action.option_strings:
                parts.append(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
            words = _values(action)
            if words is not None:
                parts.append(f"-xa {shlex.quote(words)}")
            elif action.nargs != 0:
                parts.append("-r")
            if action.help:
                parts.append(f"-d {shlex.quote(action.help.split(';')[0][:80])}")
            lines.append(" ".join(parts))
        condition = f"complete -c modelshield -n '__fish_seen_subcommand_from {name}'"
        positional = [a for a in command._actions if not a.option_strings]
        for action in positional:
            words = _values(action)
            if words is not None:
                lines.append(f"{condition} -xa {shlex.quote(words)}")
        if any(a.nargs in ("+", "*") for a in positional):
            lines.append(f"{condition} -F")
    return "\n".join(lines) + "\n"


SHELLS = {"bash": bash, "zsh": zsh, "fish": fish}
