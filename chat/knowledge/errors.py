"""Why a document was refused, in words the operator can act on (English and Chinese).

    ChatError
    └── KnowledgeError
        ├── BadKnowledgeName     a knowledge base name that is not 1-64 letters, digits, - _ .
        │   └── BadDocumentName  a file name with nothing in it, or longer than the store keeps
        ├── KnowledgeNotFound    no knowledge base of that name / no such document
        ├── UnsupportedType      a file type the parser does not read
        ├── DocumentTooLarge     over ``--knowledge-max-bytes``
        │   └── DocumentTooLong  more text, chunks or pages than ``chat.knowledge.limits`` allow
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


class BadDocumentName(BadKnowledgeName):  # the same answer over HTTP: a 400
    key = "knowledge.bad_document_name"


class DocumentTooLarge(KnowledgeError):
    key = "knowledge.too_large"


class DocumentTooLong(DocumentTooLarge):  # the same answer over HTTP: a 413
    key = "knowledge.too_long"


class EmptyDocument(KnowledgeError):
    key = "knowledge.empty"


class EncryptedDocument(KnowledgeError):
    key = "knowledge.encrypted"


class BrokenDocument(KnowledgeError):
    key = "knowledge.broken"
