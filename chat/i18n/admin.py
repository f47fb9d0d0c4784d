"""The operator page and its API (``chat.service.admin``)."""

from chat.i18n.catalogue import entries

MESSAGES = entries(
    """
admin.operator_only
  en: Only the operator may see this page and its data: set a login (--auth) or an API token (CHAT_API_TOKEN) and sign in, or open it on the server's own machine.
  zh: 只有运营者可以查看此页面及其数据：请设置登录（--auth）或 API 令牌（CHAT_API_TOKEN）并登录，或在服务器本机上打开。
admin.bad_date
  en: {field} must be a date like 2026-12-31, got '{value}'
  zh: {field} 必须是日期，例如 2026-12-31，收到的是“{value}”
"""
)
