"""Tasks every LLMOS home starts with, as YAML a user can read, copy and change.

The prompts are written for a small instruct model (SmolLM2-135M-Instruct): one short
instruction, the material clearly fenced off, and the wanted answer form said last, where
a small model pays most attention. Sampling is greedy (temperature 0) where there is one
right answer, so runs are repeatable.

Run-time sets (see `taskspec`): `classify` takes its labels from the input `labels`, a
comma-separated list ("positive, negative, neutral") that the executor splits with
`OutputSpec.choice_labels`; `extract` takes the JSON keys it requires from the input
`fields` ("name, date, amount") through `OutputSpec.required_keys`.
"""

from __future__ import annotations

from llmos_jupyter.errors import NotFoundError
from llmos_jupyter.tasks.spec_yaml import parse_task_spec
from llmos_jupyter.tasks.taskspec import TaskSpec

BUILTIN_TASKS: dict[str, str] = {
    "generate": """\
name: generate
description: Answer a prompt freely.
inputs: [prompt]
chat: true
prompt: "{prompt}"
params: {max_tokens: 256, temperature: 0.7, top_p: 0.9}
""",
    "summarize": """\
name: summarize
description: Summarize a text in a few sentences.
inputs: [text]
chat: true
system: You are a helpful assistant that writes short, faithful summaries.
prompt: |
  Summarize the following text in two or three sentences.

  Text:
  {text}

  Summary:
params: {max_tokens: 160, temperature: 0.0}
""",
    "translate": """\
name: translate
description: Translate a text into a target language.
inputs: [text, target_language]
chat: true
system: You are a careful translator. You reply with the translation only.
prompt: |
  Translate the following text into {target_language}.

  Text:
  {text}

  Translation in {target_language}:
params: {max_tokens: 256, temperature: 0.0}
""",
    "classify": """\
name: classify
description: >-
  Pick one label for a text. `labels` is a comma-separated list given at run time,
  e.g. "positive, negative, neutral"; the answer is always one of them.
inputs: [text, labels]
chat: true
system: You are a precise classifier. You answer with one label and nothing else.
prompt: |
  Classify the text into exactly one of these labels: {labels}.

  Text:
  {text}

  Answer with the label only.
params: {max_tokens: 8, temperature: 0.0}
output:
  type: choice
  labels_from: labels
""",
    "extract": """\
name: extract
description: >-
  Pull named fields out of a text as JSON. `fields` is a comma-separated list given at
  run time, e.g. "name, date, amount"; each becomes a required key of the answer.
inputs: [text, fields]
chat: true
system: You extract information and reply with a single JSON object only.
prompt: |
  Extract these fields from the text: {fields}.
  Use null for a field the text does not mention.

  Text:
  {text}

  Reply with one JSON object whose keys are: {fields}.
params: {max_tokens: 200, temperature: 0.0}
output:
  type: json
  required_from: fields
  retries: 2
""",
    "qa": """\
name: qa
description: Answer a question using only the given context.
inputs: [context, question]
chat: true
system: You answer questions using only the given context. Keep answers short.
prompt: |
  Context:
  {context}

  Question: {question}

  If the context does not contain the answer, say "I don't know".
  Answer:
params: {max_tokens: 128, temperature: 0.0}
""",
}


def builtin_task(name: str) -> TaskSpec:
    """The parsed built-in task `name`; KeyError (NotFoundError) when there is none."""
    if name not in BUILTIN_TASKS:
        raise NotFoundError("task", name, BUILTIN_TASKS)
    return parse_task_spec(BUILTIN_TASKS[name])


def builtin_specs() -> dict[str, TaskSpec]:
    """Every built-in task, parsed, by name."""
    return {name: builtin_task(name) for name in BUILTIN_TASKS}
