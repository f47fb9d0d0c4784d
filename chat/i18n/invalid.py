"""Details of an invalid request (``InvalidRequest(reason=key, **fields)``): history, messages,
numbers, response formats, imported conversations."""

from chat.i18n.catalogue import entries

MESSAGES = entries(
    """
# details of InvalidRequest (``InvalidRequest(reason=key, **fields)``)
invalid.history
  en: history must be a list of {{role, content}} objects
  zh: history 必须是 {{role, content}} 对象的列表
invalid.history_role
  en: history role must be user or assistant, got {role}
  zh: history 中的 role 只能是 user 或 assistant，收到的是 {role}
invalid.not_text
  en: {field} must be text, got {kind}
  zh: {field} 必须是文本，收到的是 {kind}
invalid.messages
  en: messages must be a list of {{role, content}} objects
  zh: messages 必须是 {{role, content}} 对象的列表
invalid.message_object
  en: each message must be an object, got {kind}
  zh: 每条消息都必须是对象，收到的是 {kind}
invalid.message_role
  en: message role must be one of {roles}, got {role}
  zh: 消息的 role 必须是 {roles} 之一，收到的是 {role}
invalid.last_user
  en: the last message must come from the user
  zh: 最后一条消息必须来自用户
invalid.unknown_backend
  en: unknown backend {backend}; available: {available}
  zh: 未知的后端 {backend}；可用的后端：{available}
invalid.number
  en: {name} must be a number, got {kind} {value}
  zh: {name} 必须是数字，收到的是 {kind} {value}
invalid.range
  en: {name} must be between {low} and {high}, got {value}
  zh: {name} 必须在 {low} 到 {high} 之间，收到的是 {value}
invalid.whole
  en: {name} must be a whole number, got {value}
  zh: {name} 必须是整数，收到的是 {value}
invalid.seed
  en: seed must be an integer, got {value}
  zh: seed 必须是整数，收到的是 {value}
invalid.key_reused
  en: this idempotency key already names another message in this conversation: send a new message with a new key
  zh: 这个幂等键已用于本对话中的另一条消息：发送新消息时请使用新的键
format.not_object
  en: response_format must be an object such as {{"type": "json_object"}}, got {kind}
  zh: response_format 必须是对象，例如 {{"type": "json_object"}}，收到的是 {kind}
format.type
  en: response_format.type must be one of {allowed}, got {value}
  zh: response_format.type 必须是 {allowed} 之一，收到的是 {value}
format.grammar
  en: response_format.json_schema.schema is not supported by the local model's grammar: {error}
  zh: 本地模型的语法约束不支持这个 response_format.json_schema.schema：{error}
format.json_schema
  en: response_format.json_schema must be an object: {{"name": ..., "schema": {{...}}, "strict": true}}
  zh: response_format.json_schema 必须是对象：{{"name": ..., "schema": {{...}}, "strict": true}}
format.unknown
  en: unknown field(s) in response_format.json_schema: {fields}; allowed: name, schema, strict, description
  zh: response_format.json_schema 中有未知字段：{fields}；允许的字段：name、schema、strict、description
format.name
  en: response_format.json_schema.name must be 1-64 letters, digits, underscores or dashes, got {value}
  zh: response_format.json_schema.name 必须是 1 到 64 个字母、数字、下划线或连字符，收到的是 {value}
format.schema
  en: response_format.json_schema.schema must be a JSON Schema object, got {kind}
  zh: response_format.json_schema.schema 必须是 JSON Schema 对象，收到的是 {kind}
format.strict
  en: response_format.json_schema.strict must be true or false, got {kind}
  zh: response_format.json_schema.strict 必须是 true 或 false，收到的是 {kind}
format.description
  en: response_format.json_schema.description must be a string, got {kind}
  zh: response_format.json_schema.description 必须是字符串，收到的是 {kind}
format.too_deep
  en: response_format.json_schema.schema is nested too deeply
  zh: response_format.json_schema.schema 嵌套层级太深
format.backend
  en: response_format {kind} is not supported by the {backend} backend ({model})
  zh: {backend} 后端（{model}）不支持 response_format {kind}
import.too_large
  en: the file is larger than {limit} MB
  zh: 文件超过了 {limit} MB
import.not_json
  en: the file is not valid JSON ({error})
  zh: 文件不是有效的 JSON（{error}）
import.not_list
  en: expected a list of messages, or {{"messages": [...]}}
  zh: 应为消息列表，或 {{"messages": [...]}}
import.role
  en: message {index} needs a role of user or assistant
  zh: 第 {index} 条消息的 role 必须是 user 或 assistant
import.content
  en: message {index} needs text content
  zh: 第 {index} 条消息的内容必须是文本
"""
)
