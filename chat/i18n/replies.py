"""What a reply and its errors say: errors, notices, the reply's figures, model loading, and
the names of the page's icon-only controls."""

from chat.i18n.catalogue import entries

MESSAGES = entries(
    """
error.internal
  en: Something went wrong on the server. Please try again.
  zh: 服务器出现问题，请重试。
error.config
  en: Configuration error: {detail}
  zh: 配置错误：{detail}
error.invalid
  en: Invalid request: {detail}
  zh: 请求无效：{detail}
error.context_overflow
  en: Your message is too long for the context window: it needs {needed} tokens but only {available} fit after reserving {reserved} for the reply. Shorten the message, raise the context length, or lower max new tokens.
  zh: 消息太长，超出上下文窗口：需要 {needed} 个 token，但为回复预留 {reserved} 个后只剩 {available} 个。请缩短消息、调大上下文长度或调小最大生成长度。
error.input_blocked
  en: Sorry, I can't help with that request.
  zh: 抱歉，我无法协助处理这个请求。
error.output_blocked
  en: The reply was withheld because it matched the content policy.
  zh: 回复内容触发了内容安全策略，已被屏蔽。
error.backend
  en: The model backend failed ({backend}). Please try again.
  zh: 模型后端出错（{backend}），请重试。
error.unavailable
  en: The model service is unavailable ({backend}). Please try again shortly.
  zh: 模型服务暂不可用（{backend}），请稍后重试。
error.timeout
  en: The model service did not answer in time ({backend}).
  zh: 模型服务响应超时（{backend}）。
error.rate_limited
  en: The model service is rate-limiting requests ({backend}). Please wait and try again.
  zh: 模型服务请求过于频繁（{backend}），请稍候再试。
error.auth
  en: The model service rejected the credentials ({backend}): check your API key.
  zh: 模型服务拒绝了凭据（{backend}）：请检查 API 密钥。
error.bad_response
  en: The model service sent an unexpected response ({backend}).
  zh: 模型服务返回了无法识别的响应（{backend}）。
error.empty
  en: Please type a message.
  zh: 请输入消息。
error.input_credentials
  en: Your message seems to contain a password, verification code or other secret, so it was not sent. Never share passwords or codes in a chat, not even with support.
  zh: 您的消息似乎包含密码、验证码或其他密钥，为保护账户安全，消息未被发送。请勿在聊天中透露密码或验证码，包括对客服。
error.moderation_unavailable
  en: The content check is unavailable right now, so the message was not sent. Please try again later.
  zh: 内容审核服务暂时不可用，消息未被发送，请稍后再试。
error.refused_earlier
  en: Message {n} of {total} in this conversation (not the newest) was refused. Remove or edit that message, or start a new conversation, and send again.
  zh: 本对话共 {total} 条消息，其中第 {n} 条（不是最新一条）未通过内容检查。请删除或修改该消息，或开始新的对话，然后重新发送。
error.refused_system
  en: The system prompt of this conversation was refused. Change it and send again.
  zh: 本对话的系统提示词未通过内容检查，请修改后重新发送。
error.message_too_long
  en: Your message is too long ({length} characters; the limit is {limit}). Please shorten it or send it in parts.
  zh: 消息太长（{length} 个字符，上限为 {limit} 个）。请缩短后再发送，或分成几条发送。
error.store
  en: The conversation could not be saved or loaded. Please try again.
  zh: 对话无法保存或读取，请重试。
error.not_found
  en: That conversation does not exist (or was deleted).
  zh: 该对话不存在（或已被删除）。
error.too_many_turns
  en: This conversation has reached its limit of {limit} messages. Please start a new chat.
  zh: 本次对话已达到 {limit} 条消息的上限，请开始新的对话。
notice.trimmed
  en: {count} earlier message(s) were left out to fit the context length.
  zh: 为适应上下文长度，省略了较早的 {count} 条消息。
# what the model still sees of a conversation longer than the context (chat.reply.notes)
notice.history_summary
  en: The model sees the last {seen} messages and a summary of the {summarised} before them.
  zh: 模型能看到最近的 {seen} 条消息，以及之前 {summarised} 条消息的摘要。
notice.history_trimmed
  en: The model sees only the last {seen} messages: the {left} before them do not fit the context length.
  zh: 模型只能看到最近的 {seen} 条消息：之前的 {left} 条放不进上下文长度。
notice.history_both
  en: The model sees the last {seen} messages and a summary of the first {summarised}; the {left} in between are left out until the summary catches up.
  zh: 模型能看到最近的 {seen} 条消息和最早 {summarised} 条消息的摘要；中间的 {left} 条暂未写入摘要，本次未使用。
profile.saved
  en: Profile saved.
  zh: 资料已保存。
notice.notes_dropped
  en: Some background (a summary of earlier messages, your profile or reference text) was left out: it does not fit the context length.
  zh: 部分背景信息（较早消息的摘要、个人资料或参考资料）放不进上下文长度，本次未使用。
notice.ctx_capped
  en: Context length {requested} is above the loaded model window; using {used}.
  zh: 上下文长度 {requested} 超过了模型已加载的窗口，实际使用 {used}。
notice.stopped
  en: Stopped.
  zh: 已停止。
knowledge.operator_only
  en: Only the operator can add or delete documents: set a login (CHAT_AUTH) or an API token (CHAT_API_TOKEN), or use the app on the server itself, not through a proxy.
  zh: 只有管理员可以添加或删除文档：请设置登录（CHAT_AUTH）或 API 令牌（CHAT_API_TOKEN），或在服务器本机上直接使用（不经代理）。
notice.interrupted
  en: Interrupted: the server stopped before this reply was finished.
  zh: 已中断：服务器在这条回复完成前停止了。
# names the page gives its icon-only controls and skip link (chat/ui/assets)
page.send
  en: Send
  zh: 发送
page.stop
  en: Stop
  zh: 停止
page.details
  en: Show or hide details
  zh: 展开或收起详情
page.skip
  en: Skip to the message box
  zh: 跳到消息输入框
page.sidebar
  en: Show or hide the sidebar
  zh: 显示或隐藏侧栏
page.reset
  en: Reset to the default value
  zh: 恢复默认值
page.number
  en: {name}: value
  zh: {name}：数值
page.range
  en: {name}: slider
  zh: {name}：滑块
page.copy
  en: Copy message
  zh: 复制消息
page.copy_all
  en: Copy conversation
  zh: 复制整个对话
page.clear
  en: Clear the chat
  zh: 清空对话
page.like
  en: Like
  zh: 赞
page.liked
  en: Liked
  zh: 已赞
page.dislike
  en: Dislike
  zh: 踩
page.disliked
  en: Disliked
  zh: 已踩
page.retry
  en: Retry
  zh: 重新生成
page.undo
  en: Undo
  zh: 撤销
page.edit
  en: Edit
  zh: 编辑
page.upload
  en: Upload a file
  zh: 上传文件
page.continue_words
  en: Please continue.
  zh: 请继续。
page.chat_log
  en: Conversation
  zh: 对话内容
page.footer_nav
  en: Page footer
  zh: 页脚
page.no_conversations
  en: No conversations yet: each chat you start is kept here.
  zh: 还没有对话：开始聊天后，对话会保存在这里。
page.no_match
  en: No conversation matches “{search}”.
  zh: 没有与“{search}”匹配的对话。
page.knowledge_unused
  en: No persona uses {names}: choose it under “Knowledge base” to answer from it.
  zh: 还没有角色使用 {names}：在“知识库”中选择它，回答就会参考其中的文档。
# the first-visit hint of a Chinese page on the embedded English model (chat/ui/model_hint.py)
page.model_hint
  en: The demo model ({model}) understands English only: its replies in other languages are unreliable. For Chinese, the operator can choose a Chinese-capable GGUF with --model (or CHAT_MODEL), for example {suggested}.
  zh: 当前的演示模型（{model}）只懂英文，用中文提问时回答并不可靠。若要用中文聊天，请让管理员用 --model（或环境变量 CHAT_MODEL）换一个支持中文的 GGUF 模型，例如 {suggested}。
# a reasoning model's collapsed block
thinking.title
  en: Thinking
  zh: 思考过程
notice.reply_budget
  en: The context length leaves room for a reply of at most {tokens} tokens ({asked} asked).
  zh: 受上下文长度限制，本次回复最多 {tokens} 个 token（设置为 {asked}）。
notice.timeout
  en: The reply was cut off: it reached the time limit for one request.
  zh: 已达到单次请求的时间上限，回复被截断。
notice.length
  en: The reply reached the max new tokens limit.
  zh: 回复已达到最大生成长度。
# the stats line under the chat (chat.ui.bubbles.format_stats), in plain words
stats.from_cache
  en: answered from the cache
  zh: 来自缓存的回答
stats.tokens
  en: {n} tokens
  zh: {n} 个 token
stats.first_token
  en: first word after {time}
  zh: {time}后开始回答
stats.speed
  en: {n} tokens a second
  zh: 每秒 {n} 个 token
stats.fallback
  en: answered by the backup model
  zh: 由备用模型回答
stats.retries
  en: {n} retries
  zh: 重试 {n} 次
stats.dropped
  en: {n} old messages left out
  zh: 省略了 {n} 条旧消息
stats.finish_length
  en: stopped at the length limit
  zh: 已达到长度上限
stats.finish_cancelled
  en: stopped
  zh: 已停止
stats.finish_blocked
  en: withheld
  zh: 已屏蔽
stats.finish_error
  en: failed
  zh: 出错
stats.finish_timeout
  en: cut off by the time limit
  zh: 已达到时间上限
notice.loading
  en: The model is loading, please wait… ({status})
  zh: 模型加载中，请稍候……（{status}）
notice.waiting
  en: Waiting for the model… position {position} in the queue.
  zh: 正在排队等待模型……当前位置：第 {position} 位。
notice.fallback
  en: {backend} ({model}) is answering because {failed} failed: {reason}
  zh: {failed} 出错，改由 {backend}（{model}）回答：{reason}
loading.starting
  en: Starting…
  zh: 正在启动……
loading.fetching
  en: Fetching {source} from the Hugging Face Hub…
  zh: 正在从 Hugging Face Hub 获取 {source}……
loading.file
  en: Loading {name}…
  zh: 正在加载 {name}……
loading.preloaded
  en: No model set: using {name}, preloaded from the Hugging Face Hub
  zh: 未指定模型：使用从 Hugging Face Hub 预加载的 {name}
loading.embedded
  en: No model set: using the embedded SmolLM2-135M (no model preloaded from the Hub)
  zh: 未指定模型：使用内置的 SmolLM2-135M（没有从 Hub 预加载的模型）
loading.ready
  en: Ready
  zh: 已就绪
loading.downloading
  en: Downloading {label}: {percent}% ({done} of {total} MB)
  zh: 正在下载 {label}：{percent}%（{done} / {total} MB）
loading.failed
  en: Failed: {error}
  zh: 加载失败：{error}
"""
)
