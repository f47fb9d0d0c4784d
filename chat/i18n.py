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
    "error.input_credentials": {
        "en": "Your message seems to contain a password, verification code or other secret, so it "
        "was not sent. Never share passwords or codes in a chat, not even with support.",
        "zh": "您的消息似乎包含密码、验证码或其他密钥，为保护账户安全，消息未被发送。"
        "请勿在聊天中透露密码或验证码，包括对客服。",
    },
    "error.moderation_unavailable": {
        "en": "The content check is unavailable right now, so the message was not sent. "
        "Please try again later.",
        "zh": "内容审核服务暂时不可用，消息未被发送，请稍后再试。",
    },
    "error.refused_earlier": {
        "en": "Message {n} of {total} in this conversation (not the newest) was refused. "
        "Remove or edit that message, or start a new conversation, and send again.",
        "zh": "本对话共 {total} 条消息，其中第 {n} 条（不是最新一条）未通过内容检查。"
        "请删除或修改该消息，或开始新的对话，然后重新发送。",
    },
    "error.refused_system": {
        "en": "The system prompt of this conversation was refused. Change it and send again.",
        "zh": "本对话的系统提示词未通过内容检查，请修改后重新发送。",
    },
    "error.message_too_long": {
        "en": "Your message is too long ({length} characters; the limit is {limit}). "
        "Please shorten it or send it in parts.",
        "zh": "消息太长（{length} 个字符，上限为 {limit} 个）。请缩短后再发送，或分成几条发送。",
    },
    "error.store": {
        "en": "The conversation could not be saved or loaded. Please try again.",
        "zh": "对话无法保存或读取，请重试。",
    },
    "error.not_found": {
        "en": "That conversation does not exist (or was deleted).",
        "zh": "该对话不存在（或已被删除）。",
    },
    "error.too_many_turns": {
        "en": "This conversation has reached its limit of {limit} messages. Please start a new chat.",
        "zh": "本次对话已达到 {limit} 条消息的上限，请开始新的对话。",
    },
    "notice.trimmed": {
        "en": "{count} earlier message(s) were left out to fit the context length.",
        "zh": "为适应上下文长度，省略了较早的 {count} 条消息。",
    },
    "notice.summarised": {
        "en": "{count} earlier message(s) are summarised to fit the context length.",
        "zh": "为适应上下文长度，较早的 {count} 条消息已整理为摘要。",
    },
    "profile.saved": {"en": "Profile saved.", "zh": "资料已保存。"},
    "notice.notes_dropped": {
        "en": "Some background (a summary of earlier messages, your profile or reference text) was "
        "left out: it does not fit the context length.",
        "zh": "部分背景信息（较早消息的摘要、个人资料或参考资料）放不进上下文长度，本次未使用。",
    },
    "notice.ctx_capped": {
        "en": "Context length {requested} is above the loaded model window; using {used}.",
        "zh": "上下文长度 {requested} 超过了模型已加载的窗口，实际使用 {used}。",
    },
    "notice.stopped": {"en": "Stopped.", "zh": "已停止。"},
    "knowledge.operator_only": {
        "en": "Only the operator can add or delete documents: set a login (--auth) or an API token "
        "(CHAT_API_TOKEN), or use the app on the server itself.",
        "zh": "只有管理员可以添加或删除文档：请设置登录（--auth）或 API 令牌（CHAT_API_TOKEN），或在服务器本机上使用。",
    },
    "notice.interrupted": {
        "en": "Interrupted: the server stopped before this reply was finished.",
        "zh": "已中断：服务器在这条回复完成前停止了。",
    },
    # names the page gives its icon-only controls and skip link (chat/ui/assets)
    "page.send": {"en": "Send", "zh": "发送"},
    "page.stop": {"en": "Stop", "zh": "停止"},
    "page.details": {"en": "Show or hide details", "zh": "展开或收起详情"},
    "page.skip": {"en": "Skip to the message box", "zh": "跳到消息输入框"},
    "thinking.title": {"en": "Thinking", "zh": "思考过程"},  # a reasoning model's collapsed block
    "notice.reply_budget": {
        "en": "The context length leaves room for a reply of at most {tokens} tokens ({asked} asked).",
        "zh": "受上下文长度限制，本次回复最多 {tokens} 个 token（设置为 {asked}）。",
    },
    "notice.timeout": {
        "en": "The reply was cut off: it reached the time limit for one request.",
        "zh": "已达到单次请求的时间上限，回复被截断。",
    },
    "notice.length": {
        "en": "The reply reached the max new tokens limit.",
        "zh": "回复已达到最大生成长度。",
    },
    "stats.from_cache": {"en": "from cache", "zh": "来自缓存"},
    "stats.tokens": {"en": "{n} tokens", "zh": "{n} 个 token"},
    "stats.first_token": {"en": "first token {ms} ms", "zh": "首个 token {ms} 毫秒"},
    "stats.fallback": {"en": "fallback", "zh": "备用后端"},
    "stats.retries": {"en": "{n} retries", "zh": "重试 {n} 次"},
    "stats.dropped": {"en": "{n} old messages left out", "zh": "省略了 {n} 条旧消息"},
    "stats.prompt_cache": {
        "en": "prompt {cached} cached + {evaluated} evaluated",
        "zh": "提示词 {cached} 个来自缓存，{evaluated} 个新计算",
    },
    "stats.finish": {"en": "finish: {reason}", "zh": "结束原因：{reason}"},
    "notice.loading": {
        "en": "The model is loading, please wait… ({status})",
        "zh": "模型加载中，请稍候……（{status}）",
    },
    "notice.waiting": {
        "en": "Waiting for the model… position {position} in the queue.",
        "zh": "正在排队等待模型……当前位置：第 {position} 位。",
    },
    "notice.fallback": {
        "en": "{backend} ({model}) is answering because {failed} failed: {reason}",
        "zh": "{failed} 出错，改由 {backend}（{model}）回答：{reason}",
    },
    "loading.starting": {"en": "Starting…", "zh": "正在启动……"},
    "loading.fetching": {
        "en": "Fetching {source} from the Hugging Face Hub…",
        "zh": "正在从 Hugging Face Hub 获取 {source}……",
    },
    "loading.file": {"en": "Loading {name}…", "zh": "正在加载 {name}……"},
    "loading.ready": {"en": "Ready", "zh": "已就绪"},
    "loading.downloading": {
        "en": "Downloading {label}: {percent}% ({done} of {total} MB)",
        "zh": "正在下载 {label}：{percent}%（{done} / {total} MB）",
    },
    "loading.failed": {"en": "Failed: {error}", "zh": "加载失败：{error}"},
    # -- details of InvalidRequest (``InvalidRequest(reason=key, **fields)``) ------------------
    "invalid.history": {
        "en": "history must be a list of {{role, content}} objects",
        "zh": "history 必须是 {{role, content}} 对象的列表",
    },
    "invalid.history_role": {
        "en": "history role must be user or assistant, got {role}",
        "zh": "history 中的 role 只能是 user 或 assistant，收到的是 {role}",
    },
    "invalid.not_text": {
        "en": "{field} must be text, got {kind}",
        "zh": "{field} 必须是文本，收到的是 {kind}",
    },
    "invalid.messages": {
        "en": "messages must be a list of {{role, content}} objects",
        "zh": "messages 必须是 {{role, content}} 对象的列表",
    },
    "invalid.message_object": {
        "en": "each message must be an object, got {kind}",
        "zh": "每条消息都必须是对象，收到的是 {kind}",
    },
    "invalid.message_role": {
        "en": "message role must be one of {roles}, got {role}",
        "zh": "消息的 role 必须是 {roles} 之一，收到的是 {role}",
    },
    "invalid.last_user": {
        "en": "the last message must come from the user",
        "zh": "最后一条消息必须来自用户",
    },
    "invalid.unknown_backend": {
        "en": "unknown backend {backend}; available: {available}",
        "zh": "未知的后端 {backend}；可用的后端：{available}",
    },
    "invalid.number": {
        "en": "{name} must be a number, got {kind} {value}",
        "zh": "{name} 必须是数字，收到的是 {kind} {value}",
    },
    "invalid.range": {
        "en": "{name} must be between {low} and {high}, got {value}",
        "zh": "{name} 必须在 {low} 到 {high} 之间，收到的是 {value}",
    },
    "invalid.whole": {
        "en": "{name} must be a whole number, got {value}",
        "zh": "{name} 必须是整数，收到的是 {value}",
    },
    "invalid.seed": {"en": "seed must be an integer, got {value}", "zh": "seed 必须是整数，收到的是 {value}"},
    "format.not_object": {
        "en": 'response_format must be an object such as {{"type": "json_object"}}, got {kind}',
        "zh": 'response_format 必须是对象，例如 {{"type": "json_object"}}，收到的是 {kind}',
    },
    "format.type": {
        "en": "response_format.type must be one of {allowed}, got {value}",
        "zh": "response_format.type 必须是 {allowed} 之一，收到的是 {value}",
    },
    "format.grammar": {
        "en": "response_format.json_schema.schema is not supported by the local model's grammar: {error}",
        "zh": "本地模型的语法约束不支持这个 response_format.json_schema.schema：{error}",
    },
    "format.json_schema": {
        "en": 'response_format.json_schema must be an object: {{"name": ..., "schema": {{...}}, "strict": true}}',
        "zh": 'response_format.json_schema 必须是对象：{{"name": ..., "schema": {{...}}, "strict": true}}',
    },
    "format.unknown": {
        "en": "unknown field(s) in response_format.json_schema: {fields}; allowed: name, schema, strict, description",
        "zh": "response_format.json_schema 中有未知字段：{fields}；允许的字段：name、schema、strict、description",
    },
    "format.name": {
        "en": "response_format.json_schema.name must be 1-64 letters, digits, underscores or dashes, got {value}",
        "zh": "response_format.json_schema.name 必须是 1 到 64 个字母、数字、下划线或连字符，收到的是 {value}",
    },
    "format.schema": {
        "en": "response_format.json_schema.schema must be a JSON Schema object, got {kind}",
        "zh": "response_format.json_schema.schema 必须是 JSON Schema 对象，收到的是 {kind}",
    },
    "format.strict": {
        "en": "response_format.json_schema.strict must be true or false, got {kind}",
        "zh": "response_format.json_schema.strict 必须是 true 或 false，收到的是 {kind}",
    },
    "format.description": {
        "en": "response_format.json_schema.description must be a string, got {kind}",
        "zh": "response_format.json_schema.description 必须是字符串，收到的是 {kind}",
    },
    "format.too_deep": {
        "en": "response_format.json_schema.schema is nested too deeply",
        "zh": "response_format.json_schema.schema 嵌套层级太深",
    },
    "format.backend": {
        "en": "response_format {kind} is not supported by the {backend} backend ({model})",
        "zh": "{backend} 后端（{model}）不支持 response_format {kind}",
    },
    "import.too_large": {
        "en": "the file is larger than {limit} MB",
        "zh": "文件超过了 {limit} MB",
    },
    "import.not_json": {
        "en": "the file is not valid JSON ({error})",
        "zh": "文件不是有效的 JSON（{error}）",
    },
    "import.not_list": {
        "en": 'expected a list of messages, or {{"messages": [...]}}',
        "zh": '应为消息列表，或 {{"messages": [...]}}',
    },
    "import.role": {
        "en": "message {index} needs a role of user or assistant",
        "zh": "第 {index} 条消息的 role 必须是 user 或 assistant",
    },
    "import.content": {
        "en": "message {index} needs text content",
        "zh": "第 {index} 条消息的内容必须是文本",
    },
    # -- refusals of the service routes (``chat.service.errors``), whole sentences ------------
    "api.unauthorized": {
        "en": "a valid API token is required: send 'Authorization: Bearer <token>'",
        "zh": "需要有效的 API 令牌：请发送 'Authorization: Bearer <token>'",
    },
    "api.rate_limited": {
        "en": "too many requests: the limit is {limit} per minute per client; try again in {seconds} s",
        "zh": "请求过于频繁：每个客户端每分钟最多 {limit} 次；请 {seconds} 秒后再试",
    },
    "api.too_large": {
        "en": "request body is larger than the limit of {limit} bytes",
        "zh": "请求体超过了 {limit} 字节的上限",
    },
    "api.empty_body": {
        "en": "the request body is empty: send a JSON object",
        "zh": "请求体为空：请发送一个 JSON 对象",
    },
    "api.not_json": {"en": "the request body is not valid JSON", "zh": "请求体不是有效的 JSON"},
    "api.not_json_at": {
        "en": "the request body is not valid JSON (line {line}, column {column})",
        "zh": "请求体不是有效的 JSON（第 {line} 行，第 {column} 列）",
    },
    "api.too_deep": {
        "en": "the request body is nested too deeply: at most {limit} levels",
        "zh": "请求体嵌套层数过多：最多 {limit} 层",
    },
    "api.not_utf8": {
        "en": "the request body is not valid JSON (not UTF-8 text)",
        "zh": "请求体不是有效的 JSON（不是 UTF-8 文本）",
    },
    "api.not_object": {
        "en": "the request body must be a JSON object, got {kind}",
        "zh": "请求体必须是 JSON 对象，收到的是 {kind}",
    },
    "api.unknown_fields": {
        "en": "unknown field(s) in {where}: {unknown}; allowed: {allowed}",
        "zh": "{where}中有未知字段：{unknown}；允许的字段：{allowed}",
    },
    "api.where_body": {"en": "the request body", "zh": "请求体"},
    "api.where_message": {"en": "the message", "zh": "消息"},
    "api.required": {"en": "{field} is required", "zh": "缺少必填字段 {field}"},
    "api.not_string": {
        "en": "{field} must be a string, got {kind}",
        "zh": "{field} 必须是字符串，收到的是 {kind}",
    },
    "api.not_bool": {
        "en": "{field} must be true or false, got {kind}",
        "zh": "{field} 必须是 true 或 false，收到的是 {kind}",
    },
    "api.not_object_field": {
        "en": "{field} must be an object, got {kind}",
        "zh": "{field} 必须是对象，收到的是 {kind}",
    },
    "api.not_messages": {
        "en": "{field} must be a list of {{role, content}} objects, got {kind}",
        "zh": "{field} 必须是 {{role, content}} 对象的列表，收到的是 {kind}",
    },
    "api.ws_type": {
        "en": "unknown message type {kind}: use message, cancel or reset",
        "zh": "未知的消息类型 {kind}：请使用 message、cancel 或 reset",
    },
    "api.ws_history": {
        "en": 'the server keeps the history of a /ws conversation; send {{"type": "reset"}} to clear it',
        "zh": '/ws 对话的历史由服务器保存；要清空请发送 {{"type": "reset"}}',
    },
    "api.unsupported": {
        "en": "{field} is not supported by this server",
        "zh": "本服务器不支持 {field}",
    },
    "api.only_n1": {"en": "only n=1 is supported", "zh": "只支持 n=1"},
    "api.store_off": {
        "en": "this server keeps no conversations (CHAT_STORE=off): send the history with each request",
        "zh": "本服务器不保存对话（CHAT_STORE=off）：请在每个请求中发送历史记录",
    },
    "api.where_query": {"en": "the query string", "zh": "查询字符串"},
    "api.not_choice": {"en": "{field} must be one of: {choices}", "zh": "{field} 必须是以下之一：{choices}"},
    "api.too_long": {
        "en": "{field} must be at most {limit} characters",
        "zh": "{field} 最多 {limit} 个字符",
    },
    "api.too_many_lines": {
        "en": "{field} must be at most {limit} lines",
        "zh": "{field} 最多 {limit} 行",
    },
    "api.not_found_message": {
        "en": "That message does not exist in this conversation, or it is not a reply.",
        "zh": "该对话中不存在这条消息，或它不是助手的回复。",
    },
    "api.not_count": {"en": "{field} must be a whole number", "zh": "{field} 必须是整数"},
    "api.messages_empty": {"en": "messages must not be empty", "zh": "messages 不能为空"},
    # -- refusals of the door (``chat.service.access``) ----------------------------------------
    "api.unauthorized_any": {
        "en": "authentication required: log in, or send the login as HTTP Basic, or "
        "'Authorization: Bearer <token>'",
        "zh": "需要身份验证：请登录，或以 HTTP Basic 发送登录信息，或发送 'Authorization: Bearer <token>'",
    },
    "api.queue_full": {
        "en": "the model's queue is full; try again in {seconds} s",
        "zh": "模型的等待队列已满；请 {seconds} 秒后再试",
    },
    "api.json_only": {
        "en": "send the request body as JSON with 'Content-Type: application/json'",
        "zh": "请以 JSON 发送请求体，并设置 'Content-Type: application/json'",
    },
    "api.origin": {
        "en": "this page's origin may not open /ws (see CHAT_ALLOWED_ORIGINS)",
        "zh": "该页面的来源不允许打开 /ws（见 CHAT_ALLOWED_ORIGINS）",
    },
    # -- /ws close reasons (at most 123 bytes in UTF-8) ---------------------------------------
    "ws.too_many": {
        "en": "too many connections: at most {cap} per client",
        "zh": "连接过多：每个客户端最多 {cap} 个",
    },
    "ws.idle": {
        "en": "idle timeout: no message for {seconds} s",
        "zh": "空闲超时：{seconds} 秒内没有消息",
    },
    "api.upload_too_large": {
        "en": "the file is larger than the upload limit of {limit} bytes",
        "zh": "文件超过了 {limit} 字节的上传上限",
    },
    # -- knowledge bases (``chat.knowledge.errors``, ``chat.service.knowledge``) ---------------
    "knowledge.error": {"en": "Knowledge base error: {detail}", "zh": "知识库出错：{detail}"},
    "knowledge.bad_name": {
        "en": "'{name}' cannot name a knowledge base: use 1-64 letters, digits, '-', '_' or '.'",
        "zh": "“{name}”不能作为知识库名称：请使用 1-64 个字母、数字或 '-'、'_'、'.'",
    },
    "knowledge.not_found": {
        "en": "There is no knowledge base or document '{name}'.",
        "zh": "没有名为“{name}”的知识库或文档。",
    },
    "knowledge.unsupported": {
        "en": "Cannot read {kind} files; the supported types are {types}.",
        "zh": "无法读取 {kind} 文件；支持的类型为 {types}。",
    },
    "knowledge.too_large": {
        "en": "The document is {size} bytes; the limit is {limit} bytes (CHAT_KNOWLEDGE_MAX_BYTES).",
        "zh": "文档大小为 {size} 字节，上限为 {limit} 字节（CHAT_KNOWLEDGE_MAX_BYTES）。",
    },
    "knowledge.empty": {
        "en": "The document contains no text (an empty file, or a scanned PDF without a text layer).",
        "zh": "文档中没有文字（文件为空，或是没有文字层的扫描版 PDF）。",
    },
    "knowledge.encrypted": {
        "en": "The document is password-protected: remove the password and upload it again.",
        "zh": "文档受密码保护：请去除密码后重新上传。",
    },
    "knowledge.broken": {"en": "The file cannot be read: {detail}.", "zh": "无法读取该文件：{detail}。"},
    "knowledge.not_valid": {"en": "it is not a valid {kind} file", "zh": "它不是有效的 {kind} 文件"},
    "knowledge.binary": {"en": "it holds binary data, not text", "zh": "它包含二进制数据，而不是文字"},
    "knowledge.encoding": {
        "en": "its text is not in UTF-8, UTF-16 or GB18030",
        "zh": "其文字编码不是 UTF-8、UTF-16 或 GB18030",
    },
    "knowledge.csv": {"en": "its CSV rows cannot be read", "zh": "无法读取其中的 CSV 行"},
    "knowledge.unpacked": {
        "en": "it unpacks to more than {limit} bytes",
        "zh": "解压后超过 {limit} 字节",
    },
    # the page's knowledge panel and the sources under a reply (chat/ui/knowledge.py)
    "knowledge.sources": {"en": "Sources ({count})", "zh": "参考来源（{count}）"},
    "knowledge.col_document": {"en": "Document", "zh": "文档"},
    "knowledge.col_chunks": {"en": "Chunks", "zh": "片段数"},
    "knowledge.no_documents": {"en": "No documents yet.", "zh": "还没有文档。"},
    "knowledge.upload_missing": {
        "en": "Choose a knowledge base name and at least one file.",
        "zh": "请填写知识库名称并选择至少一个文件。",
    },
    "knowledge.uploaded": {
        "en": "{name}: {chunks} chunks indexed.",
        "zh": "{name}：已索引 {chunks} 个片段。",
    },
    "knowledge.deleted": {"en": "✅ Document deleted.", "zh": "✅ 文档已删除。"},
    "knowledge.delete_missing": {"en": "Choose a document to delete.", "zh": "请选择要删除的文档。"},
    "api.file_required": {
        "en": "send the document as a multipart/form-data field named 'file'",
        "zh": "请以名为 'file' 的 multipart/form-data 字段发送文档",
    },
}


def detect_language(text: str) -> Lang:
    """Chinese if the text contains any CJK ideograph, else English."""
    return "zh" if _CJK.search(text or "") else "en"


def request_language(text: str = "", accept_language: str = "") -> Lang:
    """The user's language: from what they wrote, else (nothing written yet, e.g. a malformed
    body) from the ``Accept-Language`` header's first choice, else English."""
    if text and text.strip():
        return detect_language(text)
    first = accept_language.split(",", 1)[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


class Phrase(str):
    """A sentence of ``MESSAGES`` made where the reader's language is unknown (a loading status
    set by a background thread): it is its English text, and ``translated`` renders it later in
    the language of whoever reads it."""

    key: str
    fields: dict[str, object]

    def __new__(cls, key: str, **fields: object) -> Phrase:
        phrase = super().__new__(cls, t(key, "en", **fields))
        phrase.key, phrase.fields = key, fields
        return phrase


def translated(text: str, lang: Lang) -> str:
    """``text`` in ``lang`` when it is a ``Phrase``; any other text as it is."""
    return t(text.key, lang, **text.fields) if isinstance(text, Phrase) else text


def t(key: str, lang: Lang = "en", **fields: object) -> str:
    """The message ``key`` in ``lang``, with ``fields`` filled in (missing fields stay blank)."""
    entry = MESSAGES.get(key) or MESSAGES["error.internal"]
    template = entry.get(lang) or entry["en"]
    return template.format_map(_Blank(fields))


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""
