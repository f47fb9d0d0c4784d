"""The page's fixed labels in English and Chinese, translated in the browser by ``gr.I18n``."""

from __future__ import annotations

import gradio as gr

I18N = gr.I18n(
    en={
        "title": "Chat",
        "controls": "Settings",
        "persona": "Persona",
        "system_prompt": "System prompt",
        "temperature": "Temperature",
        "context_length": "Context length (tokens)",
        "max_new_tokens": "Max new tokens",
        "top_p": "Top-p",
        "stats": "Stats",
        "placeholder": "Ask anything. 用中文或英文提问都可以。",
        "backend": "Backend",
        "api_key": "API key (this session only, never stored)",
        "use_cache": "Use the response cache",
        "export_md": "Export Markdown",
        "export_json": "Export JSON",
        "import_json": "Import JSON",
        "download": "Download",
        "conversation": "Conversation",
        "message": "Message",
    },
    zh={
        "title": "聊天",
        "controls": "设置",
        "persona": "角色",
        "system_prompt": "系统提示词",
        "temperature": "温度",
        "context_length": "上下文长度（token）",
        "max_new_tokens": "最大生成长度",
        "top_p": "Top-p",
        "stats": "统计",
        "placeholder": "请输入问题，中文或英文均可。",
        "backend": "后端",
        "api_key": "API 密钥（仅本次会话使用，不会保存）",
        "use_cache": "使用回复缓存",
        "export_md": "导出 Markdown",
        "export_json": "导出 JSON",
        "import_json": "导入 JSON",
        "download": "下载",
        "conversation": "对话",
        "message": "消息",
        "chat_interface.new_chat": "新对话",
    },
)
