"""The local backend: a GGUF model run in this process through llama.cpp.

- ``backend``: ``LlamaCppBackend``, one generation turned into events;
- ``model_files``: where a GGUF file comes from (embedded, local path, Hugging Face Hub);
- ``loading``: opening the model in the background, with progress;
- ``requantize``: the 16-bit copy of the embedded model;
- ``queue``: admission when every slot is busy, with positions;
- ``scheduler``: continuous batching, several conversations decoded in one step;
- ``jobs``, ``sampling``: a request in the scheduler, and its tokens sampled and turned to text;
- ``slot_states``: which slot a prompt takes and what of it the slot already holds;
- ``prompt_cache``: saved conversation states, so only new tokens are evaluated;
- ``kv_budget``: how many conversations fit in memory at once;
- ``tokens``: real token counts from the model's tokenizer;
- ``grammars``: structured output (JSON) as llama.cpp grammars.
"""
