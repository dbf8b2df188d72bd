"""The plain-text chat template: GPT-2 and GPT-3 base models have no chat format of their own, so a
conversation becomes a transcript the model continues.

    System: You are terse.
    User: Name a colour.
    Assistant: Red.
    User: Another.
    Assistant:

The reply is what the model writes after the last `Assistant:`, up to where it starts the user's
next line (`STOP`). The same Jinja template is served at /tokenizer_info as `chat_template`, so
clients that render chats themselves (lm-evaluation-harness's remote tokenizer) build the same text.
"""

from __future__ import annotations

import jinja2

TEMPLATE = (
    "{% for message in messages %}"
    "{{ 'System' if message['role'] in ('system', 'developer') else message['role'] | capitalize }}: "
    "{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
STOP = "\nUser:"

_template = jinja2.Environment(autoescape=False).from_string(TEMPLATE)


def render(messages: list[dict[str, str]]) -> str:
    """The prompt for the assistant's next reply to `messages` (dicts with `role` and `content`)."""
    return _template.render(messages=messages, add_generation_prompt=True)
