"""runtime floor of LLMOS: what lives while a process runs, over the store.

    services.py        the store's services for the current LLMOS_HOME, opened once
    cache.py           the loaded-model cache ("ps"); loaded_model.py: LoadedModel
                       (generate, chat, stream) and current.py: the current model
    namespaces.py      llmos.datasets, llmos.tasks, llmos.runs
    task_runs.py, task_exec.py, background.py, evaluation.py   task runs in the
                       background, their execution, cancellation and evaluation
    training.py        training runs; loss_plot.py and progress.py show their progress
    prompts.py         notebook variables filled into a prompt
    scheduler.py, serving.py   one continuous-batching thread per served model

Imports: the floors below (store, tasks, data, engine, formats, tokenizer, model, core),
never api.py or an interface; torch only inside the functions that run a model.
"""
