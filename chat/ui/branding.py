"""A deployment's look from its settings (title, welcome text, logo, primary colour, footer), so a
Space is branded without code. Empty settings give neutral defaults in the reader's language."""

from __future__ import annotations

import base64
import html
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from chat.errors import ConfigError
from chat.i18n import Lang
from chat.settings import Settings
from chat.ui.labels import I18N

LOGO_MAX_BYTES = 512 * 1024  # inlined into the page as a data: URL
_SHADES = ("c50", "c100", "c200", "c300", "c400", "c500", "c600", "c700", "c800", "c900", "c950")
# How far each shade is mixed towards white (< 0) or black (> 0) from the given colour (c500).
_MIX = (-0.95, -0.9, -0.75, -0.55, -0.3, 0.0, 0.15, 0.3, 0.45, 0.6, 0.7)


@dataclass(frozen=True)
class Branding:
    """What the page shows of a deployment; build with ``Branding.from_settings``."""

    title: str = ""  # empty: "Chat" / "聊天" by the reader's language
    description: str = ""  # empty: a bilingual welcome
    logo_src: str = ""  # an http(s) URL or a data: URL
    primary: gr.themes.Color | str = "indigo"
    footer: str = ""  # empty: a short disclaimer in the reader's language

    @classmethod
    def from_settings(cls, settings: Settings) -> Branding:
        """ConfigError for a logo that cannot be read or a colour that is not one."""
        return cls(
            title=settings.title.strip(),
            description=settings.description.strip(),
            logo_src=logo_src(settings.logo.strip()),
            primary=primary_hue(settings.primary_color.strip()),
            footer=settings.footer.strip(),
        )

    @property
    def page_title(self) -> str:
        """The browser tab's title (static: the tab is named before the language is known)."""
        return self.title or "Chat · 聊天"

    def header(self, lang: Lang) -> str:
        title = html.escape(self.title or I18N.translations[lang]["title"])
        logo = f'<img src="{html.escape(self.logo_src)}" alt="" class="brand-logo">' if self.logo_src else ""
        return f'<div class="brand">{logo}<h1>{title}</h1></div>'

    def welcome(self, lang: Lang) -> str:
        return self.description or I18N.translations[lang]["welcome"]

    def footer_text(self, lang: Lang) -> str:
        return self.footer or I18N.translations[lang]["disclaimer"]

    def theme(self) -> gr.themes.Base:
        return gr.themes.Default(primary_hue=self.primary)


def logo_src(logo: str) -> str:
    """An http(s) URL as it is; a local image file inlined as a data: URL (no file route needed)."""
    if not logo:
        return ""
    if logo.startswith(("http://", "https://")):
        return logo
    path = Path(logo).expanduser()
    kind = mimetypes.guess_type(path.name)[0] or ""
    if not kind.startswith("image/"):
        raise ConfigError(
            f"--logo: {logo!r} is not an image file (.png, .svg, .jpg, .webp...) or http(s) URL"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--logo: cannot read {logo!r} ({exc.strerror})") from None
    if len(data) > LOGO_MAX_BYTES:
        raise ConfigError(
            f"--logo: {logo!r} is over {LOGO_MAX_BYTES // 1024} KB; use a smaller image or a URL"
        )
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def primary_hue(color: str) -> gr.themes.Color | str:
    """A Gradio hue name as it is; ``#rrggbb`` as a full shade range around it."""
    names = {c.name for c in gr.themes.Color.all}
    if not color:
        return "indigo"
    if color.lower() in names:
        return color.lower()
    hex_digits = color.removeprefix("#")
    if len(hex_digits) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in hex_digits):
        raise ConfigError(
            f"--primary-color: {color!r} is neither #rrggbb nor one of {', '.join(sorted(names))}"
        )
    rgb = [int(hex_digits[i : i + 2], 16) for i in (0, 2, 4)]

    def mixed(amount: float) -> str:
        target = 0 if amount > 0 else 255
        return "#" + "".join(f"{round(c + (target - c) * abs(amount)):02x}" for c in rgb)

    return gr.themes.Color(**{shade: mixed(m) for shade, m in zip(_SHADES, _MIX, strict=True)}, name="brand")
