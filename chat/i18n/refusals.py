"""Refusals of the service routes (``chat.service.errors``) and the door
(``chat.service.door.access``), and WebSocket close reasons: whole sentences."""

from chat.i18n.catalogue import entries

MESSAGES = entries(
    """
# refusals of the service routes (``chat.service.errors``), whole sentences
api.unauthorized
  en: a valid API token is required: send 'Authorization: Bearer <token>'
  zh: 需要有效的 API 令牌：请发送 'Authorization: Bearer <token>'
api.rate_limited
  en: too many requests: the limit is {limit} per minute per client; try again in {seconds} s
  zh: 请求过于频繁：每个客户端每分钟最多 {limit} 次；请 {seconds} 秒后再试
api.too_large
  en: request body is larger than the limit of {limit} bytes
  zh: 请求体超过了 {limit} 字节的上限
api.empty_body
  en: the request body is empty: send a JSON object
  zh: 请求体为空：请发送一个 JSON 对象
api.not_json
  en: the request body is not valid JSON
  zh: 请求体不是有效的 JSON
api.not_json_at
  en: the request body is not valid JSON (line {line}, column {column})
  zh: 请求体不是有效的 JSON（第 {line} 行，第 {column} 列）
api.too_deep
  en: the request body is nested too deeply: at most {limit} levels
  zh: 请求体嵌套层数过多：最多 {limit} 层
api.not_utf8
  en: the request body is not valid JSON (not UTF-8 text)
  zh: 请求体不是有效的 JSON（不是 UTF-8 文本）
api.not_object
  en: the request body must be a JSON object, got {kind}
  zh: 请求体必须是 JSON 对象，收到的是 {kind}
api.unknown_fields
  en: unknown field(s) in {where}: {unknown}; allowed: {allowed}
  zh: {where}中有未知字段：{unknown}；允许的字段：{allowed}
api.where_body
  en: the request body
  zh: 请求体
api.where_message
  en: the message
  zh: 消息
api.required
  en: {field} is required
  zh: 缺少必填字段 {field}
api.not_string
  en: {field} must be a string, got {kind}
  zh: {field} 必须是字符串，收到的是 {kind}
api.not_bool
  en: {field} must be true or false, got {kind}
  zh: {field} 必须是 true 或 false，收到的是 {kind}
api.not_object_field
  en: {field} must be an object, got {kind}
  zh: {field} 必须是对象，收到的是 {kind}
api.not_messages
  en: {field} must be a list of {{role, content}} objects, got {kind}
  zh: {field} 必须是 {{role, content}} 对象的列表，收到的是 {kind}
api.ws_type
  en: unknown message type {kind}: use message, cancel or reset
  zh: 未知的消息类型 {kind}：请使用 message、cancel 或 reset
api.ws_history
  en: the server keeps the history of a /ws conversation; send {{"type": "reset"}} to clear it
  zh: /ws 对话的历史由服务器保存；要清空请发送 {{"type": "reset"}}
api.unsupported
  en: {field} is not supported by this server
  zh: 本服务器不支持 {field}
api.only_n1
  en: only n=1 is supported
  zh: 只支持 n=1
api.store_off
  en: this server keeps no conversations (CHAT_STORE=off): send the history with each request
  zh: 本服务器不保存对话（CHAT_STORE=off）：请在每个请求中发送历史记录
api.where_query
  en: the query string
  zh: 查询字符串
api.not_choice
  en: {field} must be one of: {choices}
  zh: {field} 必须是以下之一：{choices}
api.too_long
  en: {field} must be at most {limit} characters
  zh: {field} 最多 {limit} 个字符
api.too_many_lines
  en: {field} must be at most {limit} lines
  zh: {field} 最多 {limit} 行
api.not_found_message
  en: That message does not exist in this conversation, or it is not a reply.
  zh: 该对话中不存在这条消息，或它不是助手的回复。
api.not_count
  en: {field} must be a whole number
  zh: {field} 必须是整数
api.messages_empty
  en: messages must not be empty
  zh: messages 不能为空
# refusals of the door (``chat.service.door.access``)
api.unauthorized_any
  en: authentication required: log in, or send the login as HTTP Basic, or 'Authorization: Bearer <token>'
  zh: 需要身份验证：请登录，或以 HTTP Basic 发送登录信息，或发送 'Authorization: Bearer <token>'
api.queue_full
  en: the model's queue is full; try again in {seconds} s
  zh: 模型的等待队列已满；请 {seconds} 秒后再试
api.json_only
  en: send the request body as JSON with 'Content-Type: application/json'
  zh: 请以 JSON 发送请求体，并设置 'Content-Type: application/json'
api.cross_site
  en: a page of another site cannot change this app's data (CHAT_ALLOWED_ORIGINS lists the sites that may)
  zh: 其他网站的页面不能修改本应用的数据（CHAT_ALLOWED_ORIGINS 列出允许的网站）
api.logout
  en: /logout ends the session of the browser page that sends it; a token or a login header has none
  zh: /logout 只结束发送它的浏览器页面的会话；令牌或登录标头没有可结束的会话
api.multipart
  en: the upload cannot be read: send the document in a multipart/form-data field named 'file', with headers (the file name among them) under 4 KB
  zh: 无法读取上传内容：请以名为 'file' 的 multipart/form-data 字段发送文档，其标头（包括文件名）不超过 4 KB
api.origin
  en: this page's origin may not open /ws (see CHAT_ALLOWED_ORIGINS)
  zh: 该页面的来源不允许打开 /ws（见 CHAT_ALLOWED_ORIGINS）
# /ws close reasons (at most 123 bytes in UTF-8)
ws.too_many
  en: too many connections: at most {cap} per client
  zh: 连接过多：每个客户端最多 {cap} 个
ws.idle
  en: idle timeout: no message for {seconds} s
  zh: 空闲超时：{seconds} 秒内没有消息
api.upload_too_large
  en: the file is larger than the upload limit of {limit} bytes
  zh: 文件超过了 {limit} 字节的上传上限
"""
)
