"""Knowledge bases: their errors (``chat.knowledge.errors``, ``chat.service.knowledge``) and
the page's knowledge panel."""

from chat.i18n.catalogue import entries

MESSAGES = entries(
    """
# knowledge bases (``chat.knowledge.errors``, ``chat.service.knowledge``)
knowledge.error
  en: Knowledge base error: {detail}
  zh: 知识库出错：{detail}
knowledge.bad_name
  en: '{name}' cannot name a knowledge base: use 1-64 letters, digits, '-', '_' or '.'
  zh: “{name}”不能作为知识库名称：请使用 1-64 个字母、数字或 '-'、'_'、'.'
knowledge.not_found
  en: There is no knowledge base or document '{name}'.
  zh: 没有名为“{name}”的知识库或文档。
knowledge.unsupported
  en: Cannot read {kind} files; the supported types are {types}.
  zh: 无法读取 {kind} 文件；支持的类型为 {types}。
knowledge.too_large
  en: The document is {size} bytes; the limit is {limit} bytes (CHAT_KNOWLEDGE_MAX_BYTES).
  zh: 文档大小为 {size} 字节，上限为 {limit} 字节（CHAT_KNOWLEDGE_MAX_BYTES）。
knowledge.empty
  en: The document contains no text (an empty file, or a scanned PDF without a text layer).
  zh: 文档中没有文字（文件为空，或是没有文字层的扫描版 PDF）。
knowledge.encrypted
  en: The document is password-protected: remove the password and upload it again.
  zh: 文档受密码保护：请去除密码后重新上传。
knowledge.broken
  en: The file cannot be read: {detail}.
  zh: 无法读取该文件：{detail}。
knowledge.not_valid
  en: it is not a valid {kind} file
  zh: 它不是有效的 {kind} 文件
knowledge.binary
  en: it holds binary data, not text
  zh: 它包含二进制数据，而不是文字
knowledge.encoding
  en: its text is not in UTF-8, UTF-16 or GB18030
  zh: 其文字编码不是 UTF-8、UTF-16 或 GB18030
knowledge.csv
  en: its CSV rows cannot be read
  zh: 无法读取其中的 CSV 行
knowledge.unpacked
  en: it unpacks to more than {limit} bytes
  zh: 解压后超过 {limit} 字节
knowledge.too_long
  en: The document is too long: {detail}.
  zh: 文档过长：{detail}。
knowledge.limit_chars
  en: its text is over {limit} characters (CHAT_KNOWLEDGE_MAX_CHARS); split it into smaller documents
  zh: 其文字超过 {limit} 个字符（CHAT_KNOWLEDGE_MAX_CHARS）；请拆分成较小的文档
knowledge.limit_chunks
  en: it makes more than {limit} chunks (CHAT_KNOWLEDGE_MAX_CHUNKS); split it into smaller documents
  zh: 它会切分成超过 {limit} 个片段（CHAT_KNOWLEDGE_MAX_CHUNKS）；请拆分成较小的文档
knowledge.limit_pages
  en: it has more than {limit} pages
  zh: 它超过 {limit} 页
knowledge.entries
  en: it holds more than {limit} files
  zh: 其中包含超过 {limit} 个文件
knowledge.bad_document_name
  en: The file name cannot be used: {detail}.
  zh: 无法使用该文件名：{detail}。
knowledge.name_empty
  en: it has no visible characters
  zh: 其中没有可见字符
knowledge.name_long
  en: it is {length} characters long; the most is {limit}
  zh: 它有 {length} 个字符，最多 {limit} 个
# the page's knowledge panel and the sources under a reply (chat/ui/knowledge.py)
knowledge.sources
  en: Sources ({count})
  zh: 参考来源（{count}）
knowledge.col_document
  en: Document
  zh: 文档
knowledge.col_chunks
  en: Chunks
  zh: 片段数
knowledge.no_documents
  en: No documents yet.
  zh: 还没有文档。
knowledge.upload_missing
  en: Choose a knowledge base name and at least one file.
  zh: 请填写知识库名称并选择至少一个文件。
knowledge.uploaded
  en: {name}: {chunks} chunks indexed.
  zh: {name}：已索引 {chunks} 个片段。
knowledge.deleted
  en: ✅ Document deleted.
  zh: ✅ 文档已删除。
knowledge.delete_missing
  en: Choose a document to delete.
  zh: 请选择要删除的文档。
api.file_required
  en: send the document as a multipart/form-data field named 'file'
  zh: 请以名为 'file' 的 multipart/form-data 字段发送文档
"""
)
