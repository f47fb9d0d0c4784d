"""User-facing sentences in English and Chinese, and a guess of the user's language.

The UI's fixed labels are translated in the browser by ``gr.I18n`` (see ``chat.ui``); the
sentences here are produced on the server (errors, notices, refusals), so the server picks the
language from what the user wrote.
"""

from __future__ import annotations

import re
from typing import Literal

Lang = Literal["en", "zh"]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

MESSAGES: dict[str, dict[Lang, str]] = {
    "error.internal": {
        "en": "Something went wrong on the server. Please try again.",
        "zh": "服务器出现问题，请重试。",
    },
    "error.config": {"en": "Configuration error: {detail}", "zh": "配置错误：{detail}"},
    "error.invalid": {"en": "Invalid request: {detail}", "zh": "请求无效：{detail}"},
    "error.context_overflow": {
        "en": "Your message is too long for the context window: it needs {needed} tokens but only "
        "{available} fit after reserving {reserved} for the reply. Shorten the message, raise the "
        "context length, or lower max new tokens.",
        "zh": "消息太长，超出上下文窗口：需要 {needed} 个 token，但为回复预留 {reserved} 个后只剩 "
        "{available} 个。请缩短消息、调大上下文长度或调小最大生成长度。",
    },
    "error.input_blocked": {
        "en": "Sorry, I can't help with that request.",
        "zh": "抱歉，我无法协助处理这个请求。",
    },
    "error.output_blocked": {
        "en": "The reply was withheld because it matched the content policy.",
        "zh": "回复内容触发了内容安全策略，已被屏蔽。",
    },
    "error.backend": {
        "en": "The model backend failed ({backend}). Please try again.",
        "zh": "模型后端出错（{backend}），请重试。",
    },
    "error.unavailable": {
        "en": "The model service is unavailable ({backend}). Please try again shortly.",
        "zh": "模型服务暂不可用（{backend}），请稍后重试。",
    },
    "error.timeout": {
        "en": "The model service did not answer in time ({backend}).",
        "zh": "模型服务响应超时（{backend}）。",
    },
    "error.rate_limited": {
        "en": "The model service is rate-limiting requests ({backend}). Please wait and try again.",
        "zh": "模型服务请求过于频繁（{backend}），请稍候再试。",
    },
    "error.auth": {
        "en": "The model service rejected the credentials ({backend}): check your API key.",
        "zh": "模型服务拒绝了凭据（{backend}）：请检查 API 密钥。",
    },
    "error.bad_response": {
        "en": "The model service sent an unexpected response ({backend}).",
        "zh": "模型服务返回了无法识别的响应（{backend}）。",
    },
    "error.empty": {"en": "Please type a message.", "zh": "请输入消息。"},
    "notice.trimmed": {
        "en": "{count} earlier message(s) were left out to fit the context length.",
        "zh": "为适应上下文长度，省略了较早的 {count} 条消息。",
    },
    "notice.ctx_capped": {
        "en": "Context length {requested} is above the loaded model window; using {used}.",
        "zh": "上下文长度 {requested} 超过了模型已加载的窗口，实际使用 {used}。",
    },
    "notice.stopped": {"en": "Stopped.", "zh": "已停止。"},
    "notice.length": {
        "en": "The reply reached the max new tokens limit.",
        "zh": "回复已达到最大生成长度。",
    },
    "notice.waiting": {
        "en": "Waiting for the model… position {position} in the queue.",
        "zh": "正在排队等待模型……当前位置：第 {position} 位。",
    },
}


def detect_language(text: str) -> Lang:
    """Chinese if the text contains any CJK ideograph, else English."""
    return "zh" if _CJK.search(text or "") else "en"


def t(key: str, lang: Lang = "en", **fields: object) -> str:
    """The message ``key`` in ``lang``, with ``fields`` filled in (missing fields stay blank)."""
    entry = MESSAGES.get(key) or MESSAGES["error.internal"]
    template = entry.get(lang) or entry["en"]
    return template.format_map(_Blank(fields))


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""
