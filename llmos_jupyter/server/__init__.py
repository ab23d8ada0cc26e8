"""The LLMOS server: tornado handlers shared by the Jupyter server extension and
`llmos serve`.

    base.py            JSON, OpenAI error bodies, SSE, generation through a scheduler
    protocol.py        OpenAI request/response shapes with their limits
    openai_routes.py   /v1/models, /v1/chat/completions, /v1/completions
    health.py          /health, /metrics
    routes.py          the route table and how a host builds its handlers
    standalone.py      `llmos serve`: bearer-key auth, graceful drain
    extension.py       the Jupyter server extension (routes under {base_url}llmos/)

It sits beside the other interfaces: it calls the api and runtime facades, never the
store's tables or the model's modules.
"""
