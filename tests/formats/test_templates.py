"""Chat templates: real ones (Llama 3, Mistral, ChatML/Qwen, Gemma, Phi-3, DeepSeek-R1) are clean;
templates that reach for Python internals, code or escape helpers are critical; the files that carry
templates (tokenizer configs, .jinja files) are recognised by content."""

# Real chat templates are reproduced verbatim: long lines and DeepSeek's fullwidth bars included.
# ruff: noqa: E501, RUF001

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelshield import FileResult
from modelshield.core.rules import Severity
from modelshield.core.source import BytesSource
from modelshield.formats.llm import templates
from modelshield.formats.llm.templates import ChatTemplateHandler, TokenizerConfigHandler, analyse
from tests.conftest import ScanData

LLAMA_3_1 = """{{- bos_token }}
{%- if custom_tools is defined %}{%- set tools = custom_tools %}{%- endif %}
{%- if not tools_in_user_message is defined %}{%- set tools_in_user_message = true %}{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}{%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}{%- set date_string = "26 Jul 2024" %}{%- endif %}
{%- endif %}
{%- if not tools is defined %}{%- set tools = none %}{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}{{- "Environment: ipython\\n" }}{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

MISTRAL = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- set ns = namespace(index=0) %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (ns.index % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- set ns.index = ns.index + 1 %}
    {%- if message['role'] == 'user' %}
        {%- if loop.last and system_message is defined %}
            {{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + '[/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

QWEN_2_5 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- elif messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}{{- tool_call.name }}{{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}{{- '<|im_end|>\\n' }}{%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)

PHI_3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + "
    "'<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)

DEEPSEEK_R1 = """{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}
{% set ns = namespace(is_first=false, is_tool=false, system_prompt='') %}
{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}
{{ bos_token }}{{ ns.system_prompt }}
{%- for message in messages %}
  {%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}
  {%- if message['role'] == 'assistant' and message['content'] is not none %}
    {% set content = message['content'] %}
    {% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}
    {{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}
  {%- endif %}
{%- endfor -%}
{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}
"""

QWEN_3_WITH_MASKS = """{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>')) %}
        {%- set ns.multi_step_tool = false %}{%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.role == "assistant" %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}
        {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
        {{- message.content.split('</think>')[-1].lstrip('\\n') }}<|im_end|>
        {%- endgeneration %}
        {%- if loop.index0 > ns.last_query_index %}{% continue %}{% endif %}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}
"""

REAL_TEMPLATES = {
    "llama-3.1": LLAMA_3_1,
    "mistral": MISTRAL,
    "qwen-2.5": QWEN_2_5,
    "gemma": GEMMA,
    "phi-3": PHI_3,
    "deepseek-r1": DEEPSEEK_R1,
    "qwen-3": QWEN_3_WITH_MASKS,
}

#: (template, rule it must raise)
HOSTILE = [
    ("{{ lipsum.__globals__['os'].popen('id').read() }}", "TPL001"),
    ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "TPL001"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "TPL001"),
    ("{{ self._TemplateReference__context.cycler }}", "TPL001"),
    ("{% for m in messages %}{{ m['__class__'] }}{% endfor %}", "TPL001"),
    ("{{ messages|attr('__class__') }}", "TPL001"),
    ("{{ messages|map(attribute='__class__')|list }}", "TPL001"),
    ("{{ '{0.__class__}'.format(messages) }}", "TPL001"),
    ("{{ os.system('id') }}", "TPL002"),
    ("{{ __import__('os') }}", "TPL002"),
    ("{{ messages.popen }}", "TPL002"),
    ("{{ eval('1') }}", "TPL002"),
    ("{{ request.application }}", "TPL003"),
    ("{{ config.items() }}", "TPL003"),
    ("{{ url_for }}", "TPL003"),
    ("{{ joiner() }}", "TPL003"),
    ("{{ messages|attr('_' * 2 ~ 'class' ~ '_' * 2) }}", "TPL001"),
    ("{{ messages|map(attribute=name)|list }}", "TPL004"),
    ("{{ messages|selectattr(name)|list }}", "TPL004"),
    ("{% include '/etc/passwd' %}", "TPL005"),
    ("{% import 'macros.j2' as m %}", "TPL005"),
    ("{% extends layout %}", "TPL005"),
    ("{% for m in messages %}{{ m }}", "TPL006"),
    ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "TPL006"),
]


def rules_of(text: str) -> set[str]:
    return {p.rule.id for p in analyse(text).problems}


def ids(result: FileResult) -> list[str]:
    return sorted({f.rule_id for f in result.findings})


@pytest.mark.parametrize("name", sorted(REAL_TEMPLATES))
def test_real_templates_are_clean(name: str) -> None:
    analysis = analyse(REAL_TEMPLATES[name])
    assert analysis.problems == ()
    assert analysis.reads_messages


@pytest.mark.parametrize(("template", "rule"), HOSTILE)
def test_hostile_templates(template: str, rule: str) -> None:
    assert rule in rules_of(template)


def test_code_rules_are_critical() -> None:
    assert templates.PYTHON_INTERNALS.severity is Severity.CRITICAL
    assert templates.CODE_REFERENCE.severity is Severity.CRITICAL


def test_locally_assigned_names_are_not_references() -> None:
    assert (
        rules_of("{% set system = messages[0] %}{{ system.content }}{% for config in messages %}{% endfor %}") == set()
    )


def test_oversized_templates_are_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(templates, "MAX_TEMPLATE_CHARS", 100)
    templates.analyse.cache_clear()
    assert rules_of("{{ messages }}" * 20) == {"TPL006"}


def test_syntax_tree_walk_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(templates, "MAX_NODES", 50)
    templates.analyse.cache_clear()
    assert "TPL006" in rules_of("{{ messages }}" * 100)


def test_repeated_findings_are_capped(scan_data: ScanData) -> None:
    payload = "".join(f"{{{{ messages.__a{i}__ }}}}" for i in range(30))
    result = scan_data(json.dumps({"chat_template": payload}).encode(), "tokenizer_config.json")
    assert len(result.findings) == templates.MAX_FINDINGS_PER_RULE + 1
    assert "20 more not listed" in result.findings[-1].evidence


# -- the files that carry templates ----------------------------------------------------------------


def tokenizer_config(chat_template: object) -> bytes:
    return json.dumps(
        {
            "add_bos_token": True,
            "bos_token": "<|begin_of_text|>",
            "chat_template": chat_template,
            "model_max_length": 131072,
            "tokenizer_class": "PreTrainedTokenizerFast",
        },
        indent=2,
    ).encode()


def test_tokenizer_config_with_a_real_template_is_clean(scan_data: ScanData) -> None:
    result = scan_data(tokenizer_config(LLAMA_3_1), "tokenizer_config.json")
    assert result.format == "hf-chat-template"
    assert result.findings == []


def test_named_templates_in_a_tokenizer_config(scan_data: ScanData) -> None:
    variants = [
        {"name": "default", "template": QWEN_2_5},
        {"name": "tool_use", "template": "{{ cycler.__init__.__globals__.os.popen('id').read() }}"},
        {"name": "rag", "template": 42},
    ]
    result = scan_data(tokenizer_config(variants), "tokenizer_config.json")
    critical = [f for f in result.findings if f.level is Severity.CRITICAL]
    assert critical and all("chat_template[tool_use]" in f.evidence for f in critical)
    assert any(f.rule_id == "TPL006" and "chat_template[rag]" in f.evidence for f in result.findings)


def test_unparseable_template_in_a_config_fails_closed(scan_data: ScanData) -> None:
    result = scan_data(tokenizer_config("{% for m in messages %}"), "tokenizer_config.json")
    assert [(f.rule_id, f.level) for f in result.findings] == [("TPL006", Severity.MEDIUM)]


def test_configs_without_a_template_are_not_claimed() -> None:
    data = json.dumps({"tokenizer_class": "LlamaTokenizer", "note": "chat_template"}).encode()
    assert not TokenizerConfigHandler().detect(BytesSource(data))


def test_jinja_file_with_a_real_template(scan_data: ScanData) -> None:
    result = scan_data(QWEN_3_WITH_MASKS.encode(), "chat_template.jinja")
    assert result.format == "chat-template"
    assert result.findings == []


def test_jinja_file_with_a_payload_and_no_messages_is_claimed(scan_data: ScanData) -> None:
    result = scan_data(b"{{ lipsum.__globals__.os.popen('id').read() }}", "template.txt")
    assert result.format == "chat-template"
    assert "TPL001" in ids(result)


@pytest.mark.parametrize(
    "text",
    [
        "<a href=\"{{ url_for('index') }}\">{% for m in get_flashed_messages() %}{{ m }}{% endfor %}</a>",
        "Dear {{ name }}, your order {% if shipped %}shipped{% endif %}.",
        "<input value='{{ input }}'>{% for field in fields %}{{ user[field] }}{% endfor %}",
        "Plain text that mentions messages but no markup at all.",
        "{{ unbalanced",
        json.dumps({"chat_template": "{{ messages }}"}),
    ],
)
def test_other_text_is_not_a_chat_template(text: str) -> None:
    assert not ChatTemplateHandler().detect(BytesSource(text.encode()))


def test_unrecognised_text_named_jinja_fails_closed(scan_data: ScanData) -> None:
    result = scan_data(b"Hello {{ name }}", "chat_template.jinja")
    assert ids(result) == ["SCN004"]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_random_text_is_not_claimed(text: str) -> None:
    source = BytesSource(text.encode())
    assert not ChatTemplateHandler().detect(source)
    assert not TokenizerConfigHandler().detect(source)


def test_python_source_embedding_jinja_is_not_a_template(scan_data: ScanData) -> None:
    source = b'import sys\n\nTEMPLATE = """{% for x in items %}{{ x }}{% endfor %}"""\nprint(globals(), sys.argv)\n'
    result = scan_data(source, "codegen.py")
    assert result.format == "text"
    assert result.findings == []


def test_uppercase_dunder_placeholder_is_not_a_python_internal(scan_data: ScanData) -> None:
    template = b"{% for m in messages %}{{ m.content | default('__NOT_A_NUMBER__') }}{% endfor %}"
    result = scan_data(template, "chat_template.jinja")
    assert result.format == "chat-template"
    assert result.findings == []


#: GLM-4's template shape (THUDM/glm-4-9b-chat, as llama.cpp ships it): plain text before the first tag.
GLM_4 = (
    "[gMASK]<sop>{% for item in messages %}{% if item['role'] == 'system' %}<|system|>\n{{ item['content'] }}"
    "{% elif item['role'] == 'user' %}<|user|>\n{{ item['content'] }}{% elif item['role'] == 'assistant' %}"
    "<|assistant|>\n{{ item['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>"
    "{% endif %}"
)


@pytest.mark.parametrize("prefix", ["", "\n", "{not json} "])
def test_template_with_plain_text_before_its_first_tag(scan_data: ScanData, prefix: str) -> None:
    clean = scan_data((prefix + GLM_4).encode(), "chat_template.jinja")
    assert (clean.format, clean.findings) == ("chat-template", [])
    hostile = scan_data((prefix + GLM_4 + "{{ cycler.__init__.__globals__.os.popen('id') }}").encode(), "t.jinja")
    assert hostile.format == "chat-template"
    assert "TPL001" in ids(hostile)


def test_a_key_spelled_with_escapes_is_the_key_the_loader_reads(scan_data: ScanData) -> None:
    raw = json.dumps({"chat_template": "{{ cycler.__init__.__globals__.os.popen('id') }}"})
    result = scan_data(raw.replace("chat_template", "chat\\u005ftemplate").encode(), "tokenizer_config.json")
    assert result.format == "hf-chat-template"
    assert "TPL001" in ids(result)


def test_named_templates_as_a_mapping(scan_data: ScanData) -> None:
    """transformers keeps `chat_template` as {name: template} and accepts a config written that way."""
    config = {"chat_template": {"default": LLAMA_3_1, "tool_use": "{{ cycler.__init__.__globals__ }}"}}
    result = scan_data(json.dumps(config).encode(), "tokenizer_config.json")
    assert {f.rule_id for f in result.findings} == {"TPL001", "TPL003"}
    assert all("chat_template[tool_use]" in f.evidence for f in result.findings)


def test_escape_without_a_dunder_in_the_text_is_claimed(scan_data: ScanData) -> None:
    payload = "{{ ()|attr('_' * 2 ~ 'class' ~ '_' * 2) }}"  # the name is computed: no dunder in the text
    result = scan_data(payload.encode(), "chat_template.jinja")
    assert result.format == "chat-template"
    assert {f.level for f in result.findings} & {Severity.HIGH, Severity.CRITICAL}


#: The same escape in every access form Jinja accepts: the analyser folds constants the way rendering
#: would and judges the resulting name like a dotted one.
ACCESS_FORMS = [
    ("{{ messages['__class__'] }}", "TPL001"),
    ("{{ messages['__cl' ~ 'ass__'] }}", "TPL001"),
    ("{{ messages['__cl' + 'ass__'] }}", "TPL001"),
    ("{{ messages[('_' * 2) ~ 'class' ~ ('_' * 2)] }}", "TPL001"),
    ("{{ messages|attr('__ssalc__'|reverse) }}", "TPL001"),
    ("{{ messages|attr(['__cla', 'ss__']|join) }}", "TPL001"),
    ("{{ messages|attr(('__cla', 'ss__')|join('')) }}", "TPL001"),
    ("{{ messages|attr('%sclass%s'|format('__', '__')) }}", "TPL001"),
    ("{{ messages|attr('XXclassXX'|replace('X', '_')) }}", "TPL001"),
    ("{{ messages|attr('__CLASS__'|lower) }}", "TPL001"),
    ("{{ messages[('__ssalc__'|reverse)] }}", "TPL001"),
    ("{{ messages|map(attribute='__cl' ~ 'ass__')|list }}", "TPL001"),
    ("{{ messages|selectattr('__cl' ~ 'ass__')|list }}", "TPL001"),
    ("{% set a = '__cl' %}{% set b = 'ass__' %}{{ messages[a ~ b] }}", "TPL001"),
    ("{% set n = '__ssalc__'|reverse %}{{ messages|attr(n) }}", "TPL001"),
    ("{% set parts = ['__gl', 'obals__'] %}{{ messages|attr(parts|join) }}", "TPL001"),
    ("{% set parts = ['x', '__globals__'] %}{{ messages[parts[1]] }}", "TPL001"),
    ("{{ messages['_TemplateReference__context'] }}", "TPL001"),
    ("{{ messages['popen'] }}", "TPL002"),
    ("{{ messages|attr('po' ~ 'pen') }}", "TPL002"),
    ("{{ messages[messages[0].content ~ 'x'] }}", "TPL004"),
    ("{{ messages|attr(messages[0].content) }}", "TPL004"),
    ("{{ messages[messages[0].content|lower] }}", "TPL004"),
    ("{{ cycler['__init__'] }}", "TPL003"),
    ("{{ self['_TemplateReference__context'] }}", "TPL001"),
]


@pytest.mark.parametrize(("template", "rule"), ACCESS_FORMS)
def test_every_access_form_fires(template: str, rule: str) -> None:
    assert rule in rules_of(template)


def test_ordinary_subscripts_stay_quiet() -> None:
    ordinary = (
        "{% for m in messages %}{{ m['role'] ~ ': ' ~ m['content']|trim }}"
        "{{ messages[loop.index0 + 1]['role'] }}{{ 'a'|upper ~ m['content'] }}{% endfor %}"
        "{% if tools[0] is mapping %}{% for k in tools[0] %}{{ tools[0][k] }}{% endfor %}{% endif %}"
        "{% for k, v in tools|dictsort %}{{ tools[k] }}{% endfor %}"
        "{% set types = {'string': 'str'} %}{{ types[messages[0].type] }}"
        "{% for i in range(messages|length) %}{{ messages[i] }}{{ messages[i - 1] }}{% endfor %}"
        "{% set ns = namespace(i=0) %}{% for m in messages %}{% set ns.i = ns.i + 1 %}{{ messages[ns.i] }}{% endfor %}"
        "{% for f in ['minimum', 'maximum'] %}{% if f in m %}{{ m[f] }}{% endif %}{% endfor %}"
        "{{ nd[x] if x in nd else '' }}"
    )
    assert rules_of(ordinary) == set()


#: Values carried by loops, macros, namespaces, `{% set %}` blocks and `caller()`: each template reaches
#: the attribute its last line names, and is judged like the dotted spelling.
CARRIED = [
    ("{% set ns = namespace(k='') %}{% for p in ['__cla', 'ss__'] %}{% set ns.k = ns.k ~ p %}{% endfor %}"
     "{{ messages|attr(ns.k) }}", "TPL001"),
    ("{% for k in ['role', '__globals__'] %}{{ lipsum[k] }}{% endfor %}", "TPL001"),
    ("{% for k, v in {'a': '__class__'}.items() %}{{ messages[v] }}{% endfor %}", "TPL001"),
    ("{% for k, v in {'a': '__class__'}|dictsort %}{{ messages[v] }}{% endfor %}", "TPL001"),
    ("{% macro get(o, n) %}{{ o[n] }}{% endmacro %}{{ get(messages, '__cl' ~ 'ass__') }}", "TPL001"),
    ("{% macro get(o, n='__init__') %}{{ o|attr(n) }}{% endmacro %}{{ get(messages) }}", "TPL001"),
    ("{% macro name() %}__class__{% endmacro %}{{ messages[name()] }}", "TPL001"),
    ("{% set k %}__glo{{ 'bals__' }}{% endset %}{{ messages[k] }}", "TPL001"),
    ("{% set k | lower %}__CLASS__{% endset %}{{ messages[k] }}", "TPL001"),
    ("{% macro m() %}{{ messages[caller()] }}{% endmacro %}{% call m() %}__class__{% endcall %}", "TPL001"),
    ("{% set d = dict(k='__class__') %}{{ messages[d.k] }}", "TPL001"),
    ("{% set d = {'k': '__class__'} %}{{ messages[d['k']] }}{{ messages[d.get('k')] }}", "TPL001"),
    ("{{ messages['__ssalc__'[::-1]] }}", "TPL001"),
    ("{{ messages['_'.join(['', 'class', '']) ~ '_'] }}", "TPL001"),
    ("{{ messages['{}class{}'.format('__', '__')] }}", "TPL001"),
    ("{{ messages['XclassX'.replace('X', '__')] }}", "TPL001"),
    ("{{ messages[['__class__', 'role']|first] }}", "TPL001"),
    ("{{ messages[['__class__', 'role']|random] }}", "TPL001"),
    ("{% for m in messages %}{{ m[loop.cycle('__class__', 'role')] }}{% endfor %}", "TPL001"),
    ("{% set a = '__cla' if messages else 'x' %}{{ messages[a ~ 'ss__'] }}", "TPL001"),
    ("{{ messages[(messages and '__class__') or 'x'] }}", "TPL001"),
    ("{% set n = messages|length %}{% set k = '__class__' if n else '' %}{{ messages[k] }}", "TPL001"),
    ("{% with k = '__class__' %}{{ messages[k] }}{% endwith %}", "TPL001"),
    ("{{ messages|map(attribute='0.__class__')|list }}", "TPL001"),
    ("{% set x = 'po' %}{% set x = x ~ 'pen' %}{{ messages[x] }}", "TPL002"),
    ("{% for k in ['os'] %}{{ cycler.__init__.__globals__[k].popen('id') }}{% endfor %}", "TPL002"),
    ("{{ messages[messages[0].content] }}", "TPL004"),
    ("{% set k = messages[0].content %}{{ messages[k] }}", "TPL004"),
    ("{% macro get(o, n) %}{{ o[n] }}{% endmacro %}{{ get(messages, tools[0].name) }}", "TPL004"),
    ("{% for k in tools %}{{ messages[k] }}{% endfor %}", "TPL004"),
    ("{% set ns = namespace(k=messages[0].content) %}{{ messages[ns.k] }}", "TPL004"),
    ("{% set k = '' %}{% for i in range(9) %}{% set k = k ~ messages[i].content %}{% endfor %}{{ tools[k] }}", "TPL004"),
]  # fmt: skip


#: Bypasses found by red-teaming the rules above, kept fixed.
RED_TEAM = [
    # A guard proves `k in C` only where it must hold: not through `or`, not in the `else` branch.
    ("{% if (k in tools) or true %}{{ tools[k] }}{% endif %}", "TPL004"),
    ("{% if k in tools %}{% else %}{{ tools[k] }}{% endif %}", "TPL004"),
    ("{{ '' if k in tools else tools[k] }}", "TPL004"),
    # A list's elements are no keys of it: `C[k]` falls back to getattr(C, k).
    ("{% set parts = messages[0].content.split() %}{% for k in parts %}{{ parts[k] }}{% endfor %}", "TPL004"),
    ("{% for k in messages %}{{ messages[k] }}{% endfor %}", "TPL004"),
    # `map('attr', name)` is the attr filter.
    ("{{ messages|map('attr', messages[0].content)|list }}", "TPL004"),
    ("{{ messages|map('attr', '__class__')|list }}", "TPL001"),
    ("{{ messages|map(messages[0].content, 'x')|list }}", "TPL004"),
    # Jinja's own globals are objects too: their string forms spell names.
    ("{% set u = (raise_exception|string)[15] %}{{ messages[u ~ u ~ (dict|string)[1:6] ~ u ~ u] }}", "TPL004"),
    ("{{ messages|attr((namespace|string)[1:6]) }}", "TPL004"),
    # Shadowing a helper with itself still reads the helper.
    ("{% set cycler = cycler %}{{ cycler }}", "TPL003"),
    ("{% set os = os or 1 %}{{ os }}", "TPL002"),
]


@pytest.mark.parametrize(("template", "rule"), RED_TEAM)
def test_red_team_bypasses_stay_fixed(template: str, rule: str) -> None:
    assert rule in rules_of(template)


@pytest.mark.parametrize(("template", "rule"), CARRIED)
def test_values_carried_by_loops_macros_and_namespaces(template: str, rule: str) -> None:
    assert rule in rules_of(template)


def test_a_plain_key_from_the_request_is_medium_and_a_built_one_high() -> None:
    plain = {(p.rule.id, p.severity) for p in analyse("{{ messages[messages[0].content] }}").problems}
    assert plain == {("TPL004", Severity.MEDIUM)}
    built = {(p.rule.id, p.severity) for p in analyse("{{ messages[messages[0].content ~ '_'] }}").problems}
    assert built == {("TPL004", None)}


def test_names_are_judged_by_the_callable_catalogue() -> None:
    """Free names and methods are what core/callables says they are, with its severity."""
    by_rule = {p.evidence: p.severity for p in analyse("{{ builtins }}{{ open }}{{ x.check_output }}").problems}
    assert by_rule == {
        "line 1: uses 'builtins': reaches builtins.eval, which runs code or commands": Severity.CRITICAL,
        "line 1: uses 'open': builtins.open is a callable that touches files, the network or the process": (
            Severity.HIGH
        ),
        "line 1: calls 'check_output': names a callable that runs code or commands": Severity.CRITICAL,
    }
    assert rules_of("{{ messages.type }}{{ tools|map(attribute='type')|list }}{{ datetime }}") == set()


#: Templates that make one render expensive (TPL007), and the shapes real templates use that are not.
EXPENSIVE = [
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% for k in range(10) %}{% endfor %}{% endfor %}{% endfor %}",
    "{{ 'a' * 1000000000 }}",
    "{{ 'a' * 10 ** 10 }}",
    "{% set n = 100000 %}{% for i in range(n) %}{{ 'x' * n }}{% endfor %}",
    "{{ ''|center(1000000000) }}",
    "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    "{% macro f() %}{% for i in range(2) %}{{ f() }}{% endfor %}{% endmacro %}{{ f() }}",
    "{% for x in [1] recursive %}{{ loop([1, 1]) }}{% endfor %}",
    "{% macro big() %}{% for i in range(100000) %}x{% endfor %}{% endmacro %}{% for i in range(1000) %}{{ big() }}{% endfor %}",
    # red team: bounds scaled by the request, string doubling, format widths, mutual recursion, batch
    "{% for i in range(messages|length * 100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for x in messages * 100000 %}{% for y in range(100000) %}{% endfor %}{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for m in messages %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% set s = 'x' %}{% for m in messages %}{% set s = s + s %}{% endfor %}",
    "{{ '%0999999999d'|format(1) }}",
    "{{ '%*d' % (10 ** 9, 1) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{% macro f(n) %}{{ g(n) }}{{ g(n) }}{% endmacro %}{% macro g(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{{ [1]|batch(10 ** 9, 0)|list }}",
    "{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ 'x' %}{% endfor %}",
    "".join(f"{{% macro m{i}() %}}{{{{ m{i + 1}() }}}}{{{{ m{i + 1}() }}}}{{% endmacro %}}" for i in range(40))
    + "{{ m0() }}",
]
CHEAP = [
    "{% for m in messages %}{% for n in messages %}{{ ' ' * loop.depth }}{% endfor %}{% endfor %}",
    "{% for i in range(messages|length) %}{{ '  ' * indent }}{% endfor %}",
    "{% macro f(spec) %}{% for k, v in spec|dictsort %}{{ f(v) }}{{ f(v.items) }}{% endfor %}{% endmacro %}{{ f(tools) }}",
    "{% for x in messages recursive %}{{ loop(x.children) }}{% endfor %}",
    "{% for i in range(1000) %}{{ '-' * 80 }}{% endfor %}",
    "{% set s = '' %}{% for m in messages %}{% set s = s ~ m.content ~ s|length %}{% endfor %}{{ '%5d' % 3 }}",
    "{% macro f(n) %}{{ g(n.children) }}{% endmacro %}{% macro g(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(tools) }}",
]


@pytest.mark.parametrize("template", EXPENSIVE)
def test_render_cost_is_reported(template: str) -> None:
    assert "TPL007" in rules_of(template)


@pytest.mark.parametrize("template", CHEAP)
def test_request_sized_loops_are_not_render_cost(template: str) -> None:
    assert "TPL007" not in rules_of(template)


def test_folding_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Choices multiply (`p ~ p ~ p ~ p` of 60 choices each): past the product bound the key is one
    built at render time (TPL004), past the work budget the template is not analysed (TPL006)."""
    from modelshield.formats.llm import jinja

    pieces = "".join(f"{{% set p = '{chr(97 + i % 26)}{i}' %}}" for i in range(60)) + "{{ messages[p ~ p ~ p ~ p] }}"
    assert rules_of(pieces) == {"TPL004"}
    monkeypatch.setattr(jinja, "MAX_FOLD_WORK", 100)
    templates.analyse.cache_clear()
    assert rules_of(pieces) == {"TPL006", "TPL004"}
    # Exhausting the budget does not hide what the template spells out.
    assert {"TPL006", "TPL001"} <= rules_of(pieces + "{{ x.__class__ }}")


LLAMA_CPP_TEMPLATES = (
    Path(__file__).parents[1] / "fixtures/real/chat_templates/llama_cpp_python_0.3.36_templates.tar.xz"
)


def _llama_cpp_templates() -> list[tuple[str, str]]:
    with tarfile.open(LLAMA_CPP_TEMPLATES) as bundle:
        return [
            (member.name, extracted.read().decode())
            for member in bundle.getmembers()
            if (extracted := bundle.extractfile(member)) is not None
        ]


def test_llama_cpp_real_templates_are_clean() -> None:
    real = _llama_cpp_templates()
    assert len(real) == 70
    noisy = {name: analyse(text).problems for name, text in real if analyse(text).problems}
    assert noisy == {}
