"""tasks floor of LLMOS: the task language, what a task spec says and how it is checked.

    taskspec.py        TaskSpec, StepSpec: fields, sampling-parameter and flow-order checks
    spec_yaml.py       parse_task_spec: YAML text or a dict -> a checked TaskSpec, every
                       mistake a SpecError naming its line and field
    templates.py       the prompt template language ({name} only, no str.format)
    task_output.py     OutputSpec and reading a model's answer (text, JSON, one of labels)
    builtin_tasks.py   the tasks every home starts with, as YAML

Nothing here touches a file or a model: the store keeps specs (store/tasks.py), the
runtime runs them (runtime/task_exec.py). Imports: only `llmos_jupyter.errors` of ours,
and yaml.
"""
