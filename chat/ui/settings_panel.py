"""The sidebar's settings: persona, system prompt, sampling, backend, API key, cache and the
knowledge base a reply answers from; the chat reads them as its additional inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from chat.engine import ChatEngine
from chat.knowledge import KnowledgeBase
from chat.messages import GenerationParams
from chat.reply.personas import Persona
from chat.ui.knowledge import KnowledgeControls, knowledge_controls
from chat.ui.labels import I18N
from chat.ui.page_state import checked_settings


def persona_list(personas: Mapping[str, str] | Sequence[Persona]) -> list[Persona]:
    if isinstance(personas, Mapping):  # {title: prompt}: no language, no examples
        return [Persona(key=title, lang="", title=title, prompt=prompt) for title, prompt in personas.items()]
    return list(personas)


def default_persona(personas: Sequence[Persona], lang: str) -> Persona | None:
    """The first persona's counterpart in the reader's language (a zh browser gets the Chinese
    general assistant), else the first persona in that language, else the first."""
    if not personas:
        return None
    first = personas[0]
    same_key = [p for p in personas if p.key == first.key and p.lang == lang]
    same_lang = [p for p in personas if p.lang == lang]
    return (same_key or same_lang or [first])[0]


def examples(persona: Persona | None) -> list[dict[str, str]]:
    return [{"text": text} for text in persona.examples] if persona else []


@dataclass
class SettingsPanel:
    personas: list[Persona]
    persona: gr.Dropdown
    system_prompt: gr.Textbox
    temperature: gr.Slider
    context_length: gr.Slider
    max_new_tokens: gr.Slider
    top_p: gr.Slider
    backend: gr.Dropdown
    api_key: gr.Textbox
    use_cache: gr.Checkbox
    knowledge: KnowledgeControls

    @property
    def by_title(self) -> dict[str, Persona]:
        return {p.title: p for p in self.personas}

    @property
    def saved_fields(self) -> list[Any]:
        """What the browser keeps across reloads, in ``chat.ui.page_state.SETTINGS`` order."""
        return [
            self.persona,
            self.system_prompt,
            self.knowledge.selector,
            self.temperature,
            self.context_length,
            self.max_new_tokens,
            self.top_p,
            self.use_cache,
        ]

    @property
    def chat_inputs(self) -> list[Any]:
        """The chat handler's settings, in its parameters' order (chat.ui.handlers.ChatHandlers.ui)."""
        return [
            self.system_prompt,
            self.temperature,
            self.context_length,
            self.max_new_tokens,
            self.top_p,
            self.backend,
            self.api_key,
            self.use_cache,
            self.knowledge.selector,
        ]

    def restored(self, saved: dict[str, Any], lang: str) -> list[Any]:
        """Updates for ``saved_fields`` from saved settings; without any, the reader's default
        persona with its prompt and knowledge base, the rest as built."""
        sliders = {"temperature": self.temperature, "context_length": self.context_length}
        sliders |= {"max_new_tokens": self.max_new_tokens, "top_p": self.top_p}
        values = checked_settings(saved, sliders)
        persona = self.by_title.get(values.get("persona", ""))
        if persona is None:  # nothing saved, or a persona gone: its prompt and knowledge base go too
            persona = default_persona(self.personas, lang)
            values = {k: v for k, v in values.items() if k not in ("system_prompt", "knowledge")}
        title = persona.title if persona else None
        return [
            title,
            values.get("system_prompt", persona.prompt if persona else ""),
            self.knowledge.for_persona(title, values.get("knowledge")),
            *(
                values.get(name, gr.skip())
                for name in ("temperature", "context_length", "max_new_tokens", "top_p")
            ),
            values.get("use_cache", gr.skip()),
        ]

    def of_conversation(self, kept: dict[str, Any]) -> tuple[Any, Any, Any]:
        """Updates for persona, system prompt and knowledge base from what a conversation kept."""
        if not kept:
            return gr.skip(), gr.skip(), gr.skip()
        values = checked_settings(kept, {})
        persona = self.by_title.get(values.get("persona", ""))
        title = persona.title if persona else gr.skip()
        prompt = values.get("system_prompt", gr.skip())
        return title, prompt, self.knowledge.for_persona(values.get("persona"), values.get("knowledge"))

    def wire(self, chatbot: gr.Chatbot) -> None:
        """A persona the user picks brings its prompt and example prompts (its knowledge base:
        ``KnowledgeControls.wire``)."""
        by_title = self.by_title
        self.persona.input(
            lambda name: (
                by_title[name].prompt if name in by_title else "",
                gr.Chatbot(examples=examples(by_title.get(name)) or None),
            ),
            self.persona,
            [self.system_prompt, chatbot],
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )


def settings_panel(
    engine: ChatEngine,
    personas: list[Persona],
    *,
    max_context: int,
    defaults: GenerationParams,
    cache_default: bool,
    knowledge: KnowledgeBase | None,
) -> SettingsPanel:
    """The settings accordion's controls, rendered where it is called."""
    first = personas[0] if personas else None
    backend_choices = [(f"{name} · {b.model}", name) for name, b in engine.backends.items()]
    return SettingsPanel(
        personas=personas,
        persona=gr.Dropdown(
            [p.title for p in personas],
            value=first.title if first else None,
            label=I18N("persona"),
            elem_id="persona",
        ),
        system_prompt=gr.Textbox(
            first.prompt if first else "",
            label=I18N("system_prompt"),
            lines=4,
            max_lines=12,
            elem_id="system-prompt",
        ),
        temperature=gr.Slider(0, 2, value=defaults.temperature, step=0.05, label=I18N("temperature")),
        context_length=gr.Slider(
            256, max_context, value=defaults.context_length, step=64, label=I18N("context_length")
        ),
        max_new_tokens=gr.Slider(
            1, 2048, value=defaults.max_new_tokens, step=1, label=I18N("max_new_tokens")
        ),
        top_p=gr.Slider(0, 1, value=defaults.top_p, step=0.01, label=I18N("top_p")),
        backend=gr.Dropdown(
            backend_choices,
            value=engine.default_backend,
            label=I18N("backend"),
            visible=len(backend_choices) > 1,
        ),
        api_key=gr.Textbox(
            "",
            type="password",
            label=I18N("api_key"),
            visible=any(b.accepts_api_key for b in engine.backends.values()),
            elem_id="api-key",
        ),
        use_cache=gr.Checkbox(cache_default, label=I18N("use_cache"), visible=engine.cache is not None),
        knowledge=knowledge_controls(knowledge, personas),  # selector + admin
    )
