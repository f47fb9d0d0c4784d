"""Sentences of tools: the page's tool blocks, the loop's notices, ``tools`` refusals (``chat.tools``)."""

from chat.i18n.catalogue import entries

MESSAGES = entries(
    """
# a call's collapsed block on the page
tools.title
  en: Tool: {name}
  zh: 工具：{name}
tools.arguments
  en: Arguments
  zh: 参数
tools.result
  en: Result
  zh: 结果
tools.status.ok
  en: done in {seconds} s
  zh: 用时 {seconds} 秒
tools.status.error
  en: the tool reported an error
  zh: 工具返回了错误
tools.status.timeout
  en: no answer in time
  zh: 超时未响应
tools.status.unavailable
  en: its server is unavailable
  zh: 工具服务器不可用
tools.status.unknown
  en: no such tool
  zh: 没有这个工具
tools.status.invalid
  en: arguments refused
  zh: 参数不符合要求
tools.status.blocked
  en: result withheld
  zh: 结果已被拦截
tools.status.cancelled
  en: stopped
  zh: 已停止
tools.status.declined
  en: not run: it needs your confirmation
  zh: 未执行：需要您确认
tools.blocked
  en: The tool's result was withheld by the content filter.
  zh: 工具返回的结果已被内容过滤器拦截。
tools.cut
  en: [cut: the result has {total} characters, the first {kept} are kept]
  zh: [已截断：结果共 {total} 个字符，保留前 {kept} 个]
tools.rounds
  en: The assistant used tools {n} times, the most allowed for one reply; it answers with what it has.
  zh: 助手已调用工具 {n} 次，达到单次回复的上限，将根据已有信息作答。
tools.confirm
  en: The assistant wants to run {name} with {arguments}. Reply “yes” to run it, anything else to skip it.
  zh: 助手想要执行 {name}，参数为 {arguments}。回复“是”即执行，回复其他内容则跳过。
tools.not_list
  en: tools must be a list, got {kind}
  zh: tools 必须是列表，收到的是 {kind}
tools.too_many
  en: at most {limit} tools per request, got {count}
  zh: 每个请求最多 {limit} 个工具，收到 {count} 个
tools.entry
  en: tools[{index}] must be {{"type": "function", "function": {{"name": ..., "parameters": {{...}}}}}}
  zh: tools[{index}] 必须是 {{"type": "function", "function": {{"name": ..., "parameters": {{...}}}}}}
tools.name
  en: tools[{index}].function.name must be 1-64 letters, digits, underscores or dashes, got {value}
  zh: tools[{index}].function.name 必须是 1 到 64 个字母、数字、下划线或连字符，收到的是 {value}
tools.parameters
  en: the parameters of tool {name} must be a JSON Schema object, got {kind}
  zh: 工具 {name} 的 parameters 必须是 JSON Schema 对象，收到的是 {kind}
tools.description
  en: the description of tool {name} must be text
  zh: 工具 {name} 的 description 必须是文本
tools.duplicate
  en: tool names must be unique: {names}
  zh: 工具名称不能重复：{names}
tools.choice
  en: tool_choice must be "none", "auto", "required" or {{"type": "function", "function": {{"name": ...}}}}, got {value}
  zh: tool_choice 必须是 "none"、"auto"、"required" 或 {{"type": "function", "function": {{"name": ...}}}}，收到的是 {value}
tools.choice_unknown
  en: tool_choice names {name}, which is not among the tools: {names}
  zh: tool_choice 指定的 {name} 不在 tools 中：{names}
tools.choice_without_tools
  en: tool_choice needs tools: the request offers none
  zh: tool_choice 需要同时提供 tools：请求中没有工具
tools.parallel
  en: parallel_tool_calls must be true or false, got {kind}
  zh: parallel_tool_calls 必须是 true 或 false，收到的是 {kind}
invalid.tool_call
  en: tool_calls must be a list of {{"id", "type": "function", "function": {{"name", "arguments"}}}}
  zh: tool_calls 必须是 {{"id", "type": "function", "function": {{"name", "arguments"}}}} 的列表
invalid.tool_call_id
  en: a message with role tool must name the call it answers (tool_call_id)
  zh: role 为 tool 的消息必须用 tool_call_id 指明它回应的调用
"""
)
