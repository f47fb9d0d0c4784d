"""Why a document was refused, in words the operator can act on (English and Chinese).

    ChatError
    └── KnowledgeError
        ├── BadKnowledgeName     a knowledge base name that is not 1-64 letters, digits, - _ .
        ├── KnowledgeNotFound    no knowledge base of that name / no such document
        ├── UnsupportedType      a file type the parser does not read
        ├── DocumentTooLarge     over ``--knowledge-max-bytes``
        ├── EmptyDocument        no text at all (an empty file, a scanned PDF without text)
        ├── EncryptedDocument    a password-protected PDF or Office file
        └── BrokenDocument       not a valid file of its type

Nothing is stored when one of these is raised (a document is indexed in one transaction).
"""

from __future__ import annotations

from chat.errors import ChatError


class KnowledgeError(ChatError):
    key = "knowledge.error"


class BadKnowledgeName(KnowledgeError):
    key = "knowledge.bad_name"


class KnowledgeNotFound(KnowledgeError):
    key = "knowledge.not_found"


class UnsupportedType(KnowledgeError):
    key = "knowledge.unsupported"


class DocumentTooLarge(KnowledgeError):
    key = "knowledge.too_large"


class EmptyDocument(KnowledgeError):
    key = "knowledge.empty"


class EncryptedDocument(KnowledgeError):
    key = "knowledge.encrypted"


class BrokenDocument(KnowledgeError):
    key = "knowledge.broken"
